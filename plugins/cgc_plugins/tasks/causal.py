"""Causal intervention modelling (proposal §2.2.3): predict the treated state of every cell node.

For each cell node ``i`` (control state ``x_i``, treated state ``y_i``, of graph ``g(i)``)::

    z_i   = encoder(G_control)[i]                       control-state encoding
    z_I   = MLP([ z_m(g) || dose(g) ])                  intervention embedding
    y_i^  = x_i + f_causal^{tau(i)}([ z_i || z_I(g(i)) ])   (a per-node-type head predicting the change)
    L     = mean over cell node types of MSE(y_i^, y_i)

``G_control`` is the batch with the treatment edges dropped (``drop_cooccurrence``, default; the
control view of :mod:`cgc_framework.plugin.roles`), so ``z_i`` is the pre-intervention state alone
and everything about the intervention enters through ``z_I``; ``y`` is never encoded. ``z_m`` is the
encoder's readout of the molecule node types in the same forward pass.

Dose encoding: learned vectors ``E_k`` at anchor doses ``d_k`` (``dose_anchors_um``, log10-spaced
by default like the LINCS/JUMP dose series); a dose between two anchors gets the linear
interpolation in log10 dose, ``(1 - w) E_k + w E_{k+1}``, doses outside the anchors the nearest
end's vector. Unmeasured doses therefore get an embedding between their measured neighbours'.

Logs per cell node type: ``<type>_loss`` and ``<type>_control_mse`` (the "predict control" baseline
``MSE(x_i, y_i)`` on the same nodes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from cgc_framework.plugin import Encoder, GraphSchema, ResponsePredictor, TaskOutput
from cgc_framework.plugin.roles import control_view, require_treated

from .params import DEFAULT_DOSES_UM as DEFAULT_DOSES_UM
from .params import CausalParams
from .roles import resolve_roles


class InterpolatedDoseEncoding(nn.Module):
    """``dose_um [B] -> [B, dim]``: piecewise-linear interpolation (in log10 dose) of learned
    anchor vectors; see the module docstring."""

    def __init__(self, anchors_um: list[float], dim: int):
        super().__init__()
        self.register_buffer("log_anchors", torch.log10(torch.tensor(anchors_um, dtype=torch.float32)))
        self.anchors = nn.Parameter(torch.randn(len(anchors_um), dim) * 0.1)

    def forward(self, dose_um: Tensor) -> Tensor:
        a = self.log_anchors
        if a.numel() == 1:
            return self.anchors.expand(dose_um.numel(), -1)
        ld = torch.log10(dose_um.clamp(min=1e-12)).clamp(a[0], a[-1])  # [B]
        k = (torch.searchsorted(a, ld, right=True) - 1).clamp(0, a.numel() - 2)  # left anchor [B]
        w = ((ld - a[k]) / (a[k + 1] - a[k])).unsqueeze(-1)  # [B, 1] in [0, 1]
        return (1 - w) * self.anchors[k] + w * self.anchors[k + 1]


class CausalIntervention(ResponsePredictor):
    """Registered as ``causal``; see the module docstring."""

    def __init__(self, params: CausalParams | None, schema: GraphSchema, hidden_dim: int):
        super().__init__()
        self.params = p = params or CausalParams()
        self.dose_attr = p.dose_attr
        self.molecule_types, self.cell_types, self.cooccurrence = resolve_roles(p, schema, "causal")
        self.dose = InterpolatedDoseEncoding(p.dose_anchors_um, p.dose_dim)
        self.intervention = nn.Sequential(nn.Linear(hidden_dim + p.dose_dim, hidden_dim), nn.ReLU(),
                                          nn.Linear(hidden_dim, hidden_dim))
        self.heads = nn.ModuleDict({
            t: nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.ReLU(),
                             nn.Linear(hidden_dim, schema.node_types[t].continuous_dim))
            for t in self.cell_types})

    def intervention_embedding(self, z: dict[str, Tensor], batch: HeteroData, encoder: Encoder) -> Tensor:
        """``z_I``: ``[num_graphs, hidden_dim]`` from the molecule readout and the dose."""
        dose = batch.get(self.params.dose_attr)
        if dose is None:
            raise ValueError(f"causal: the batch has no graph attribute '{self.params.dose_attr}' "
                             f"(dose in uM per experiment graph)")
        zm = encoder.readout(z, batch, self.molecule_types)  # [B, D]
        return self.intervention(torch.cat([zm, self.dose(dose.view(-1).to(zm.dtype))], dim=-1))

    def predict(self, batch: HeteroData, encoder: Encoder) -> dict[str, Tensor]:
        """Predicted treated features ``{cell type: [N_t, x_dim]}`` (no ``y`` needed)."""
        view = control_view(batch, self.cooccurrence) if self.params.drop_cooccurrence else batch
        z = encoder(view)
        z_int = self.intervention_embedding(z, view, encoder)  # [B, D]
        out = {}
        for t in self.cell_types:
            store = batch[t]
            if t not in batch.node_types or store.num_nodes == 0:
                continue
            g = store.get("batch")
            if g is None:
                g = torch.zeros(store.num_nodes, dtype=torch.long, device=z[t].device)
            pred = self.heads[t](torch.cat([z[t], z_int[g]], dim=-1))  # [N_t, x_dim]
            out[t] = store.x + pred if self.params.predict_delta else pred
        return out

    def forward(self, batch: HeteroData, encoder: Encoder) -> TaskOutput:
        require_treated(batch, self.cell_types, "causal")
        preds = self.predict(batch, encoder)
        if not preds:
            raise ValueError(f"causal: the batch has no node of the cell types {self.cell_types}")
        losses, logs = {}, {}
        for t, pred in preds.items():
            y = batch[t].y
            losses[t] = F.mse_loss(pred, y)
            logs[f"{t}_loss"] = losses[t]
            logs[f"{t}_control_mse"] = F.mse_loss(batch[t].x, y).detach()
        return TaskOutput(torch.stack(list(losses.values())).mean(), logs)
