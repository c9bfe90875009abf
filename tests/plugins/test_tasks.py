"""Pretraining tasks on real experiment graphs (embedded LINCS plate): masking, contrast, causal."""

from __future__ import annotations

import collections
import copy

import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from cgc_plugins.encoders import HGTEncoder, HGTParams, TypedAttentionEncoder, TypedAttentionParams
from cgc_plugins.molecules.features import molecule_schema
from cgc_plugins.tasks import (
    CausalIntervention,
    CausalParams,
    ContrastParams,
    CrossModalContrast,
    MaskedNodeRecovery,
    MaskedRecoveryParams,
)
from cgc_plugins.tasks.causal import InterpolatedDoseEncoding
from tests.graph_fixtures import lincs_experiment_graphs

HIDDEN = 32


@pytest.fixture(scope="module")
def lincs():
    return lincs_experiment_graphs(8)


def _encoder(schema, kind="typed_attention"):
    if kind == "hgt":
        return HGTEncoder(HGTParams(hidden_dim=HIDDEN, heads=2), schema)
    return TypedAttentionEncoder(TypedAttentionParams(hidden_dim=HIDDEN), schema)


def _train(task, enc, graphs, steps, *, batch_size=32, lr=3e-3, seed=0):
    """Seeded Adam run; returns the loss of every step."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(list(enc.parameters()) + list(task.parameters()), lr=lr)
    loader = DataLoader(graphs, batch_size=batch_size, shuffle=True, drop_last=True)
    losses = []
    while len(losses) < steps:
        for b in loader:
            out = task(b, enc)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            losses.append(float(out.loss.detach()))
            if len(losses) == steps:
                break
    return losses


def _decreases(losses, k=8, factor=0.85):
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    assert last < factor * first, (first, last)


def _snapshot(b):
    return {(s._key, k): v.clone() for s in b.stores if hasattr(s, "_key")
            for k, v in s.items() if isinstance(v, torch.Tensor)}


# -- masked node/edge recovery ----------------------------------------------------------------------

def test_masking_covers_every_node_and_edge_type_and_leaves_batch_intact(lincs):
    schema, graphs, _ = lincs
    torch.manual_seed(0)
    b = Batch.from_data_list(graphs[:16])
    before = _snapshot(b)
    task = MaskedNodeRecovery(MaskedRecoveryParams(mask_rate=0.3), schema, HIDDEN)
    view, masks, edge_masks = task.corrupt(b)
    assert set(masks) == {"atom", "compartment"}  # compound has no input features
    assert set(edge_masks) == {("atom", "bond", "atom"), ("compound", "treats", "compartment"),
                               ("compartment", "treated_by", "compound")}
    after = _snapshot(b)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert "node_mask" not in b["atom"] and "edge_mask" not in b["atom", "bond", "atom"]
    m = masks["atom"]
    cards = torch.tensor(schema.node_types["atom"].cardinalities)
    assert (view["atom"].x_cat[m] == cards).all() and (view["atom"].x[m] == 0).all()
    assert torch.equal(view["atom"].x_cat[~m], b["atom"].x_cat[~m])
    # the reverse copy of every masked bond is masked too (no copy-the-answer leak)
    ei, em = b["atom", "bond", "atom"].edge_index, edge_masks[("atom", "bond", "atom")]
    masked = {tuple(e) for e in ei[:, em].t().tolist()}
    assert masked and all((v, u) in masked for u, v in masked)
    assert 0.2 < em.float().mean() < 0.7  # ~ 1 - (1 - 0.3)^2 with reverse copies
    t_masked = {tuple(e) for e in b["compound", "treats", "compartment"].edge_index[
        :, edge_masks[("compound", "treats", "compartment")]].t().tolist()}
    r_masked = {tuple(e) for e in b["compartment", "treated_by", "compound"].edge_index[
        :, edge_masks[("compartment", "treated_by", "compound")]].t().tolist()}
    assert {(d, s) for s, d in t_masked} == r_masked


def test_masking_validates_types(lincs):
    schema, _, _ = lincs
    with pytest.raises(ValueError, match="not in the graph schema"):
        MaskedNodeRecovery(MaskedRecoveryParams(node_types=["residue"]), schema, HIDDEN)
    with pytest.raises(ValueError, match="no edge features"):
        MaskedNodeRecovery(MaskedRecoveryParams(edge_types=[("atom", "in", "compound")]), schema, HIDDEN)
    only_nodes = MaskedNodeRecovery(MaskedRecoveryParams(edge_types=[]), schema, HIDDEN)
    assert len(only_nodes.edge_heads) == 0


@pytest.mark.parametrize("kind", ["typed_attention", "hgt"])
def test_masked_recovery_loss_decreases_with_per_type_logs(lincs, kind):
    schema, graphs, _ = lincs
    torch.manual_seed(0)
    enc, task = _encoder(schema, kind), MaskedNodeRecovery(MaskedRecoveryParams(mask_rate=0.3), schema, HIDDEN)
    out = task(Batch.from_data_list(graphs[:8]), enc)
    types = {"atom", "compartment", "atom-bond-atom", "compound-treats-compartment", "compartment-treated_by-compound"}
    assert set(out.logs) == {f"{t}_{unit}" for t in types for unit in ("loss", "relative")}  # raw and normalized
    assert all(float(out.logs[f"{t}_relative"]) > 0 for t in types)  # 1 = the best constant prediction
    _decreases(_train(task, enc, graphs, 40))


# -- contrast ---------------------------------------------------------------------------------------

def test_contrast_and_causal_need_a_cell_modality():
    for cls, name in ((CrossModalContrast, "contrast"), (CausalIntervention, "causal")):
        with pytest.raises(ValueError, match=f"{name} needs cell node types with treated features.*"
                                             "add a cell modality"):
            cls(None, molecule_schema(), HIDDEN)
    schema, _, _ = lincs_experiment_graphs(8)
    with pytest.raises(ValueError, match="molecule node types"):
        CrossModalContrast(ContrastParams(molecule_node_types=["protein"]), schema, HIDDEN)


def test_contrast_view_has_no_path_between_a_compound_and_its_profile(lincs):
    schema, graphs, _ = lincs
    b = Batch.from_data_list(graphs[:4])
    task = CrossModalContrast(None, schema, HIDDEN)
    assert set(task.cooccurrence) == {("compound", "treats", "compartment"),
                                      ("compartment", "treated_by", "compound")}
    view = task.view(b)
    # connected components over every edge type of the view: no molecule node reaches a cell node
    offset, start = {}, 0
    for t in view.node_types:
        offset[t], start = start, start + view[t].num_nodes
    parent = list(range(start))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    for (s, _, d), ei in view.edge_index_dict.items():
        for u, v in ei.t().tolist():
            parent[find(offset[s] + u)] = find(offset[d] + v)
    comp = {t: {find(offset[t] + i) for i in range(view[t].num_nodes)} for t in view.node_types}
    assert comp["compartment"] and not (comp["compartment"] & (comp["atom"] | comp["compound"]))
    # sanity: in the batch itself (co-occurrence edges kept) they are connected
    parent = list(range(start))
    for (s, _, d), ei in b.edge_index_dict.items():
        for u, v in ei.t().tolist():
            parent[find(offset[s] + u)] = find(offset[d] + v)
    assert {find(offset["compartment"])} == {find(offset["compound"])}
    # the original batch still has its edges, and the view encodes the treated profile y
    assert b["compound", "treats", "compartment"].num_edges == 12
    assert torch.equal(view["compartment"].x, b["compartment"].y)
    assert not torch.equal(b["compartment"].x, b["compartment"].y)


@pytest.mark.parametrize("kind", ["typed_attention", "hgt"])
def test_contrast_profile_embedding_has_no_gradient_from_the_molecule(lincs, kind):
    """The loss cannot be minimised through a leak: in the contrast view the profile embedding is
    exactly independent of the molecule's input (zero gradient w.r.t. the atom embeddings), while
    in the full graph (co-occurrence edges kept) it is not."""
    schema, graphs, _ = lincs
    torch.manual_seed(0)
    enc, task = _encoder(schema, kind), CrossModalContrast(None, schema, HIDDEN)
    b = Batch.from_data_list(graphs[:4])
    captured = {}

    def hook(_module, _inp, out):
        out["atom"].retain_grad()
        captured["h"] = out
    enc.embed.register_forward_hook(hook)
    _, zc = task.embed(b, enc)
    zc.sum().backward()
    assert captured["h"]["atom"].grad.abs().max() == 0
    captured.clear()
    full = copy.copy(b)
    full["compartment"].x = b["compartment"].y  # same profile, co-occurrence edges kept: leaks
    from cgc_framework.plugin.roles import mean_readout
    z = enc(full)
    mean_readout(z, full, ["compartment"]).sum().backward()
    assert captured["h"]["atom"].grad.abs().max() > 0


def test_contrast_deduplicates_same_compound_positives(lincs):
    schema, graphs, ids = lincs
    by = collections.defaultdict(list)
    for i, c in enumerate(ids):
        by[c].append(i)
    two = [c for c, ix in by.items() if len(ix) >= 2][:3]
    pick = [by[two[0]][0], by[two[0]][1], by[two[1]][0], by[two[1]][1], by[two[2]][0]]
    b = Batch.from_data_list([graphs[i] for i in pick])
    task = CrossModalContrast(None, schema, HIDDEN)
    cid = task.compound_ids(b)
    assert cid[0] == cid[1] and cid[2] == cid[3] and len(set(cid.tolist())) == 3
    torch.manual_seed(0)
    out = task(b, _encoder(schema))
    assert float(out.logs["positives"]) == pytest.approx(9 / 5)
    # each molecule competes with 5 - 1 profiles for pairs (0, 1), (2, 3): loss <= log(4) at chance
    assert torch.isfinite(out.loss)


def test_contrast_loss_decreases_and_learned_temperature_trains(lincs):
    schema, graphs, _ = lincs
    torch.manual_seed(0)
    task = CrossModalContrast(ContrastParams(projection_dim=32, learn_temperature=True), schema, HIDDEN)
    enc = _encoder(schema)
    start = float(task.logit_scale.detach())
    _decreases(_train(task, enc, graphs, 40), factor=0.9)
    assert float(task.logit_scale.detach()) != start


def _retrieval_percentile(task, enc, graphs):
    """Mean percentile of the true compound among all candidates, profile -> molecule (chance 0.5)."""
    enc.eval(), task.eval()
    with torch.no_grad():
        zm, zc = task.embed(Batch.from_data_list(graphs), enc)
    sim = zc @ zm.t()  # [profiles, molecules]
    better = (sim > sim.diag().unsqueeze(1)).float().sum(1)
    return float((1 - better / (len(graphs) - 1)).mean())


def test_shuffled_pairing_destroys_the_alignment(lincs):
    """Train the contrast on real pairs and on shuffled pairs (profiles permuted across wells), then
    retrieve held-out wells (the second-highest dose of each compound) with their true pairing:
    real pairs align far above chance, shuffled pairs fall to chance."""
    schema, graphs, ids = lincs
    by = collections.defaultdict(list)
    for i, (g, c) in enumerate(zip(graphs, ids)):
        by[c].append((float(g.dose_um), i))
    held = sorted(sorted(v)[-2][1] for v in by.values() if len(v) >= 2)
    train = [graphs[i] for i in range(len(graphs)) if i not in set(held)]
    test = [graphs[i] for i in held]
    results = {}
    for shuffled in (False, True):
        torch.manual_seed(0)
        pairs = train
        if shuffled:
            perm = torch.randperm(len(train))
            pairs = []
            for i, g in enumerate(train):
                g = copy.copy(g)
                g["compartment"].y = train[int(perm[i])]["compartment"].y
                pairs.append(g)
        enc = _encoder(schema)
        task = CrossModalContrast(ContrastParams(projection_dim=32), schema, HIDDEN)
        _train(task, enc, pairs, 120, batch_size=64, lr=3e-3)
        results[shuffled] = _retrieval_percentile(task, enc, test)
    assert results[False] > 0.65, results
    assert abs(results[True] - 0.5) < 0.1, results


# -- causal -----------------------------------------------------------------------------------------

def test_dose_encoding_interpolates_between_measured_doses():
    torch.manual_seed(0)
    enc = InterpolatedDoseEncoding([0.1, 1.0, 10.0], 4)
    e = enc(torch.tensor([0.1, 1.0, 10.0, 10 ** -0.5, 10 ** 0.25, 0.001, 100.0]))
    a = enc.anchors.detach()
    assert torch.allclose(e[:3], a, atol=1e-6)
    assert torch.allclose(e[3], 0.5 * (a[0] + a[1]), atol=1e-6)
    assert torch.allclose(e[4], 0.75 * a[1] + 0.25 * a[2], atol=1e-6)
    assert torch.allclose(e[5], a[0]) and torch.allclose(e[6], a[2])
    with pytest.raises(ValueError, match="increasing"):
        CausalParams(dose_anchors_um=[1.0, 0.5])


def test_causal_never_encodes_treated_features_and_uses_the_dose(lincs):
    schema, graphs, _ = lincs
    torch.manual_seed(0)
    enc, task = _encoder(schema).eval(), CausalIntervention(None, schema, HIDDEN).eval()
    b = Batch.from_data_list(graphs[:6])
    other = copy.copy(b)
    other["compartment"].y = torch.randn_like(b["compartment"].y)
    with torch.no_grad():
        p1, p2 = task.predict(b, enc), task.predict(other, enc)
        assert torch.equal(p1["compartment"], p2["compartment"])
        dosed = copy.copy(b)
        dosed.dose_um = b.dose_um * 7
        assert not torch.allclose(task.predict(dosed, enc)["compartment"], p1["compartment"])
    no_y = copy.copy(b)
    del no_y["compartment"].y
    with pytest.raises(ValueError, match="no treated features"):
        task(no_y, enc)


@pytest.mark.parametrize("kind", ["typed_attention", "hgt"])
def test_causal_loss_decreases_below_predict_control(lincs, kind):
    schema, graphs, _ = lincs
    torch.manual_seed(0)
    enc, task = _encoder(schema, kind), CausalIntervention(None, schema, HIDDEN)
    out = task(Batch.from_data_list(graphs[:8]), enc)
    assert set(out.logs) == {"compartment_loss", "compartment_control_mse"}
    losses = _train(task, enc, graphs, 60, batch_size=32)
    _decreases(losses, factor=0.9)
    with torch.no_grad():
        out = task.eval()(Batch.from_data_list(graphs), enc.eval())
    # better than the "predict control" baseline on the training wells
    assert float(out.logs["compartment_loss"]) < 0.9 * float(out.logs["compartment_control_mse"])
