"""``cgc-predict`` / :mod:`cgc_plugins.whatif`: the in-silico what-if on the embedded LINCS plate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cgc_framework.api import run
from cgc_plugins.cells.feature_names import CHANNEL_SLOTS, CHANNELS, COMPARTMENT_SLOTS, COMPARTMENTS, parse_feature
from cgc_plugins.datasets.lincs import EMBEDDED_COMPOUNDS
from cgc_plugins.whatif.command import main as predict_main
from cgc_plugins.whatif.prediction import PredictionError, UnknownContextError
from cgc_plugins.whatif.predictor import WhatIf, predict_response

NEW = "CC(=O)Oc1ccccc1C(=O)O"  # aspirin: not on the embedded plate
DOSES = [0.1, 1.0, 10.0]
PLATE = "SQ00015054"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny graphs: one intra-op thread is ~3x faster than several on a shared CPU (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """A tiny two-stage run (masked recovery, then + causal) on the first 64 records of the embedded plate."""
    stages = ("stages=[{name: mask, epochs: 1, weights: {mask: 1.0}}, "
              "{name: causal, epochs: 2, weights: {mask: 1.0, causal: 1.0}}]")
    res = run("registry.yaml", overrides=[
        "trainer.num_workers=0", "data.max_records=64", stages, "optimizer.batch_size=16",
        "model.encoder.params.hidden_dim=16", "model.encoder.params.num_layers=1"],
        run_dir=tmp_path_factory.mktemp("run") / "r", progress=False)
    return res.run_dir


@pytest.fixture(scope="module")
def whatif(trained):
    return WhatIf(trained / "checkpoints" / "final.pt")


@pytest.fixture(scope="module")
def known(whatif):
    """A compound of the data: (compound id, its fields)."""
    cid = sorted(whatif.compounds)[0]
    return cid, whatif.compounds[cid]


@pytest.fixture(scope="module")
def pred(whatif, known):
    return whatif.predict([NEW, known[1]["smiles"]], DOSES, top_k=5)


def test_changes_cover_every_measured_cell_feature_with_schema_names(whatif, pred):
    assert pred.context.plate == PLATE and pred.context.cell_line == "A549"
    assert pred.meta["config_matches_checkpoint"]
    # issue 18: the only warnings are about evidence — whether the run's own held-out evaluation beat the
    # per-dose mean (a 64-well, 2-stage run has no reason to)
    assert all("per-dose mean" in w for w in pred.warnings)
    ch = pred.changes
    n = pred.meta["n_features"]
    assert len(ch) == 2 * len(DOSES) * n and set(ch.node_type) == {"compartment", "channel"}
    assert pred.label_columns == ["compartment", "channel"]
    comp, chan = ch[ch.node_type == "compartment"], ch[ch.node_type == "channel"]
    assert set(comp.slot) <= set(COMPARTMENT_SLOTS) and set(chan.slot) <= set(CHANNEL_SLOTS)
    assert set(ch.compartment) <= set(COMPARTMENTS) and set(chan.channel) <= set(CHANNELS)
    assert comp.channel.isna().all()
    assert (comp.feature == comp.compartment + "_" + comp.slot).all()
    assert (chan.feature == chan.compartment + "_" + chan.slot + "_" + chan.channel).all()
    one = ch[(ch.smiles == NEW) & (ch.dose_um == 1.0)]
    assert one.feature.is_unique and len(one) == n
    # exactly the slots the plate's CellProfiler features feed (cellprofiler_profile's layout)
    features = whatif._context_state(pred.context)["template"].fields["cell_profile"].features
    parsed = [parse_feature(f) for f in features]
    expected = {f"{p.compartment}_{COMPARTMENT_SLOTS[p.slot]}" for p in parsed if p.kind == "compartment"} | \
               {f"{p.compartment}_{CHANNEL_SLOTS[p.slot]}_{p.channel}" for p in parsed if p.kind == "channel"}
    assert set(one.feature) == expected
    # change = predicted - control; the control state is the plate's DMSO median: ~0 in robust z
    assert np.allclose(ch.change, ch.predicted - ch.control, atol=1e-6)
    assert ch.control.abs().max() < 1e-3 and ch.change.abs().max() > 0
    assert not np.allclose(ch[ch.dose_um == 0.1].change.to_numpy(), ch[ch.dose_um == 10.0].change.to_numpy())


def test_dose_response_and_top_features(pred):
    dr = pred.dose_response
    assert len(dr) == 2 * len(DOSES) and dr.groupby("smiles").size().tolist() == [3, 3]
    assert dr[dr.smiles == NEW].dose_um.tolist() == DOSES
    for _, r in dr.iterrows():
        c = pred.changes[(pred.changes.smiles == r.smiles) & (pred.changes.dose_um == r.dose_um)]
        assert r.l2 == pytest.approx(np.linalg.norm(c.change), rel=1e-6)
        assert r.n_features == len(c) and r.rms == pytest.approx(r.l2 / np.sqrt(len(c)), rel=1e-6)
        for name, g in c.groupby("compartment"):
            assert r[f"l2_compartment_{name}"] == pytest.approx(np.linalg.norm(g.change), rel=1e-6)
        assert r["l2_channel_Mito"] == pytest.approx(np.linalg.norm(c[c.channel == "Mito"].change), rel=1e-6)
    top = pred.top_features(3, by="compartment")
    assert top.groupby(["smiles", "dose_um", "compartment"]).size().eq(3).all()
    first = top[(top.smiles == NEW) & (top.dose_um == 10.0) & (top.compartment == "Nuclei")]
    ch = pred.changes
    c = ch[(ch.smiles == NEW) & (ch.dose_um == 10.0) & (ch.compartment == "Nuclei")]
    assert first.feature.tolist() == c.loc[c.change.abs().sort_values(ascending=False).index[:3], "feature"].tolist()
    assert set(pred.top_features(2, by="channel").channel) <= set(CHANNELS)
    with pytest.raises(PredictionError, match="not a label column"):
        pred.top_features(3, by="organelle")


def test_nearest_known_compounds_come_from_the_data_with_moas(whatif, pred, known):
    nn = pred.nearest
    table = pd.read_csv(EMBEDDED_COMPOUNDS).set_index("broad_sample")
    assert set(nn.compound_id) <= set(whatif.compounds) and set(nn.compound_id) <= set(table.index)
    for _, r in nn.iterrows():
        if isinstance(table.loc[r.compound_id, "moa"], str):
            assert r.moa == table.loc[r.compound_id, "moa"]
    assert nn.moa.notna().any()
    assert nn.groupby(["smiles", "dose_um"]).size().eq(5).all() and len(whatif.compounds) >= 5
    assert nn.groupby(["smiles", "dose_um"])["cosine_predicted"].apply(lambda s: s.is_monotonic_decreasing).all()
    # a known compound's SMILES is that compound: its own reference prediction is the nearest
    mine = nn[(nn.smiles == known[1]["smiles"]) & (nn["rank"] == 1)]
    assert (mine.compound_id == known[0]).all() and mine.same_smiles.all()
    assert np.allclose(mine.cosine_predicted, 1.0, atol=1e-6)
    assert not nn[nn.smiles == NEW].same_smiles.any() and pred.meta["new_compounds"] == [NEW]
    measured = nn.cosine_measured.notna()
    assert measured.any() and nn[measured].measured_dose_um.gt(0).all()
    centered = whatif.predict(NEW, [1.0], top_k=3, rank_by="centered").nearest
    assert centered.cosine_centered.is_monotonic_decreasing and len(centered) == 3


def test_ranking_is_deterministic_across_loads(trained, pred, known):
    again = predict_response(trained / "checkpoints" / "final.pt", [NEW, known[1]["smiles"]], DOSES, top_k=5)
    pd.testing.assert_frame_equal(again.nearest, pred.nearest)
    pd.testing.assert_frame_equal(again.top_features(10), pred.top_features(10))
    pd.testing.assert_frame_equal(again.changes, pred.changes)


def test_writes_tables_plots_json_and_summary(pred, tmp_path):
    files = pred.write(tmp_path / "out", top=4)
    for name in ("dose_response_png", "top_changes_0_png", "top_changes_1_png"):
        assert files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(files["changes"])) == len(pred.changes)
    assert len(pd.read_parquet(files["changes_parquet"])) == len(pred.changes)
    assert len(pd.read_csv(files["dose_response"])) == 6
    by_comp = pd.read_csv(files["top_by_compartment"])
    assert by_comp.groupby(["smiles", "dose_um", "compartment"]).size().eq(4).all()
    assert set(pd.read_csv(files["top_by_channel"]).channel) <= set(CHANNELS)
    assert len(pd.read_csv(files["nearest_compounds"])) == len(pred.nearest)
    js = json.loads(files["json"].read_text())
    assert js["context"]["plate"] == PLATE and js["doses_um"] == DOSES and len(js["dose_response"]) == 6
    summary = files["summary"].read_text()
    assert f"{PLATE} (A549)" in summary and "Nearest known compounds" in summary and NEW in summary


def test_clear_errors_for_bad_smiles_context_and_doses(whatif, trained):
    with pytest.raises(PredictionError, match=r"'C1CC': invalid SMILES: .*unclosed ring"):
        whatif.predict(["CCO", "C1CC"], [1.0])
    with pytest.raises(UnknownContextError, match=r"'HeLa'.*Available contexts.*SQ00015054 \(A549\)") as err:
        whatif.predict("CCO", [1.0], context="HeLa")
    assert err.value.available == [f"{PLATE} (A549)"]
    assert whatif.resolve_context("a549").plate == PLATE and whatif.resolve_context(PLATE).plate == PLATE
    for bad in ([0.0], [1.0, -1.0], [float("nan")], ["abc"], []):
        with pytest.raises(PredictionError, match="dose"):
            whatif.predict("CCO", bad)
    with pytest.raises(PredictionError, match="dose #1"):  # before the checkpoint is even loaded
        predict_response(trained / "missing.pt", "CCO", [float("inf")])


def test_untrained_causal_head_is_reported(trained):
    early = WhatIf(trained / "checkpoints" / "stage1_mask.pt").predict("CCO", [1.0, 100.0], top_k=2)
    assert any("not trained" in w for w in early.warnings)
    # issue 18: a continuous dose encoding (no anchors): 100 uM lies beyond the training doses
    assert any("outside the doses the causal head was trained on" in w for w in early.warnings)


def test_cgc_predict_cli(trained, tmp_path, capsys):
    ckpt = str(trained / "checkpoints" / "final.pt")
    smi = tmp_path / "q.smi"
    smi.write_text("# queries\nc1ccccc1O\n")
    out = tmp_path / "whatif"
    assert predict_main([ckpt, "--smiles", NEW, "--smiles-file", str(smi), "--doses", "10", "0.5",
                         "--context", "A549", "--out", str(out), "--top", "3", "--quiet"]) == 0
    assert "2 compound(s) x 2 dose(s)" in capsys.readouterr().out
    dr = pd.read_csv(out / "dose_response.csv")
    assert dr.smiles.tolist() == [NEW, NEW, "c1ccccc1O", "c1ccccc1O"] and dr.dose_um.tolist() == [0.5, 10, 0.5, 10]
    assert (out / "dose_response.png").is_file() and (out / "summary.md").is_file()
    assert len(pd.read_csv(out / "nearest_compounds.csv")) == 2 * 2 * 3
    assert predict_main([ckpt, "--smiles", "C1CC", "--doses", "1", "--out", str(out), "--quiet"]) == 2
    assert "'C1CC'" in capsys.readouterr().err
    assert predict_main([ckpt, "--smiles", "CCO", "--doses", "1", "--context", "MCF7", "--quiet"]) == 2
    assert "SQ00015054 (A549)" in capsys.readouterr().err
    assert predict_main([ckpt, "--smiles", "CCO", "--doses", "-1", "--quiet"]) == 2
    assert "dose #1" in capsys.readouterr().err
    assert predict_main([ckpt, "--list-contexts", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"{PLATE}\tA549")


def test_whatif_graph_is_the_pretraining_graph_of_the_same_experiment(whatif):
    """A known compound at its measured dose on its plate gives exactly the graph pretraining built
    for that well (minus the treated state y), hence the head's own prediction for it."""
    from cgc_framework.engine.featurize import build_record
    from cgc_framework.plugin.records import Record

    state = whatif._context_state(whatif.resolve_context())
    rec = state["template"]
    comp = whatif.compounds[rec.fields["compound_id"]]
    ours = whatif._graph(state, comp, rec.fields["dose_um"], "x")
    theirs = build_record(whatif.plan, rec)
    assert sorted(ours.node_types) == sorted(theirs.node_types)
    assert sorted(ours.edge_types) == sorted(theirs.edge_types)
    for store in theirs.stores:
        key = getattr(store, "_key", None)
        other = ours[key] if key is not None else ours
        for attr, value in store.items():
            if attr == "y":
                assert "y" not in other
            elif isinstance(value, torch.Tensor):
                assert torch.equal(other[attr], value), (key, attr)
    with torch.no_grad():
        direct = whatif.task.predict(theirs, whatif.pre.model.encoder)
    slots = state["slots"]
    expect = np.concatenate([(direct[s.node_type] - theirs[s.node_type].x)[s.rows, s.cols].numpy() for s in slots])
    got = whatif._predict_graphs([ours], slots, "")[0]
    assert np.allclose(got, expect, atol=1e-5)
    # a new SMILES has no annotated targets unless its InChIKey is given (extra_fields / --field)
    _, annotated = next((k, c) for k, c in sorted(whatif.compounds.items())
                          if build_record(whatif.plan, Record("t", {**rec.fields, **c}))["protein"].num_nodes)
    bare = whatif._graph(state, {"smiles": NEW, "compound_id": "query0"}, 1.0, "q")
    keyed = whatif._graph(state, {"smiles": NEW, "compound_id": "query0", "inchikey": annotated["inchikey"]},
                          1.0, "q")
    assert bare["protein"].num_nodes == 0 and keyed["protein"].num_nodes > 0
    with_key = whatif.predict(NEW, [1.0], top_k=1, extra_fields={"inchikey": annotated["inchikey"]})
    without = whatif.predict(NEW, [1.0], top_k=1)
    assert not np.allclose(with_key.changes.change, without.changes.change)
