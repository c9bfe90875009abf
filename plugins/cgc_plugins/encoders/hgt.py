"""Heterogeneous Graph Transformer encoder (Hu et al., 2020) built on PyG's ``HGTConv``."""

from __future__ import annotations

from torch import Tensor
from torch_geometric.data import HeteroData

from cgc_framework.plugin import Encoder, GraphSchema, SchemaInputEmbedding

from .layers import cross_type_stack
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
        self.stack = cross_type_stack("hgt", schema.metadata(), p.hidden_dim, p.num_layers, p.heads, p.dropout)

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        return self.stack(self.embed(data), data.edge_index_dict)
