"""Cross-modal contrast (proposal §2.2.2): symmetric InfoNCE between a compound and its profile.

The view this loss encodes (the *leak-free view*):

- every treatment edge type (both directions; by default the schema's treatment edges, see
  :mod:`cgc_framework.plugin.roles`) is emptied, so no message path joins a compound to the profile
  it produced;
- the cell-state node types carry their **treated** features ``y`` in place of ``x`` (the profile)
  (:func:`cgc_framework.plugin.roles.treated_view`).

Then ``z_m`` = the encoder's readout of the molecule node types, ``z_c`` = its readout of the cell
node types, each through its own projection head, L2-normalised. With ``s_ij = cos(z_m_i, z_c_j) / tau``::

    L = 1/2 [ CE(s, diag) over rows (molecule -> profiles) + CE(s^T, diag) over rows (profile -> molecules) ]

Positives are the diagonal (graph ``i``'s compound and graph ``i``'s profile). Other graphs of the
same compound (another dose, a replicate well) are not negatives: their entries are removed from
both softmax denominators (*deduplication of same-compound positives*). Compound identity is the
graph attribute named by ``compound_key`` when given, else a permutation-invariant hash of the
molecule subgraph's atom and bond features.

``tau`` is fixed (``temperature``) or learned (``learn_temperature``: ``log(1/tau)`` is a
parameter initialised at ``1/temperature``, clamped to ``1/tau <= 100`` as in CLIP).

Dose-aware, informative pairs (issue 18; each off by default for backwards compatibility, on in the
shipped configs):

- ``dose_aware``: the molecule side is the intervention ``(compound, dose)``:
  ``z_m = mol_proj([readout || dose(d)])`` with the continuous log-dose encoding of the causal task.
  One compound is no longer asked to match its profiles from 0.04 to 10 uM with one vector.
- ``profile: response``: the profile side encodes ``y - x`` on the value slots (flags and the context
  categoricals kept), i.e. the well's change against its plate's control, not the plate's control
  context, which carries no information about the compound.
- ``min_activity``: graphs whose ``activity`` attribute (the well's percentile among its plate's DMSO
  wells) is below the threshold are left out of the loss, as queries and as negatives. The
  documented rule is 0.95: a well enters the contrast when its response exceeds that of 95 % of its
  plate's DMSO wells (docs/cell-graph.md). A batch with fewer than two such graphs gives a zero loss
  (with a gradient path, so every parameter still receives a defined gradient).

Same-compound entries stay excluded from the denominators (other doses, replicate wells).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.utils import scatter

from cgc_framework.plugin import Encoder, GraphSchema, PretrainingTask, TaskOutput
from cgc_framework.plugin.roles import treated_view

from .causal import ContinuousDoseEncoding, value_columns
from .params import ContrastParams
from .roles import resolve_roles


def _projection(hidden_dim: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class CrossModalContrast(PretrainingTask):
    """Registered as ``contrast``; see the module docstring. ``forward`` logs ``mol_to_cell_loss``,
    ``cell_to_mol_loss``, ``top1`` (molecule -> profile retrieval accuracy in the batch),
    ``temperature`` and ``positives`` (mean same-compound entries per row, incl. the diagonal)."""

    def __init__(self, params: ContrastParams | None, schema: GraphSchema, hidden_dim: int):
        super().__init__()
        self.params = p = params or ContrastParams()
        self.molecule_types, self.cell_types, self.cooccurrence = resolve_roles(p, schema, "contrast")
        self.dose = ContinuousDoseEncoding(p.dose_dim) if p.dose_aware else None
        self.mol_proj = _projection(hidden_dim + (p.dose_dim if p.dose_aware else 0), p.projection_dim)
        self._values = {t: value_columns(schema, t)[0] for t in self.cell_types}
        self.cell_proj = _projection(hidden_dim, p.projection_dim)
        init = torch.tensor(math.log(1.0 / p.temperature))
        if p.learn_temperature:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init, persistent=False)
        # node/edge types hashed for compound identity (the molecule side, cells and
        # co-occurrence edges excluded)
        cell = set(self.cell_types)
        self._hash_node_types = [t for t, s in schema.node_types.items()
                                 if t not in cell and (s.continuous_dim or s.cardinalities)]
        self._hash_edge_types = [k for k, s in schema.edge_types.items()
                                 if k[0] not in cell and k[2] not in cell and (s.continuous_dim or s.cardinalities)]

    def view(self, batch: HeteroData) -> HeteroData:
        """The leak-free view: treatment edges dropped, cell nodes carry ``y`` as ``x`` (or, with
        ``profile: response``, ``y - x`` on the value slots)."""
        view = treated_view(batch, self.cell_types, self.cooccurrence, "contrast")
        if self.params.profile == "response":
            for t in self.cell_types:
                if t in batch.node_types and batch[t].get("y") is not None:
                    cols = torch.as_tensor(self._values[t], dtype=torch.long, device=batch[t].y.device)
                    x = batch[t].y.clone()
                    x[:, cols] = batch[t].y[:, cols] - batch[t].x[:, cols]
                    view[t].x = x
        return view

    def molecule_side(self, zm: Tensor, batch: HeteroData) -> Tensor:
        """The projection input of the molecule side: the readout, with the dose encoding when dose-aware."""
        if self.dose is None:
            return zm
        dose = batch.get(self.params.dose_attr)
        if dose is None:
            raise ValueError(f"contrast (dose_aware): the batch has no graph attribute '{self.params.dose_attr}'")
        return torch.cat([zm, self.dose(dose.view(-1).to(zm.dtype).to(zm.device))], dim=-1)

    def embed(self, batch: HeteroData, encoder: Encoder) -> tuple[Tensor, Tensor]:
        """L2-normalised ``(z_m, z_c)``, each ``[num_graphs, projection_dim]``, from the leak-free view."""
        view = self.view(batch)
        z = encoder(view)
        zm = self.mol_proj(self.molecule_side(encoder.readout(z, view, self.molecule_types), batch))
        zc = self.cell_proj(encoder.readout(z, view, self.cell_types))
        return F.normalize(zm, dim=-1), F.normalize(zc, dim=-1)

    def informative(self, batch: HeteroData) -> Tensor | None:
        """``[num_graphs]`` bool: graphs that enter the loss (``min_activity``), ``None`` = all."""
        if self.params.min_activity is None:
            return None
        act = batch.get(self.params.activity_attr)
        if act is None:
            return None
        return act.view(-1) >= self.params.min_activity

    def compound_ids(self, batch: HeteroData) -> Tensor:
        """``[num_graphs]`` compound identity: equal values = same compound."""
        if self.params.compound_key is not None:
            return torch.as_tensor(batch[self.params.compound_key]).view(-1)
        return molecule_hash(batch, self._hash_node_types, self._hash_edge_types)

    def forward(self, batch: HeteroData, encoder: Encoder) -> TaskOutput:
        zm, zc = self.embed(batch, encoder)
        scale = self.logit_scale.clamp(max=math.log(100.0))
        ids = self.compound_ids(batch)
        keep = self.informative(batch)
        if keep is not None:
            if int(keep.sum()) < 2:   # nothing informative to contrast in this batch
                zero = 0.0 * (zm.sum() + zc.sum() + scale)
                return TaskOutput(zero, {"mol_to_cell_loss": zero.detach(), "cell_to_mol_loss": zero.detach(),
                                         "top1": zero.detach(), "temperature": 1.0 / scale.exp().detach(),
                                         "positives": zero.detach(), "informative": keep.float().mean()})
            zm, zc, ids = zm[keep], zc[keep], ids[keep]
        logits = scale.exp() * zm @ zc.t()  # [B, B]: row i = molecule i vs every profile
        same = ids.unsqueeze(0) == ids.unsqueeze(1)  # [B, B]
        eye = torch.eye(len(ids), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))  # other wells of the compound: no negatives
        target = torch.arange(len(ids), device=logits.device)
        l_mc = F.cross_entropy(logits, target)
        l_cm = F.cross_entropy(logits.t(), target)
        loss = 0.5 * (l_mc + l_cm)
        with torch.no_grad():
            top1 = (logits.argmax(dim=1) == target).float().mean()
        logs = {"mol_to_cell_loss": l_mc, "cell_to_mol_loss": l_cm, "top1": top1,
                "temperature": 1.0 / scale.exp().detach(), "positives": same.float().sum(1).mean()}
        if keep is not None:
            logs["informative"] = keep.float().mean()
        return TaskOutput(loss, logs)


def molecule_hash(batch: HeteroData, node_types: list[str], edge_types: list) -> Tensor:
    """``[num_graphs]`` float64 fingerprint of each graph's molecule subgraph: the sum over nodes and
    edges of a fixed random function of their features (invariant to node order; equal for equal
    molecules, distinct otherwise with probability ~1)."""
    num_graphs = int(batch.num_graphs) if hasattr(batch, "num_graphs") else 1
    device = next(iter(batch.node_stores)).x.device if batch.node_stores else torch.device("cpu")
    total = torch.zeros(num_graphs, dtype=torch.float64, device=device)
    gen = torch.Generator().manual_seed(12345)

    def feats(x: Tensor, x_cat: Tensor) -> Tensor:
        f = torch.cat([x.double(), x_cat.double() + 1.0], dim=-1)  # [N, F]
        w = torch.randn(f.size(1), generator=gen, dtype=torch.float64).to(f.device)
        return torch.sin(f @ w + 0.5) + 2.0  # [N], strictly positive: node counts also matter

    def graph_of(store, idx: Tensor | None = None) -> Tensor:
        b = store.get("batch")
        if b is None:
            b = torch.zeros(store.num_nodes, dtype=torch.long, device=device)
        return b if idx is None else b[idx]

    for t in node_types:
        s = batch[t]
        if s.num_nodes:
            total += scatter(feats(s.x, s.x_cat), graph_of(s), dim=0, dim_size=num_graphs, reduce="sum")
    for k in edge_types:
        s = batch[k]
        if s.edge_index.size(1):
            total += scatter(feats(s.edge_attr, s.edge_attr_cat), graph_of(batch[k[0]], s.edge_index[0]),
                             dim=0, dim_size=num_graphs, reduce="sum")
    return torch.round(total * 1e6) / 1e6
