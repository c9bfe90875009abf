"""Molecule-level contrast (MolCLR, Wang et al. 2022; GraphCL, You et al. 2020): two corrupted views
of each molecule must embed closer to each other than to the other molecules of the batch.

For a batch of ``B`` graphs, two views are drawn independently: in each, a fraction ``atom_mask_rate``
of the ``molecule_part`` nodes (atoms) has its features masked (the MASK index / zeros and the
encoder's mask token, as masked recovery does) and a fraction ``bond_drop_rate`` of the bonds
(edges between two atoms, both directions of a pair together) is removed. Both views are encoded
in their control view (no treatment edges) and read out at the molecule level
(:meth:`~cgc_framework.plugin.contracts.Encoder.readout` of the ``molecule`` types), projected
``g(.)`` and L2-normalised. With ``s_ij = cos(u_i, v_j) / tau`` over the ``2B`` embeddings the
loss is NT-Xent::

    L = 1/(2B) sum_i [ CE(row i of [u; v] against every other row, target = its partner) ]

Graphs of the same molecule (another dose or well of one compound) are not negatives: their
entries are removed from the denominators (same compound = same hash of the uncorrupted molecule
subgraph). Unlike masked atom recovery, which trains node embeddings, this trains the
molecule-level embedding that few-shot probes and the cell-aware tasks read.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from cgc_framework.plugin import Encoder, GraphSchema, PretrainingTask, TaskOutput, mask_index
from cgc_framework.plugin.roles import MOLECULE, MOLECULE_PART, control_view

from .contrast import molecule_hash
from .params import MoleculeContrastParams


class MoleculeContrast(PretrainingTask):
    """Registered as ``molecule_contrast``; see the module docstring. Logs ``top1`` (the partner
    view ranked first) and ``temperature``."""

    def __init__(self, params: MoleculeContrastParams | None, schema: GraphSchema, hidden_dim: int):
        super().__init__()
        self.params = p = params or MoleculeContrastParams()
        roles = schema.roles
        self.atoms = list(roles.require(MOLECULE_PART, "molecule_contrast", schema))
        self.molecules = list(roles.require(MOLECULE, "molecule_contrast", schema))
        self.bonds = [k for k in schema.edge_types if k[0] in self.atoms and k[2] in self.atoms]
        self.treatment = list(roles.treatment)
        self.cardinalities = {t: schema.node_types[t].cardinalities for t in self.atoms}
        self.projection = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                                        nn.Linear(hidden_dim, p.projection_dim))
        self._hash_nodes = [t for t in [*self.atoms, *self.molecules]
                            if schema.node_types[t].continuous_dim or schema.node_types[t].cardinalities]
        self._hash_edges = [k for k in self.bonds
                            if schema.edge_types[k].continuous_dim or schema.edge_types[k].cardinalities]

    def augment(self, batch: HeteroData) -> HeteroData:
        """One corrupted view (masked atoms, dropped bonds); ``batch`` is not modified."""
        view = copy.copy(batch)
        p = self.params
        for t in self.atoms:
            store = view[t]
            n = store.x.size(0)
            if n == 0:
                continue
            mask = torch.rand(n, device=store.x.device) < p.atom_mask_rate
            store.x = store.x.masked_fill(mask.unsqueeze(-1), 0.0)
            if store.x_cat.size(1):
                fill = torch.tensor([mask_index(c) for c in self.cardinalities[t]], device=mask.device)
                store.x_cat = torch.where(mask.unsqueeze(-1), fill, store.x_cat)
            store.node_mask = mask
        for k in self.bonds:
            store = view[k]
            e = store.edge_index.size(1)
            if e == 0:
                continue
            ei = store.edge_index
            lo, hi = torch.minimum(ei[0], ei[1]), torch.maximum(ei[0], ei[1])
            pair = lo * (int(hi.max()) + 1) + hi          # both directions of a bond share one id
            uniq, inverse = torch.unique(pair, return_inverse=True)
            drop = (torch.rand(uniq.numel(), device=ei.device) < p.bond_drop_rate)[inverse]
            keep = ~drop
            store.edge_index = ei[:, keep]
            for attr in ("edge_attr", "edge_attr_cat"):
                if attr in store:
                    store[attr] = store[attr][keep]
        return view

    def embed(self, view: HeteroData, encoder: Encoder) -> Tensor:
        view = control_view(view, self.treatment)
        z = encoder(view)
        return F.normalize(self.projection(encoder.readout(z, view, self.molecules)), dim=-1)  # [B, P]

    def forward(self, batch: HeteroData, encoder: Encoder) -> TaskOutput:
        u = self.embed(self.augment(batch), encoder)
        v = self.embed(self.augment(batch), encoder)
        b = u.size(0)
        z = torch.cat([u, v])                                     # [2B, P]
        logits = z @ z.t() / self.params.temperature              # [2B, 2B]
        ids = molecule_hash(batch, self._hash_nodes, self._hash_edges).repeat(2)
        same = ids.unsqueeze(0) == ids.unsqueeze(1)               # same molecule (incl. self, partner)
        partner = torch.arange(2 * b, device=z.device).roll(b)
        eye = torch.eye(2 * b, dtype=torch.bool, device=z.device)
        keep_partner = torch.zeros_like(same)
        keep_partner[torch.arange(2 * b), partner] = True
        logits = logits.masked_fill(same & ~keep_partner, float("-inf"))  # self and other copies out
        logits = logits.masked_fill(eye, float("-inf"))
        loss = F.cross_entropy(logits, partner)
        with torch.no_grad():
            top1 = (logits.argmax(dim=1) == partner).float().mean()
        return TaskOutput(loss, {"top1": top1, "temperature": torch.tensor(self.params.temperature)})


__all__ = ["MoleculeContrast"]
