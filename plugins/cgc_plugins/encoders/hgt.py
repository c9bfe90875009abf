"""Heterogeneous Graph Transformer encoder (Hu et al., 2020) built on PyG's ``HGTConv``."""

from __future__ import annotations

from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import HGTConv

from cgc_framework.plugin import Encoder, GraphSchema, SchemaInputEmbedding

from .params import HGTParams


class HGTEncoder(Encoder):
    """Input embedding -> ``num_layers`` x (``HGTConv`` -> residual -> LayerNorm) per node type.

    Args:
        params: :class:`HGTParams`; ``hidden_dim`` must be divisible by ``heads``.
        schema: the run's graph schema (node/edge types and feature dimensions).

    ``forward(data)`` returns ``{node_type: Tensor[N_t, hidden_dim]}``. Node types without
    incoming edges keep their (residual) input embedding at every layer. HGTConv has no edge-feature
    input; with ``edge_features`` the edge features enter through the input embedding.
    """

    def __init__(self, params: HGTParams | None, schema: GraphSchema):
        super().__init__()
        p = params or HGTParams()
        if p.hidden_dim % p.heads:
            raise ValueError(f"hidden_dim ({p.hidden_dim}) must be divisible by heads ({p.heads})")
        self.hidden_dim = p.hidden_dim
        self.embed = SchemaInputEmbedding(schema, p.hidden_dim, edge_features=p.edge_features)
        metadata = schema.metadata()
        self.convs = nn.ModuleList(HGTConv(p.hidden_dim, p.hidden_dim, metadata, heads=p.heads)
                                   for _ in range(p.num_layers))
        self.norms = nn.ModuleList(nn.ModuleDict({t: nn.LayerNorm(p.hidden_dim) for t in metadata[0]})
                                   for _ in range(p.num_layers))
        self.dropout = nn.Dropout(p.dropout)

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        h = self.embed(data)
        for conv, norms in zip(self.convs, self.norms):
            out = conv(h, data.edge_index_dict)
            h = {t: norms[t](h[t] + self.dropout(out[t])) if out.get(t) is not None else h[t] for t in h}
        return h
