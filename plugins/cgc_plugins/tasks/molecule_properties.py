"""Molecule property prediction: regress RDKit whole-molecule descriptors and classify the molecule's
ECFP4 bits from the molecule-level embedding (semantic-level self-supervision: GROVER predicts
motifs, MolE and fingerprint-distillation pretraining predict properties made from the structure).

The molecule builder computes the targets (``rdkit_molecule`` with ``descriptors: true`` sets the
graph attribute ``mol_descriptors`` ``[1, D]``; with ``fingerprint_bits: N``, ``mol_fingerprint``
``[1, N/8]`` packed bits; see :mod:`cgc_plugins.molecules.descriptors`). They are labels made from
the structure itself, never inputs. With ``z_m`` the encoder's readout of the ``molecule`` types in
the control view, one head per target kind::

    L_desc = mean over descriptors of MSE(MLP_d(z_m), BN(d))      (BN: batch standardisation)
    L_fp   = mean over bits of BCE(MLP_f(z_m), bits)
    L      = w_desc * L_desc + w_fp * L_fp

A target absent from the batch is an error naming the builder parameter that produces it. Logs
``descriptor_r2`` (1 - L_desc: the share of each standardised descriptor's variance explained in
the batch) and ``fingerprint_auc``-like ``fingerprint_bce``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from cgc_framework.plugin import Encoder, GraphSchema, PretrainingTask, TaskOutput
from cgc_framework.plugin.roles import MOLECULE, control_view

from .params import MoleculePropertiesParams


def _head(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_in), nn.ReLU(), nn.Linear(d_in, d_out))


class MoleculeProperties(PretrainingTask):
    """Registered as ``molecule_properties``; see the module docstring."""

    def __init__(self, params: MoleculePropertiesParams | None, schema: GraphSchema, hidden_dim: int):
        super().__init__()
        self.params = p = params or MoleculePropertiesParams()
        self.molecules = list(schema.roles.require(MOLECULE, "molecule_properties", schema))
        self.treatment = list(schema.roles.treatment)
        self.descriptor_head = _head(hidden_dim, p.num_descriptors) if p.descriptor_weight > 0 else None
        self.standardize = nn.BatchNorm1d(p.num_descriptors, affine=False) if p.descriptor_weight > 0 else None
        self.fingerprint_head = _head(hidden_dim, p.fingerprint_bits) if p.fingerprint_weight > 0 else None

    def _target(self, batch: HeteroData, attr: str, builder_param: str) -> Tensor:
        value = batch.get(attr)
        if value is None:
            raise ValueError(f"molecule_properties: the batch has no graph attribute '{attr}'; build molecules "
                             f"with rdkit_molecule params {{{builder_param}}}")
        return value

    def forward(self, batch: HeteroData, encoder: Encoder) -> TaskOutput:
        p = self.params
        view = control_view(batch, self.treatment)
        z = encoder(view)
        zm = encoder.readout(z, view, self.molecules)                     # [B, D]
        loss = zm.new_zeros(())
        logs: dict[str, Tensor] = {}
        if self.descriptor_head is not None:
            target = self._target(batch, "mol_descriptors", "descriptors: true").view(zm.size(0), -1).float()
            with torch.no_grad():
                goal = self.standardize(target) if target.size(0) > 1 else target - target
            l_desc = F.mse_loss(self.descriptor_head(zm), goal)
            loss = loss + p.descriptor_weight * l_desc
            logs["descriptor_r2"] = 1.0 - l_desc.detach()
        if self.fingerprint_head is not None:
            packed = self._target(batch, "mol_fingerprint", f"fingerprint_bits: {p.fingerprint_bits}")
            bits = _unpack(packed.view(zm.size(0), -1), p.fingerprint_bits)   # [B, N] float
            l_fp = F.binary_cross_entropy_with_logits(self.fingerprint_head(zm), bits)
            loss = loss + p.fingerprint_weight * l_fp
            logs["fingerprint_bce"] = l_fp.detach()
        return TaskOutput(loss, logs)


def _unpack(packed: Tensor, n_bits: int) -> Tensor:
    """``[B, N/8]`` uint8 -> ``[B, N]`` float bits (most significant bit first, as numpy.packbits)."""
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)       # [8]
    bits = (packed.unsqueeze(-1) >> shifts) & 1                                     # [B, N/8, 8]
    return bits.reshape(packed.size(0), -1)[:, :n_bits].float()


__all__ = ["MoleculeProperties"]
