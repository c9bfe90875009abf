"""Causal intervention modelling (proposal §2.2.3): predict the treated state of every cell node.

For each cell node ``i`` (control state ``x_i``, treated state ``y_i``, of graph ``g(i)``)::

    z      = encoder(G_control)                          control-state encoding (no treatment edges)
    z_m(g) = readout of the molecule node types          the compound
    z_c(g) = readout of the cell-state node types        the control context: plate control profile,
                                                         cell line, time point (context_readout)
    z_I(g) = MLP([ z_m || dose(d_g) || z_c ])            intervention embedding
    y_i^   = x_i + f^{tau(i)}(z_i, z_I(g(i)))            a per-node-type head predicting the change
    L      = mean over cell node types of the masked MSE(y_i^, y_i)

``G_control`` is the batch with the treatment edges dropped (``drop_cooccurrence``, default; the
control view of :mod:`cgc_framework.plugin.roles`), so ``z_i`` is the pre-intervention state alone
and everything about the intervention enters through ``z_I``; ``y`` is never encoded.

Heads (``head``): ``mlp`` — ``f = MLP([z_i || z_I])``; ``low_rank`` — ``f = sum_r a_r(z_I) B_r(z_i) +
b(z_i, z_0)``: ``R`` response directions per node from its control state, mixed by coefficients of
the intervention, plus a compound-free part ``b`` from the dose and the context alone
(``z_0 = MLP([dose || z_c])``, "the average compound at this dose in this context").

The head predicts the *value* columns of each cell node type (continuous features that are not
``flags_for`` flags); flag columns are copied from ``x``. With ``masked_loss`` (default) the loss is
the mean squared error over value slots whose flags are 1 in both states, so slots a source never
measures (0 = 0) do not dilute it.

Dose encoding (``dose_encoding``): ``continuous`` (default) — an MLP of ``[log10 d, sin(k pi log10 d
/ 4), cos(k pi log10 d / 4)]`` (k = 1, 2; log10 d clamped to [-4, 3]): defined for every positive dose,
smooth in log dose, and every parameter is trained by every dose, so held-out and unseen doses get
trained parameters. ``anchors`` — learned vectors at anchor doses interpolated in log10 dose (kept for
old checkpoints; a dose between anchors only trains its two neighbours).

Regularisation for few training compounds: ``molecule_dropout`` zeroes a graph's compound
embedding with that probability during training (the zero embedding is then the "average compound",
and the compound path learns deviations from it); ``dropout`` in the MLPs.

Ablations for evaluators: ``predict(batch, encoder, molecule="zero")`` replaces ``z_m`` by zeros and
``molecule="shuffle"`` permutes it over the graphs of the batch — does the prediction use the molecule?

Logs per cell node type: ``<type>_loss`` and ``<type>_control_mse`` (the "predict control" baseline on
the same slots).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from cgc_framework.plugin import Encoder, GraphSchema, ResponsePredictor, TaskOutput
from cgc_framework.plugin.roles import control_view, require_treated

from .params import DEFAULT_DOSES_UM as DEFAULT_DOSES_UM
from .params import CausalParams
from .roles import resolve_roles

LOG_DOSE_RANGE = (-4.0, 3.0)
"""log10(dose / uM) is clamped to this range (0.1 nM .. 1 mM) before it is encoded."""


class InterpolatedDoseEncoding(nn.Module):
    """``dose_um [B] -> [B, dim]``: piecewise-linear interpolation (in log10 dose) of learned
    anchor vectors (``dose_encoding: anchors``)."""

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


class ContinuousDoseEncoding(nn.Module):
    """``dose_um [B] -> [B, dim]``: an MLP of log10 dose and two low-frequency Fourier pairs of it
    (periods of 8 and 4 decades); smooth, defined for every positive dose, every weight trained by
    every dose."""

    def __init__(self, dim: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    @staticmethod
    def features(dose_um: Tensor) -> Tensor:
        ld = torch.log10(dose_um.clamp(min=1e-12)).clamp(*LOG_DOSE_RANGE)  # [B]
        w = math.pi / 4
        return torch.stack([ld, torch.sin(w * ld), torch.cos(w * ld), torch.sin(2 * w * ld),
                            torch.cos(2 * w * ld)], dim=-1)  # [B, 5]

    def forward(self, dose_um: Tensor) -> Tensor:
        return self.net(self.features(dose_um))


def dose_encoding(p: CausalParams) -> nn.Module:
    if p.dose_encoding == "anchors":
        return InterpolatedDoseEncoding(p.dose_anchors_um, p.dose_dim)
    return ContinuousDoseEncoding(p.dose_dim)


def value_columns(schema: GraphSchema, node_type: str) -> tuple[list[int], list[int]]:
    """``(value columns, flag column of each value column or -1)`` of a node type's ``x``."""
    spec = schema.node_types[node_type]
    slices = spec.continuous_slices()
    flags = {f.flags_for: slices[f.name] for f in spec.continuous if f.flags_for}
    values, flag_cols = [], []
    for f in spec.continuous:
        if f.flags_for:
            continue
        sl = slices[f.name]
        values += list(range(sl.start, sl.stop))
        fl = flags.get(f.name)
        flag_cols += list(range(fl.start, fl.stop)) if fl is not None else [-1] * f.dim
    return values, flag_cols


