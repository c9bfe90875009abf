"""The proposal's typed-attention layer (§2.1.3) as a PyG ``MessagePassing`` operator, and an encoder.

For a node ``i`` of type ``s = tau(i)`` and each neighbour node type ``t``::

    e_ij^t     = a_{s,t}^T LeakyReLU( W^Q_{s,t} h_i || W^K_t h_j )        j in N_i^t
    alpha_ij^t = softmax over j in N_i^t of e_ij^t
    h_i'       = sum_t sum_{j in N_i^t} alpha_ij^t W^V_t h_j

``N_i^t`` is every node of type ``t`` with an edge into ``i``, whatever the relation: the edge types
``(t, r, s)`` of the schema are pooled per ``(s, t)`` pair (two relations between the same pair of
nodes give two terms). With ``heads > 1`` each head applies the formula to its own ``hidden/heads``
slice of ``W^Q``, ``W^K``, ``W^V`` (with its own ``a``) and the heads are concatenated; ``heads=1`` is
the formula exactly. The layer has no residual, normalization or bias; the encoder adds those
around it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import softmax

from cgc_framework.plugin import EdgeType, Encoder, GraphSchema, SchemaInputEmbedding

from .layers import cross_type_stack
from .params import TypedAttentionParams


class TypedAttentionConv(MessagePassing):
    """One typed-attention layer over a heterogeneous graph (proposal §2.1.3).

    Args:
        channels: width ``D`` of input and output embeddings (every node type).
        metadata: ``(node_types, edge_types)`` of the schema.
        heads: attention heads ``H`` (``D`` divisible by ``H``); 1 = the proposal's formula.
        negative_slope: LeakyReLU slope.

    Parameters: ``W^Q_{s,t}`` and ``a_{s,t}`` per (destination type, neighbour type) pair that some
    edge type connects; ``W^K_t`` and ``W^V_t`` per neighbour (source) type. No biases.

    ``forward(x_dict, edge_index_dict)``: ``x_dict[t]`` is ``[N_t, D]``; returns ``{s: [N_s, D]}`` for
    every node type with at least one incoming edge type in the schema (a node without neighbours
    gets zeros). With ``return_attention=True`` also returns ``{(s, t): (edge_index [2, E], alpha
    [E, H])}`` where ``edge_index`` pools the edges of every ``(t, *, s)`` type (row 0: source ``j``,
    row 1: destination ``i``).
    """

    def __init__(self, channels: int, metadata: tuple[list[str], list[EdgeType]], heads: int = 1,
                 negative_slope: float = 0.2):
        super().__init__(aggr="add", node_dim=0)
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.channels, self.heads, self.head_dim = channels, heads, channels // heads
        self.negative_slope = negative_slope
        node_types, edge_types = metadata
        # (dst type s, src type t) pairs, in first-appearance order of the schema's edge types
        self.pairs: list[tuple[str, str]] = []
        for src, _, dst in edge_types:
            if (dst, src) not in self.pairs:
                self.pairs.append((dst, src))
        self.edge_types = list(edge_types)
        src_types = sorted({t for _, t in self.pairs})
        self.lin_k = nn.ModuleDict({t: nn.Linear(channels, channels, bias=False) for t in src_types})
        self.lin_v = nn.ModuleDict({t: nn.Linear(channels, channels, bias=False) for t in src_types})
        self.lin_q = nn.ModuleDict({_pair_key(p): nn.Linear(channels, channels, bias=False)
                                    for p in self.pairs})
        # a_{s,t} = [a_q ; a_k], each [H, D/H]
        self.att = nn.ParameterDict({_pair_key(p): nn.Parameter(torch.empty(heads, 2 * self.head_dim))
                                     for p in self.pairs})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for lin in [*self.lin_k.values(), *self.lin_v.values(), *self.lin_q.values()]:
            nn.init.xavier_uniform_(lin.weight)
        for a in self.att.values():
            nn.init.xavier_uniform_(a)

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor],
                return_attention: bool = False):
        H, C = self.heads, self.head_dim
        out: dict[str, Tensor] = {}
        attention: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
        for s, t in self.pairs:
            parts = [edge_index_dict[k] for k in self.edge_types
                     if k[0] == t and k[2] == s and k in edge_index_dict]
            x_s, x_t = x_dict[s], x_dict[t]
            if s not in out:
                out[s] = x_s.new_zeros(x_s.size(0), self.channels)
            if not parts:
                continue
            edge_index = torch.cat(parts, dim=1)  # [2, E] pooled over relations (t, *, s)
            key = _pair_key((s, t))
            q = self.lin_q[key](x_s).view(-1, H, C)  # [N_s, H, C]
            k = self.lin_k[t](x_t).view(-1, H, C)    # [N_t, H, C]
            v = self.lin_v[t](x_t).view(-1, H, C)    # [N_t, H, C]
            msg = self.propagate(edge_index, q=(None, q), k=(k, None), v=(v, None), att=self.att[key],
                                 size=(x_t.size(0), x_s.size(0)))  # [N_s, H, C]
            out[s] = out[s] + msg.reshape(-1, self.channels)  # [N_s, D]
            if return_attention:
                attention[(s, t)] = (edge_index, self._alpha)
            self._alpha = None
        return (out, attention) if return_attention else out

    def message(self, q_i: Tensor, k_j: Tensor, v_j: Tensor, att: Tensor, index: Tensor,
                ptr: Tensor | None, size_i: int | None) -> Tensor:
        # a^T LeakyReLU(q || k): [E, H, 2C] . [H, 2C] -> [E, H]
        z = F.leaky_relu(torch.cat([q_i, k_j], dim=-1), self.negative_slope)
        score = (z * att.unsqueeze(0)).sum(dim=-1)
        alpha = softmax(score, index, ptr, size_i)  # normalised over N_i^t, per head
        self._alpha = alpha
        return v_j * alpha.unsqueeze(-1)  # [E, H, C]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, heads={self.heads}, pairs={len(self.pairs)})"


def _pair_key(pair: tuple[str, str]) -> str:
    return f"{pair[0]}<-{pair[1]}"


class TypedAttentionEncoder(Encoder):
    """Input embedding -> ``num_layers`` x (:class:`TypedAttentionConv` -> residual -> LayerNorm).

    ``forward(data)`` returns ``{node_type: Tensor[N_t, hidden_dim]}`` for every schema node type.
    Node types without incoming edge types keep their (residual) input embedding.
    """

    def __init__(self, params: TypedAttentionParams | None, schema: GraphSchema):
        super().__init__()
        p = params or TypedAttentionParams()
        if p.hidden_dim % p.heads:
            raise ValueError(f"hidden_dim ({p.hidden_dim}) must be divisible by heads ({p.heads})")
        self.hidden_dim = p.hidden_dim
        self.embed = SchemaInputEmbedding(schema, p.hidden_dim, edge_features=p.edge_features)
        self.stack = cross_type_stack("typed_attention", schema.metadata(), p.hidden_dim, p.num_layers, p.heads,
                                      p.dropout, p.negative_slope)

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        return self.stack(self.embed(data), data.edge_index_dict)
