"""Graph conventions: schema declaration, conformance checks, safe serialization, readout."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader

from cgc_framework.plugin.graph import (
    EdgeTypeSpec,
    FeatureSpec,
    GraphSchema,
    NodeTypeSpec,
    graph_from_dict,
    graph_to_dict,
    readout,
)

SCHEMA = GraphSchema.of(
    [NodeTypeSpec((FeatureSpec.categorical("kind", 3), FeatureSpec.continuous("pos", dim=2, unit="um")),
                  name="a"),
     NodeTypeSpec((FeatureSpec.continuous("v"),), name="b")],
    [EdgeTypeSpec((FeatureSpec.continuous("dist", unit="angstrom"),), src="a", rel="near", dst="a"),
     EdgeTypeSpec((), src="a", rel="in", dst="b")])


def small_graph(n_a: int) -> HeteroData:
    d = HeteroData()
    d["a"].x = torch.arange(2 * n_a, dtype=torch.float32).reshape(n_a, 2)
    d["a"].x_cat = torch.arange(n_a).remainder(3).unsqueeze(1)
    d["a", "near", "a"].edge_index = torch.tensor([[0], [n_a - 1]])
    d["a", "near", "a"].edge_attr = torch.tensor([[1.5]])
    return d


def test_schema_dims_and_slices():
    a = SCHEMA.node_types["a"]
    assert a.continuous_dim == 2 and a.cardinalities == (3,)
    assert a.continuous_slices() == {"pos": slice(0, 2)}
    assert SCHEMA.metadata() == (["a", "b"], [("a", "near", "a"), ("a", "in", "b")])


def test_conform_fills_missing_types_so_graphs_batch():
    g1, g2 = SCHEMA.conform(small_graph(3)), SCHEMA.conform(small_graph(5))
    assert g1["b"].x.shape == (0, 1) and g1["a", "in", "b"].edge_index.shape == (2, 0)
    SCHEMA.validate(g1)
    batch = next(iter(DataLoader([g1, g2], batch_size=2)))
    assert batch["a"].x.shape == (8, 2)
    assert batch["a", "near", "a"].edge_index.tolist() == [[0, 3], [2, 7]]  # offsets applied
    assert batch["a"].batch.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert batch["b"].x.shape == (0, 1) and batch["b"].num_nodes == 0 and batch.num_graphs == 2


def test_conform_completes_present_types_and_keeps_graphs_independent():
    g = small_graph(3)
    del g["a"].x_cat
    g["b"].num_nodes = 2  # a node type with a count and no features gets zero features
    SCHEMA.conform(g)
    assert g["a"].x_cat.shape == (3, 1) and g["b"].x.shape == (2, 1) and g["b"].x_cat.shape == (2, 0)
    assert g["a", "near", "a"].edge_attr_cat.shape == (1, 0) and g["a"].num_nodes == 3
    SCHEMA.validate(g)
    g1, g2 = SCHEMA.conform(small_graph(2)), SCHEMA.conform(small_graph(2))
    g1["a", "in", "b"].edge_index = torch.tensor([[0], [0]])  # replaces g1's tensor only
    assert g2["a", "in", "b"].edge_index.shape == (2, 0)


def test_validate_rejects_bad_shapes_vocab_and_nan():
    g = SCHEMA.conform(small_graph(3))
    g["a"].x_cat[0, 0] = 3  # vocabulary is 0..2
    with pytest.raises(ValueError, match=r"a\.x_cat column 0 \(kind\) outside 0\.\.2"):
        SCHEMA.validate(g)
    g = SCHEMA.conform(small_graph(3))
    g["a"].x[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        SCHEMA.validate(g)
    g = SCHEMA.conform(small_graph(3))
    g["a", "near", "a"].edge_index = torch.tensor([[0], [7]])
    with pytest.raises(ValueError, match="points past the a nodes"):
        SCHEMA.validate(g)


def test_merge_rejects_conflicting_declarations():
    other = GraphSchema.of([NodeTypeSpec((FeatureSpec.continuous("v", dim=2),), name="b")])
    with pytest.raises(ValueError, match="node type 'b' is declared twice"):
        SCHEMA.merge(other)
    with pytest.raises(ValueError, match="undeclared node type 'z'"):
        SCHEMA.merge(GraphSchema.of([], [EdgeTypeSpec((), src="a", rel="r", dst="z")]))


def test_schema_and_graph_round_trip_through_weights_only_load(tmp_path):
    assert GraphSchema.from_dict(SCHEMA.to_dict()) == SCHEMA
    g = SCHEMA.conform(small_graph(4))
    g.dose_um = torch.tensor([3.33])
    torch.save([graph_to_dict(g)], tmp_path / "g.pt")
    back = graph_from_dict(torch.load(tmp_path / "g.pt", weights_only=True)[0])
    assert torch.equal(back["a"].x, g["a"].x) and torch.equal(back["a"].x_cat, g["a"].x_cat)
    assert torch.equal(back["a", "near", "a"].edge_attr, g["a", "near", "a"].edge_attr)
    assert back.dose_um.item() == pytest.approx(3.33)
    SCHEMA.validate(back)


def test_readout_means_per_graph():
    batch = next(iter(DataLoader([SCHEMA.conform(small_graph(2)), SCHEMA.conform(small_graph(3))],
                                 batch_size=2)))
    z = torch.arange(5, dtype=torch.float32).unsqueeze(1)
    assert readout(z, batch, "a").squeeze(1).tolist() == [0.5, 3.0]
    assert readout(torch.zeros(0, 4), batch, "b").shape == (2, 4)


def test_hetero_data_equals_pyg_constructor_and_batches_alike():
    from torch_geometric.data import Batch, HeteroData

    from cgc_framework.plugin.graph import hetero_data

    def stores(n):
        return {"atom": {"x": torch.rand(n, 2), "x_cat": torch.zeros(n, 1, dtype=torch.long), "num_nodes": n},
                "compound": {"x": torch.zeros(1, 0), "num_nodes": 1},
                ("atom", "bond", "atom"): {"edge_index": torch.tensor([[0, 1], [1, 0]]),
                                           "edge_attr": torch.rand(2, 1)},
                ("atom", "in", "compound"): {"edge_index": torch.stack([torch.arange(n), torch.zeros(n, dtype=torch.long)])}}

    for n in (2, 3):
        s = stores(n)
        ours, pyg = hetero_data(s), HeteroData(s)
        assert ours.node_types == pyg.node_types and ours.edge_types == pyg.edge_types
        assert ours["atom"].num_nodes == n and ours.num_nodes == pyg.num_nodes
        for key in pyg.node_types + pyg.edge_types:
            assert dict(ours[key].items()).keys() == dict(pyg[key].items()).keys()
            assert all(ours[key][k] is pyg[key][k] for k in pyg[key].keys())
            assert ours[key]._key == pyg[key]._key and ours[key]._parent() is ours
    a, b = Batch.from_data_list([hetero_data(stores(2)), hetero_data(stores(3))]), \
        Batch.from_data_list([HeteroData(stores(2)), HeteroData(stores(3))])
    assert torch.equal(a["atom", "in", "compound"].edge_index, b["atom", "in", "compound"].edge_index)
    assert torch.equal(a["atom"].batch, b["atom"].batch) and a.num_graphs == b.num_graphs == 2