def _mlp(i: int, h: int, o: int, dropout: float = 0.0) -> nn.Module:
    if dropout:
        return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Dropout(dropout), nn.Linear(h, o))
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))


class CausalIntervention(ResponsePredictor):
    """Registered as ``causal``; see the module docstring."""

    def __init__(self, params: CausalParams | None, schema: GraphSchema, hidden_dim: int):
        super().__init__()
        self.params = p = params or CausalParams()
        self.dose_attr = p.dose_attr
        self.molecule_types, self.cell_types, self.cooccurrence = resolve_roles(p, schema, "causal")
        self.dose = dose_encoding(p)
        ctx = hidden_dim if p.context_readout else 0
        self.intervention = _mlp(hidden_dim + p.dose_dim + ctx, hidden_dim, hidden_dim, p.dropout)
        self.columns: dict[str, tuple[list[int], list[int]]] = {t: value_columns(schema, t) for t in self.cell_types}
        for t, (vals, flags) in self.columns.items():
            self.register_buffer(f"_values_{t}", torch.tensor(vals, dtype=torch.long), persistent=False)
            self.register_buffer(f"_flags_{t}", torch.tensor(flags, dtype=torch.long), persistent=False)
        n_out = {t: len(v) for t, (v, _) in self.columns.items()}
        if p.head == "mlp":
            self.heads = nn.ModuleDict({t: _mlp(2 * hidden_dim, hidden_dim, n_out[t], p.dropout)
                                        for t in self.cell_types})
        else:
            self.base = _mlp(p.dose_dim + ctx, hidden_dim, hidden_dim)       # z_0: dose + context only
            self.coef = nn.Linear(hidden_dim, p.rank)                         # a(z_I)
            self.basis = nn.ModuleDict({t: nn.Linear(hidden_dim, p.rank * n_out[t]) for t in self.cell_types})
            self.bias = nn.ModuleDict({t: _mlp(2 * hidden_dim, hidden_dim, n_out[t], p.dropout)
                                       for t in self.cell_types})

    # -- pieces ------------------------------------------------------------------------------------

    def _dose(self, batch: HeteroData, like: Tensor) -> Tensor:
        dose = batch.get(self.params.dose_attr)
        if dose is None:
            raise ValueError(f"causal: the batch has no graph attribute '{self.params.dose_attr}' "
                             f"(dose in uM per experiment graph)")
        return self.dose(dose.view(-1).to(like.dtype).to(like.device))

    def _molecule(self, z: dict[str, Tensor], batch: HeteroData, encoder: Encoder, molecule: str,
                  generator: torch.Generator | None) -> Tensor:
        zm = encoder.readout(z, batch, self.molecule_types)  # [B, D]
        if self.training and self.params.molecule_dropout > 0 and molecule == "real":
            keep = (torch.rand(zm.size(0), 1, device=zm.device) >= self.params.molecule_dropout).to(zm.dtype)
            zm = zm * keep
        if molecule == "zero":
            return torch.zeros_like(zm)
        if molecule == "shuffle":
            perm = torch.randperm(zm.size(0), generator=generator).to(zm.device)
            return zm[perm]
        if molecule != "real":
            raise ValueError(f"causal.predict: molecule must be real, zero or shuffle, not {molecule!r}")
        return zm

    def intervention_embedding(self, z: dict[str, Tensor], batch: HeteroData, encoder: Encoder, *,
                               molecule: str = "real", generator: torch.Generator | None = None) -> Tensor:
        """``z_I``: ``[num_graphs, hidden_dim]`` from the molecule readout, the dose and the context."""
        zm = self._molecule(z, batch, encoder, molecule, generator)
        parts = [zm, self._dose(batch, zm)]
        if self.params.context_readout:
            parts.append(encoder.readout(z, batch, self.cell_types))
        return self.intervention(torch.cat(parts, dim=-1))

    def _base(self, z: dict[str, Tensor], batch: HeteroData, encoder: Encoder, like: Tensor) -> Tensor:
        parts = [self._dose(batch, like)]
        if self.params.context_readout:
            parts.append(encoder.readout(z, batch, self.cell_types))
        return self.base(torch.cat(parts, dim=-1))

    # -- prediction --------------------------------------------------------------------------------

    def predict(self, batch: HeteroData, encoder: Encoder, *, molecule: str = "real",
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Predicted treated features ``{cell type: [N_t, x_dim]}`` (no ``y`` needed): ``x`` with the
        value columns replaced by the prediction. ``molecule``: ``real``, or the ablations ``zero`` /
        ``shuffle`` (see the module docstring)."""
        view = control_view(batch, self.cooccurrence) if self.params.drop_cooccurrence else batch
        z = encoder(view)
        z_int = self.intervention_embedding(z, view, encoder, molecule=molecule, generator=generator)  # [B, D]
        z_0 = self._base(z, view, encoder, z_int) if self.params.head == "low_rank" else None
        out = {}
        for t in self.cell_types:
            store = batch[t]
            if t not in batch.node_types or store.num_nodes == 0:
                continue
            g = store.get("batch")
            if g is None:
                g = torch.zeros(store.num_nodes, dtype=torch.long, device=z[t].device)
            if self.params.head == "mlp":
                delta = self.heads[t](torch.cat([z[t], z_int[g]], dim=-1))  # [N_t, V_t]
            else:
                n = z[t].size(0)
                basis = self.basis[t](z[t]).view(n, self.params.rank, -1)  # [N_t, R, V_t]
                coef = self.coef(z_int)[g]  # [N_t, R]
                delta = torch.einsum("nr,nrv->nv", coef, basis) + self.bias[t](torch.cat([z[t], z_0[g]], dim=-1))
            cols = getattr(self, f"_values_{t}")
            pred = store.x.clone()
            pred[:, cols] = store.x[:, cols] + delta if self.params.predict_delta else delta
            out[t] = pred
        return out

    def slot_mask(self, t: str, x: Tensor, y: Tensor) -> Tensor:
        """``[N_t, V_t]`` bool: value slots measured in both states (all when ``masked_loss`` is off)."""
        flags = getattr(self, f"_flags_{t}")
        if not self.params.masked_loss:
            return torch.ones(x.size(0), flags.numel(), dtype=torch.bool, device=x.device)
        has = flags >= 0
        safe = flags.clamp(min=0)
        measured = (x[:, safe] > 0.5) & (y[:, safe] > 0.5)
        return torch.where(has.unsqueeze(0), measured, torch.ones_like(measured))

    def forward(self, batch: HeteroData, encoder: Encoder) -> TaskOutput:
        require_treated(batch, self.cell_types, "causal")
        preds = self.predict(batch, encoder)
        if not preds:
            raise ValueError(f"causal: the batch has no node of the cell types {self.cell_types}")
        losses, logs = {}, {}
        for t, pred in preds.items():
            x, y = batch[t].x, batch[t].y
            cols = getattr(self, f"_values_{t}")
            mask = self.slot_mask(t, x, y).to(pred.dtype)
            denom = mask.sum().clamp(min=1.0)
            losses[t] = (((pred[:, cols] - y[:, cols]) ** 2) * mask).sum() / denom
            logs[f"{t}_loss"] = losses[t]
            logs[f"{t}_control_mse"] = ((((x[:, cols] - y[:, cols]) ** 2) * mask).sum() / denom).detach()
        return TaskOutput(torch.stack(list(losses.values())).mean(), logs)
