"""Input embedding shared by all encoders: schema-conformant raw features -> ``hidden_dim`` vectors.

For node type ``t``::

    h_t = Linear(x_t) + sum_k Embedding_k(x_cat_t[:, k]) + mask_token_t * node_mask_t

Each categorical column ``k`` has ``num_classes + 1`` embedding rows; the last one is the MASK
index that masking tasks write. ``node_mask`` (bool ``[N_t]``), when a task sets it, adds a learned
per-type mask token, so "masked" is distinguishable from "all-zero features".

Edge features (optional: ``edge_features=True``, or a collection of the edge types to inject) — for
every such edge type ``(s, r, d)`` with features,
``e = Linear(edge_attr) + sum_k Embedding_k(edge_attr_cat[:, k]) + mask_token * edge_mask`` and the
mean of ``e`` over the incoming edges of each ``d`` node is added to ``h_d``. Masking tasks set
``edge_mask`` (bool ``[E]``) on the edge store, exactly as ``node_mask`` on node stores. Injecting edge
features at the input keeps every message-passing layer unchanged (an encoder's layer stays the
operator its paper writes), at the cost of edge features entering only once.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.utils import scatter

from cgc_framework.plugin.graph import GraphSchema, _FeatureSet


def mask_index(num_classes: int) -> int:
    """The categorical index reserved for MASK (one past the vocabulary)."""
    return num_classes


class FeatureEmbedding(nn.Module):
    """Embeds the features of one node or edge type: ``[N, F_cont]`` + ``[N, F_cat]`` -> ``[N, D]``."""

    def __init__(self, spec: _FeatureSet, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.linear = nn.Linear(spec.continuous_dim, hidden_dim) if spec.continuous_dim else None
        self.embeddings = nn.ModuleList(nn.Embedding(card + 1, hidden_dim) for card in spec.cardinalities)
        self.mask_token = nn.Parameter(torch.zeros(hidden_dim))
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, x: Tensor, x_cat: Tensor, mask: Tensor | None = None) -> Tensor:
        n = x.size(0)
        h = self.linear(x) if self.linear is not None else x.new_zeros(n, self.hidden_dim)
        for col, emb in enumerate(self.embeddings):
            h = h + emb(x_cat[:, col])
        if mask is not None:
            h = h + mask.unsqueeze(-1).to(h.dtype) * self.mask_token
        return h


class SchemaInputEmbedding(nn.Module):
    """One :class:`FeatureEmbedding` per node type of a schema.

    ``forward(data)`` returns ``{node_type: Tensor[N_t, hidden_dim]}`` for every schema node type.
    """

    def __init__(self, schema: GraphSchema, hidden_dim: int, *,
                 edge_features: bool | Collection[tuple[str, str, str]] = False):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.node = nn.ModuleDict({t: FeatureEmbedding(s, hidden_dim) for t, s in schema.node_types.items()})
        # edge types with features, keyed "src|rel|dst" (ModuleDict keys must be strings); a collection
        # of edge types injects only those (an encoder that reads some edge features itself)
        chosen = (lambda k: edge_features) if isinstance(edge_features, bool) else (lambda k: k in set(edge_features))
        self.edge = nn.ModuleDict({edge_key(k): FeatureEmbedding(s, hidden_dim)
                                   for k, s in schema.edge_types.items()
                                   if chosen(k) and (s.continuous_dim or s.cardinalities)})

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        out = {}
        for t, emb in self.node.items():
            store = data[t]
            out[t] = emb(store.x, store.x_cat, store.get("node_mask"))
        for key, emb in self.edge.items():
            src, rel, dst = key.split("|")
            if (src, rel, dst) not in data.edge_types:
                continue
            store = data[src, rel, dst]
            if store.edge_index.size(1) == 0:
                continue
            e = emb(store.edge_attr, store.edge_attr_cat, store.get("edge_mask"))  # [E, D]
            out[dst] = out[dst] + scatter(e, store.edge_index[1], dim=0, dim_size=out[dst].size(0),
                                          reduce="mean")  # [N_dst, D]
        return out


def edge_key(edge_type: tuple[str, str, str]) -> str:
    """``(src, rel, dst)`` -> ``"src|rel|dst"`` (the form used in module keys and logs)."""
    return "|".join(edge_type)
