"""The cross-type layer stack the heterogeneous encoders share.

``num_layers`` x (heterogeneous convolution -> dropout -> residual -> LayerNorm per node type);
a node type that receives no message in a layer keeps its embedding. The convolution is PyG's
``HGTConv`` or the proposal's :class:`~cgc_plugins.encoders.typed_attention.TypedAttentionConv`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from cgc_framework.plugin import EdgeType


class ResidualStack(nn.Module):
    """Residual heterogeneous layers over ``node_types``.

    ``forward(h, edge_index_dict)`` maps ``{node_type: [N_t, D]}`` to the same shapes.
    """

    def __init__(self, convs: Sequence[nn.Module], node_types: Sequence[str], hidden_dim: int,
                 dropout: float = 0.0):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(nn.ModuleDict({t: nn.LayerNorm(hidden_dim) for t in node_types})
                                   for _ in convs)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
        for conv, norms in zip(self.convs, self.norms):
            out = conv(h, edge_index_dict)
            h = {t: norms[t](h[t] + self.dropout(out[t])) if out.get(t) is not None else h[t] for t in h}
        return h


def cross_type_stack(kind: str, metadata: tuple[list[str], list[EdgeType]], hidden_dim: int, num_layers: int,
                     heads: int, dropout: float = 0.0, negative_slope: float = 0.2) -> ResidualStack:
    """A :class:`ResidualStack` of ``kind`` ``"hgt"`` (PyG ``HGTConv``) or ``"typed_attention"``."""
    if hidden_dim % heads:
        raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by heads ({heads})")
    if kind == "hgt":
        from torch_geometric.nn import HGTConv

        convs = [HGTConv(hidden_dim, hidden_dim, metadata, heads=heads) for _ in range(num_layers)]
    elif kind == "typed_attention":
        from .typed_attention import TypedAttentionConv

        convs = [TypedAttentionConv(hidden_dim, metadata, heads, negative_slope) for _ in range(num_layers)]
    else:
        raise ValueError(f"unknown cross-type layer {kind!r}; choose hgt or typed_attention")
    return ResidualStack(convs, metadata[0], hidden_dim, dropout)
