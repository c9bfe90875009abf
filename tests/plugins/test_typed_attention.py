"""The typed-attention layer equals the proposal's §2.1.3 formula, computed densely and independently."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.utils import scatter

from cgc_plugins.encoders.typed_attention import TypedAttentionConv, TypedAttentionEncoder, TypedAttentionParams
from tests.graph_fixtures import lincs_experiment_graphs, small_random_hetero


def _layer(schema, dim, heads, seed=0):
    torch.manual_seed(seed)
    conv = TypedAttentionConv(dim, schema.metadata(), heads=heads, negative_slope=0.2).double()
    for p in conv.parameters():  # non-trivial values everywhere
        torch.nn.init.normal_(p, std=0.5)
    return conv


def dense_reference(conv, x, edges, heads, slope=0.2):
    """h_i' = sum_t sum_{j in N_i^t} alpha_ij^t W^V_t h_j with
    alpha_ij^t = softmax_j( a_{s,t}^T LeakyReLU(W^Q_{s,t} h_i || W^K_t h_j) ), by explicit loops.

    ``edges`` is ``{(src, rel, dst): [(j, i), ...]}``; weights are read from the layer's parameters
    by name only (``lin_q['s<-t']``, ``lin_k[t]``, ``lin_v[t]``, ``att['s<-t']``)."""
    D = next(iter(x.values())).size(1)
    C = D // heads
    out = {s: torch.zeros(x[s].size(0), D, dtype=torch.float64) for s in x}
    for s in x:
        for t in x:
            pairs = [(j, i) for (src, _, dst), lst in edges.items() if src == t and dst == s for (j, i) in lst]
            if not pairs:
                continue
            Wq = conv.lin_q[f"{s}<-{t}"].weight
            Wk, Wv = conv.lin_k[t].weight, conv.lin_v[t].weight
            a = conv.att[f"{s}<-{t}"]
            for i in range(x[s].size(0)):
                nbrs = [j for (j, ii) in pairs if ii == i]  # with multiplicity (one term per edge)
                if not nbrs:
                    continue
                for h in range(heads):
                    sl = slice(h * C, (h + 1) * C)
                    q = Wq[sl] @ x[s][i]
                    scores = torch.stack([a[h] @ F.leaky_relu(torch.cat([q, Wk[sl] @ x[t][j]]), slope)
                                          for j in nbrs])
                    alpha = torch.exp(scores) / torch.exp(scores).sum()
                    out[s][i, sl] += sum(alpha[n] * (Wv[sl] @ x[t][j]) for n, j in enumerate(nbrs))
    return out


@pytest.mark.parametrize("heads", [1, 2])
def test_layer_equals_dense_reference(heads):
    schema, data = small_random_hetero(seed=3, dim=6)
    conv = _layer(schema, 6, heads)
    x = {t: data[t].x.double() for t in data.node_types}
    got = conv(x, data.edge_index_dict)
    edges = {k: [tuple(e) for e in data[k].edge_index.t().tolist()] for k in data.edge_types}
    want = dense_reference(conv, x, edges, heads)
    for t in want:
        assert torch.allclose(got[t], want[t], atol=1e-6, rtol=0), (t, (got[t] - want[t]).abs().max())
    # a node of type b with no neighbour at all gets zeros; one with neighbours does not
    assert got["b"].abs().sum() > 0


def test_attention_sums_to_one_per_node_and_neighbour_type():
    schema, data = small_random_hetero(seed=5)
    conv = _layer(schema, 6, heads=2)
    x = {t: data[t].x.double() for t in data.node_types}
    _, att = conv(x, data.edge_index_dict, return_attention=True)
    # (b <- a) pools relations r1 and r2; (a <- b) is r3; (b <- b) is r4
    assert set(att) == {("b", "a"), ("a", "b"), ("b", "b")}
    assert att[("b", "a")][0].size(1) == data["a", "r1", "b"].num_edges + data["a", "r2", "b"].num_edges
    for (s, _t), (edge_index, alpha) in att.items():
        assert alpha.shape == (edge_index.size(1), 2) and (alpha > 0).all()
        sums = scatter(alpha, edge_index[1], dim=0, dim_size=data[s].num_nodes, reduce="sum")  # [N_s, H]
        has = torch.bincount(edge_index[1], minlength=data[s].num_nodes) > 0
        assert torch.allclose(sums[has], torch.ones_like(sums[has]), atol=1e-12)
        assert (sums[~has] == 0).all()


def test_permutation_equivariance():
    schema, data = small_random_hetero(seed=7)
    conv = _layer(schema, 6, heads=2)
    x = {t: data[t].x.double() for t in data.node_types}
    out = conv(x, data.edge_index_dict)
    g = torch.Generator().manual_seed(0)
    perm = {t: torch.randperm(data[t].num_nodes, generator=g) for t in data.node_types}  # new -> old
    inv = {t: torch.argsort(p) for t, p in perm.items()}  # old -> new
    x_p = {t: x[t][perm[t]] for t in x}
    ei_p = {k: torch.stack([inv[k[0]][ei[0]], inv[k[2]][ei[1]]]) for k, ei in data.edge_index_dict.items()}
    # edge order shuffled too: the layer must not depend on it
    ei_p = {k: ei[:, torch.randperm(ei.size(1), generator=g)] for k, ei in ei_p.items()}
    out_p = conv(x_p, ei_p)
    for t in out:
        assert torch.allclose(out_p[t], out[t][perm[t]], atol=1e-10)


def test_encoder_on_real_experiment_graphs_returns_every_type():
    from torch_geometric.loader import DataLoader

    schema, graphs, _ = lincs_experiment_graphs(8)
    batch = next(iter(DataLoader(graphs[:5], batch_size=5)))
    enc = TypedAttentionEncoder(TypedAttentionParams(hidden_dim=16, heads=2, num_layers=2), schema)
    z = enc(batch)
    assert set(z) == set(schema.node_types)
    for t, v in z.items():
        assert v.shape == (batch[t].num_nodes, 16) and torch.isfinite(v).all()
    with pytest.raises(ValueError, match="divisible"):
        TypedAttentionEncoder(TypedAttentionParams(hidden_dim=10, heads=4), schema)
