"""Masked node and edge feature recovery (proposal §2.2.1).

Nodes: for every node type with input features, a random ``mask_rate`` fraction of nodes (at least
one per non-empty type) has its features replaced: continuous columns by 0, categorical columns by
the MASK index, and ``node_mask`` set so the encoder adds its learned mask token. A head on ``z_i``
recovers the originals (``f_node``).

Edges: for every edge type with features, a random ``edge_mask_rate`` fraction of edges is masked
the same way (``edge_attr`` -> 0, ``edge_attr_cat`` -> MASK, ``edge_mask`` set for the encoder's
edge mask token). The reverse copy of a masked edge (same node pair in the other direction, in the
same or any other edge type between the two node types) is masked too, so an encoder that reads
edge features cannot copy the answer from it. A head ``f_edge([z_i || z_j])`` recovers the originals.

Losses: MSE on continuous columns, cross-entropy on each categorical column. With ``weighting:
normalized`` (default) a type's loss is the sum of its terms' losses divided by the sum of their
*trivial* losses — the loss of the best constant prediction of the same masked targets (their
variance; the entropy of their classes) — so every type is measured in the same unit (1 = no better
than predicting the average, 0 = perfect), terms with (nearly) constant targets (variance or entropy
below ``CONSTANT_TARGET``, e.g. a control state that is the same in every well) are left out, and a
type whose targets are all constant drops out of the objective instead of diluting it.
``weighting: mean`` averages the raw per-type losses. The task loss is the mean over the types
present in the batch. Per-type raw losses are logged as ``<node type>_loss`` and
``<src>-<rel>-<dst>_loss`` (no ``|``: the names go into Markdown tables), normalized ones as
``<type>_relative``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from cgc_framework.plugin import EdgeType, Encoder, GraphSchema, PretrainingTask, TaskOutput, edge_key, mask_index

from .params import MaskedRecoveryParams

CONSTANT_TARGET = 1e-3
"""A term whose trivial loss (variance, class entropy in nats) is below this has (nearly) constant
targets in the batch and is left out of the normalized loss."""


class _Head(nn.Module):
    """Continuous regression + one classifier per categorical column, from ``[N, in_dim]``."""

    def __init__(self, in_dim: int, continuous_dim: int, cardinalities: tuple[int, ...]):
        super().__init__()
        self.continuous = nn.Linear(in_dim, continuous_dim) if continuous_dim else None
        self.categorical = nn.ModuleList(nn.Linear(in_dim, c) for c in cardinalities)

    def loss(self, z: Tensor, x: Tensor, x_cat: Tensor, normalized: bool = False) -> tuple[Tensor, Tensor] | None:
        """``(loss, raw loss)`` of one type's masked items; raw loss: the mean over its terms (the
        continuous columns, each categorical column). ``normalized``: the sum of the terms' losses
        divided by the sum of their trivial losses (the loss of the best constant prediction of the
        same targets: their mean squared deviation; the entropy of their class frequencies), terms
        whose targets are (nearly) constant left out; ``None`` when none is left."""
        terms, raw = [], []
        if self.continuous is not None:
            mse = F.mse_loss(self.continuous(z), x)
            raw.append(mse)
            terms.append((mse, (x - x.mean(0)).pow(2).mean()))
        for col, lin in enumerate(self.categorical):
            ce = F.cross_entropy(lin(z), x_cat[:, col])
            raw.append(ce)
            p = torch.bincount(x_cat[:, col], minlength=lin.out_features).float()
            p = p[p > 0] / p.sum()
            terms.append((ce, -(p * p.log()).sum()))
        raw_loss = torch.stack(raw).mean()
        if not normalized:
            return raw_loss, raw_loss
        kept = [(loss, trivial.detach()) for loss, trivial in terms if float(trivial) > CONSTANT_TARGET]
        if not kept:
            return None
        return torch.stack([k[0] for k in kept]).sum() / torch.stack([k[1] for k in kept]).sum(), raw_loss


class _EdgeHead(_Head):
    """``f_edge``: a hidden layer on ``[z_src || z_dst]`` (``[E, 2D]``), then :class:`_Head`."""

    def __init__(self, hidden_dim: int, continuous_dim: int, cardinalities: tuple[int, ...]):
        super().__init__(hidden_dim, continuous_dim, cardinalities)
        self.pair = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.ReLU())


def _has_features(spec) -> bool:
    return bool(spec.continuous_dim or spec.cardinalities)


class MaskedNodeRecovery(PretrainingTask):
    """Masked node/edge recovery; see the module docstring. Registered as ``masked_recovery``."""

    def __init__(self, params: MaskedRecoveryParams | None, schema: GraphSchema, hidden_dim: int):
        super().__init__()
        self.params = params or MaskedRecoveryParams()
        p = self.params
        types = p.node_types if p.node_types is not None else [
            t for t, s in schema.node_types.items() if _has_features(s)]
        unknown = [t for t in types if t not in schema.node_types]
        if unknown:
            raise ValueError(f"node_types {unknown} are not in the graph schema "
                             f"(node types: {', '.join(schema.node_types)})")
        featureless = [t for t in types if not _has_features(schema.node_types[t])]
        if featureless:
            raise ValueError(f"node_types {featureless} have no input features to mask")
        etypes: list[EdgeType] = ([tuple(k) for k in p.edge_types] if p.edge_types is not None  # type: ignore[misc]
                                  else [k for k, s in schema.edge_types.items() if _has_features(s)])
        unknown_e = [k for k in etypes if k not in schema.edge_types]
        if unknown_e:
            raise ValueError(f"edge_types {unknown_e} are not in the graph schema")
        featureless_e = [k for k in etypes if not _has_features(schema.edge_types[k])]
        if featureless_e:
            raise ValueError(f"edge_types {featureless_e} have no edge features to mask")
        if not types and not etypes:
            raise ValueError("masked_recovery has nothing to mask: no node or edge type has features")
        self.edge_types = etypes
        self.cardinalities = {t: schema.node_types[t].cardinalities for t in types}
        self.edge_cardinalities = {edge_key(k): schema.edge_types[k].cardinalities for k in etypes}
        self.heads = nn.ModuleDict({t: _Head(hidden_dim, schema.node_types[t].continuous_dim,
                                             schema.node_types[t].cardinalities) for t in types})
        self.edge_heads = nn.ModuleDict({edge_key(k): _EdgeHead(hidden_dim, schema.edge_types[k].continuous_dim,
                                                                schema.edge_types[k].cardinalities)
                                         for k in etypes})

    @property
    def edge_mask_rate(self) -> float:
        return self.params.edge_mask_rate or self.params.mask_rate

    def corrupt(self, batch: HeteroData) -> tuple[HeteroData, dict[str, Tensor], dict[EdgeType, Tensor]]:
        """A copy of ``batch`` with masked features; boolean masks per node type (``[N_t]``) and per
        edge type (``[E]``). ``batch`` itself is not modified."""
        view = copy.copy(batch)  # new stores sharing tensors; every corrupted tensor is replaced
        masks: dict[str, Tensor] = {}
        for t in self.heads:
            store = view[t]
            n = store.x.size(0)
            if n == 0:
                continue
            mask = _draw(n, self.params.mask_rate, store.x.device)
            store.x = store.x.masked_fill(mask.unsqueeze(-1), 0.0)
            if store.x_cat.size(1):
                fill = torch.tensor([mask_index(c) for c in self.cardinalities[t]], device=mask.device)
                store.x_cat = torch.where(mask.unsqueeze(-1), fill, store.x_cat)
            store.node_mask = mask
            masks[t] = mask
        edge_masks = {k: _draw(view[k].edge_index.size(1), self.edge_mask_rate, view[k].edge_index.device)
                      for k in self.edge_types if k in view.edge_types and view[k].edge_index.size(1)}
        edge_masks = self._mask_reverse_copies(view, edge_masks)
        for k, mask in edge_masks.items():
            store = view[k]
            store.edge_attr = store.edge_attr.masked_fill(mask.unsqueeze(-1), 0.0)
            if store.edge_attr_cat.size(1):
                fill = torch.tensor([mask_index(c) for c in self.edge_cardinalities[edge_key(k)]],
                                    device=mask.device)
                store.edge_attr_cat = torch.where(mask.unsqueeze(-1), fill, store.edge_attr_cat)
            store.edge_mask = mask
        return view, masks, edge_masks

    @staticmethod
    def _mask_reverse_copies(view: HeteroData, masks: dict[EdgeType, Tensor]) -> dict[EdgeType, Tensor]:
        """Also mask every edge ``(j, i)`` of a type ``(d, *, s)`` whose pair ``(i, j)`` is masked in
        a type ``(s, *, d)``."""
        out = {k: m.clone() for k, m in masks.items()}
        for k, m in masks.items():
            s, _, d = k
            n_s = max(view[s].num_nodes or 0, 1)
            ei = view[k].edge_index[:, m]
            masked_ids = ei[1] * n_s + ei[0]  # id of the reverse pair (dst, src) in a (d, *, s) type
            for k2 in view.edge_types:
                if k2[0] != d or k2[2] != s or k2 not in masks:
                    continue
                ei2 = view[k2].edge_index
                out[k2] |= torch.isin(ei2[0] * n_s + ei2[1], masked_ids)
        return out

    def forward(self, batch: HeteroData, encoder: Encoder) -> TaskOutput:
        view, masks, edge_masks = self.corrupt(batch)
        z = encoder(view)
        normalized = self.params.weighting == "normalized"
        results: dict[str, tuple[Tensor, Tensor] | None] = {}
        for t, mask in masks.items():
            results[t] = self.heads[t].loss(z[t][mask], batch[t].x[mask], batch[t].x_cat[mask], normalized)
        for k, mask in edge_masks.items():
            head = self.edge_heads[edge_key(k)]
            src, dst = batch[k].edge_index[:, mask]
            pair = head.pair(torch.cat([z[k[0]][src], z[k[2]][dst]], dim=-1))  # [E_masked, D]
            results["-".join(k)] = head.loss(pair, batch[k].edge_attr[mask], batch[k].edge_attr_cat[mask], normalized)
        kept = {t: r for t, r in results.items() if r is not None}
        if kept:
            loss = torch.stack([r[0] for r in kept.values()]).mean()
        else:  # every masked target was constant: nothing to learn from this batch
            loss = sum(v.sum() for v in z.values()) * 0.0
        logs = {f"{t}_loss": r[1] for t, r in kept.items()}
        if normalized:
            logs.update({f"{t}_relative": r[0] for t, r in kept.items()})
        return TaskOutput(loss, logs)


def _draw(n: int, rate: float, device: torch.device) -> Tensor:
    """Bernoulli(rate) mask of ``n`` items with at least one True (torch's global RNG)."""
    mask = torch.rand(n, device=device) < rate
    if not mask.any():
        mask[torch.randint(n, (1,), device=device)] = True
    return mask
