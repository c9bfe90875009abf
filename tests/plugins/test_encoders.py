"""Both encoders: registered for YAML, contract shapes, optional edge-feature input, input embedding."""

from __future__ import annotations

import copy

import pytest
import torch
from torch_geometric.loader import DataLoader

from cgc_framework.engine.registry import load_registry
from tests.graph_fixtures import lincs_experiment_graphs

ENCODERS = {"hgt": {"hidden_dim": 16, "heads": 2, "num_layers": 2},
            "typed_attention": {"hidden_dim": 16, "heads": 2, "num_layers": 2}}


def _make(name, schema, **extra):
    reg = load_registry()
    info = reg.get("encoder", name)
    params = info.params.model_validate({**ENCODERS[name], **extra})
    torch.manual_seed(0)
    return reg.create("encoder", name, params, schema=schema)


@pytest.fixture(scope="module")
def batch():
    schema, graphs, _ = lincs_experiment_graphs(8)
    return schema, next(iter(DataLoader(graphs[:6], batch_size=6)))


@pytest.mark.parametrize("name", list(ENCODERS))
def test_encoder_contract_and_yaml_params(name, batch):
    schema, b = batch
    enc = _make(name, schema)
    z = enc(b)
    assert enc.hidden_dim == 16 and set(z) == set(schema.node_types)
    for t, v in z.items():
        assert v.shape == (b[t].num_nodes, 16) and torch.isfinite(v).all()
    with pytest.raises(Exception, match="extra|forbid|not permitted"):
        load_registry().get("encoder", name).params.model_validate({"hidden_dim": 16, "width": 3})


@pytest.mark.parametrize("name", list(ENCODERS))
def test_edge_features_reach_nodes_only_when_enabled(name, batch):
    schema, b = batch
    changed = copy.copy(b)
    bond = changed["atom", "bond", "atom"]
    bond.edge_attr_cat = (bond.edge_attr_cat + 1) % 3  # different bond types/stereo/...
    for use, expect_change in ((True, True), (False, False)):
        enc = _make(name, schema, edge_features=use).eval()
        with torch.no_grad():
            diff = (enc(b)["atom"] - enc(changed)["atom"]).abs().max()
        assert (diff > 1e-4) == expect_change, (use, float(diff))


@pytest.mark.parametrize("name", list(ENCODERS))
def test_masks_change_the_input_embedding(name, batch):
    """node_mask / edge_mask add learned tokens (masked != all-zero features)."""
    schema, b = batch
    enc = _make(name, schema).eval()
    v = copy.copy(b)
    v["atom"].node_mask = torch.zeros(b["atom"].num_nodes, dtype=torch.bool)
    v["atom"].node_mask[0] = True
    e = copy.copy(b)
    e["atom", "bond", "atom"].edge_mask = torch.ones(b["atom", "bond", "atom"].num_edges, dtype=torch.bool)
    with torch.no_grad():
        base, hv, he = enc.embed(b), enc.embed(v), enc.embed(e)
    assert (hv["atom"][0] - base["atom"][0]).abs().max() > 0
    assert torch.equal(hv["atom"][1:], base["atom"][1:])
    assert (he["atom"] - base["atom"]).abs().max() > 0


def _single_neighbour_attention_params(enc, b) -> set[str]:
    """Typed attention: where every node of type s has at most one neighbour of type t (an atom's
    one compound, a compartment's one compound), alpha = 1 whatever the scores, so W^Q_{s,t}, a_{s,t}
    (and W^K_t when all its pairs are such) get exactly zero gradient. That is the formula, not a bug."""
    from torch_geometric.utils import degree

    dead, live_src = set(), set()
    for s, t in enc.stack.convs[0].pairs:
        deg = [degree(b[k].edge_index[1], b[s].num_nodes) for k in b.edge_types if k[0] == t and k[2] == s]
        if max(float(sum(deg).max()), 0.0) <= 1:
            dead |= {f"lin_q.{s}<-{t}.weight", f"att.{s}<-{t}"}
        else:
            live_src.add(t)
    dead |= {f"lin_k.{t}.weight" for _, t in enc.stack.convs[0].pairs if t not in live_src}
    return dead


def test_gradients_reach_every_encoder_parameter(batch):
    """Every encoder parameter gets a non-zero gradient, except mask tokens (no mask set here) and
    the typed-attention score parameters of single-neighbour pairs (exactly zero, see above)."""
    schema, b = batch
    for name in ENCODERS:
        enc = _make(name, schema)
        z = enc(b)
        loss = sum(v.pow(2).mean() for v in z.values())
        loss.backward()
        dead = _single_neighbour_attention_params(enc, b) if name == "typed_attention" else set()
        no_grad = {n for n, p in enc.named_parameters() if p.grad is None or p.grad.abs().sum() == 0}
        expected = {n for n, _ in enc.named_parameters()
                    if "mask_token" in n or n.split(".", 3)[-1] in dead}
        assert no_grad == expected, (name, no_grad ^ expected)
        if name == "typed_attention":
            assert "lin_q.atom<-compound.weight" in dead and "lin_q.atom<-atom.weight" not in dead
