"""Issue 18: a cell-response model and an evaluation that can tell.

Control state with a context, the continuous dose encoding at unseen doses, compound- and
scaffold-grouped folds, every response baseline on a toy set with a known answer, the NaN-aware
metrics, the per-compound retrieval statistics, the cell-state protocol, the cross-validated
summary, and the honest outputs (summary verdicts, what-if warnings)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from cgc_framework.plugin.records import SkipLog
from cgc_plugins.cells.context import canonical_cell_line, time_point
from cgc_plugins.cells.profile_builder import CellProfile, ProfileCellBuilder
from cgc_plugins.datasets.experiment import (
    CellPaintingExperiments,
    ExperimentParams,
    SplitParams,
    assign_split,
    fold_of,
    group_key,
    scaffold_of,
)
from cgc_plugins.evaluators.responses import (
    ResponseTable,
    ecfp4,
    ecfp_ridge,
    feature_weights,
    fingerprint_nn,
    paired_verdicts,
    per_dose_mean_by_line,
    response_metrics,
    same_compound_interpolation,
    tanimoto,
)
from tests.graph_fixtures import lincs_experiment_graphs

REPO = Path(__file__).resolve().parents[2]
DAHLIN = "cellpainting/profiles/cell_injury_dahlin2023_U2OS/fs_plate_holdout.csv.gz"
BBBC021 = "cellpainting/profiles/bbbc021_MCF7_per_well_mean_annotated.csv.gz"


# -- 1. the control state ------------------------------------------------------------------------

def test_context_is_added_to_both_states_so_the_response_stays_the_robust_z():
    recs = list(CellPaintingExperiments(ExperimentParams()).records(SkipLog()))
    prof = recs[0].fields["cell_profile"]
    b = ProfileCellBuilder()
    plain = b.build(CellProfile(prof.features, prof.treated, prof.control, prof.dose_um, prof.plate))
    ctx = np.linspace(-1, 1, len(prof.features)).astype(np.float32)
    shifted = b.build(CellProfile(prof.features, prof.treated, prof.control, prof.dose_um, prof.plate,
                                  context=ctx, cell_line="MCF-7", time_h=24, activity=0.97))
    for t, nv in (("compartment", 35), ("channel", 57)):
        d0 = plain[t].y[:, :nv] - plain[t].x[:, :nv]
        d1 = shifted[t].y[:, :nv] - shifted[t].x[:, :nv]
        assert torch.allclose(d0, d1, atol=1e-4)                       # y - x = the robust-z response
        assert not torch.allclose(plain[t].x[:, :nv], shifted[t].x[:, :nv])   # x carries the context
        assert torch.equal(plain[t].x[:, nv:], shifted[t].x[:, nv:])          # present flags unchanged
    # cell line and time point are categorical features of every cell node
    assert shifted["compartment"].x_cat[:, 1].unique().tolist() == [2]        # MCF7
    assert shifted["channel"].x_cat[:, 3].unique().tolist() == [1]            # 24h
    assert float(shifted.activity) == pytest.approx(0.97) and float(plain.activity) == 1.0
    assert canonical_cell_line("A549-Cas9") == "A549" and time_point("48 h") == "48h"


@pytest.mark.shared_data
def test_control_states_differ_between_plates_and_no_cell_input_is_constant(shared_data):
    """Dahlin's 9 plates: every plate has its own control state; no cell-node input column that the
    source measures is constant over the data set."""
    ds = CellPaintingExperiments(ExperimentParams(profiles=[shared_data / DAHLIN]))
    recs = list(ds.records(SkipLog()))
    b = ProfileCellBuilder()
    first = {}
    for r in recs:
        first.setdefault(r.fields["plate"], r)
    assert len(first) == 9
    graphs = {p: b.build(r.fields["cell_profile"]) for p, r in first.items()}
    xs = np.stack([g["compartment"].x.numpy().ravel() for g in graphs.values()])
    assert len({row.tobytes() for row in xs}) == 9                       # one control state per plate
    # within a plate the control state is shared; the median robust z itself is 0 (the plate's reference)
    same = [r for r in recs if r.fields["plate"] == recs[0].fields["plate"]][:2]
    assert np.array_equal(same[0].fields["cell_profile"].context, same[1].fields["cell_profile"].context)
    assert np.abs(recs[0].fields["cell_profile"].control).max() < 1e-5
    measured = graphs[next(iter(graphs))]["channel"].x[:, 57:].numpy() > 0.5    # present flags
    chan = np.stack([g["channel"].x[:, :57].numpy() for g in graphs.values()])  # [plates, nodes, 57]
    varying = chan.std(axis=0) > 0
    assert varying[measured].mean() > 0.95
    assert {r.fields["time_h"] for r in recs} == {24.0, 48.0} and {r.fields["cell_line"] for r in recs} == {"U2OS"}


@pytest.mark.shared_data
def test_pooled_corpus_control_states_differ_between_cell_lines(shared_data):
    import os

    from cgc_framework.api import plan_run

    os.environ.setdefault("CGC_SHARED_DATA", str(shared_data))
    plan = plan_run(REPO / "benchmarks" / "configs" / "pooled_cellpainting.yaml",
                    overrides=["data.dataset.params.include_splits=[train, val, test]"])
    recs = list(plan.create_dataset().records(SkipLog()))
    by_line = collections.defaultdict(list)
    for r in recs:
        by_line[r.fields["cell_line"]].append(r)
    assert set(by_line) == {"A549", "U2OS", "MCF7"}
    b = ProfileCellBuilder()
    cats = {line: int(b.build(rs[0].fields["cell_profile"])["compartment"].x_cat[0, 1]) for line, rs in by_line.items()}
    assert len(set(cats.values())) == 3                                      # the cell line is an input
    ctx = [np.nanmean(np.abs(rs[0].fields["cell_profile"].context)) for rs in (by_line["U2OS"], by_line["MCF7"])]
    assert min(ctx) > 0                                                       # multi-plate sources: non-zero context
    assert len({r.fields["compound_key"] for r in recs if r.fields["smiles"]}) > 150


# -- 2. the dose encoding at unseen doses ----------------------------------------------------------

def test_prediction_at_an_unseen_dose_lies_between_its_trained_neighbours():
    """A monotone toy response r(d) = tanh(log10 d + 1) (same for every compound) learned at 0.01, 0.1,
    1 and 10 uM; at the unseen 0.3 and 3 uM the prediction lies between the neighbouring doses'."""
    from cgc_plugins.encoders import HGTEncoder, HGTParams
    from cgc_plugins.tasks import CausalIntervention, CausalParams

    schema, graphs, _ = lincs_experiment_graphs(4)
    train_doses = [0.01, 0.1, 1.0, 10.0]

    def at(g, dose):
        g = g.clone()
        g.dose_um = torch.tensor([dose], dtype=torch.float32)
        g["compartment"].y = g["compartment"].x + float(np.tanh(np.log10(dose) + 1.0))
        return g

    data = [at(g, d) for g in graphs[:24] for d in train_doses]
    torch.manual_seed(0)
    enc = HGTEncoder(HGTParams(hidden_dim=16, heads=2, num_layers=1), schema)
    task = CausalIntervention(CausalParams(), schema, 16)
    opt = torch.optim.Adam(list(enc.parameters()) + list(task.parameters()), lr=3e-3)
    for _ in range(12):
        for b in DataLoader(data, batch_size=32, shuffle=True):
            loss = task(b, enc).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    enc.eval(), task.eval()

    def predicted(dose):
        b = Batch.from_data_list([at(g, dose) for g in graphs[24:32]])
        with torch.no_grad():
            return float((task.predict(b, enc)["compartment"] - b["compartment"].x).mean())

    p = {d: predicted(d) for d in (0.01, 0.1, 0.3, 1.0, 3.0, 10.0)}
    assert p[0.01] < p[0.1] < p[1.0] < p[10.0]
    for lo, mid, hi in ((0.1, 0.3, 1.0), (1.0, 3.0, 10.0)):
        assert p[lo] < p[mid] < p[hi], p
    assert abs(p[3.0] - np.tanh(np.log10(3.0) + 1)) < 0.25


# -- 3. grouped folds ------------------------------------------------------------------------------

def _records(**kw):
    return list(CellPaintingExperiments(ExperimentParams(**kw)).records(SkipLog()))


def test_compound_folds_partition_the_compounds_and_every_compound_is_tested_once():
    folds = {}
    for k in range(5):
        recs = _records(split=SplitParams(by="compound", folds=5, fold=k, val_fraction=0.15))
        test = {r.fields["compound_id"] for r in recs if r.fields["split"] == "test"}
        train = {r.fields["compound_id"] for r in recs if r.fields["split"] == "train"}
        val = {r.fields["compound_id"] for r in recs if r.fields["split"] == "val"}
        assert test and not (test & train) and not (test & val) and not (train & val)
        assert all(r.fields["fold"] == k for r in recs if r.fields["split"] == "test")
        folds[k] = test
    every = {r.fields["compound_id"] for r in _records()}
    assert set().union(*folds.values()) == every                      # every compound is tested ...
    assert sum(len(v) for v in folds.values()) == len(every)          # ... exactly once: no compound in two folds
    with pytest.raises(ValueError, match="fold"):
        SplitParams(by="compound", folds=5, fold=5)
    with pytest.raises(ValueError, match="together"):
        SplitParams(by="compound", folds=5)


def test_scaffold_folds_keep_each_scaffold_in_one_fold_and_inchikey_groups_molecules():
    recs = _records(split=SplitParams(by="scaffold", folds=5, fold=0))
    fold_of_scaffold = collections.defaultdict(set)
    for r in recs:
        if r.fields["smiles"]:
            fold_of_scaffold[scaffold_of(r.fields["smiles"]) or r.fields["compound_id"]].add(r.fields["fold"])
    assert all(len(f) == 1 for f in fold_of_scaffold.values())
    assert len({f for fs in fold_of_scaffold.values() for f in fs}) == 5
    p = SplitParams(by="compound", key="inchikey14", folds=5, fold=0)
    a = {"compound_id": "BRD-X", "compound_key": "BSYNRYMUTXBXSQ", "smiles": "CC(=O)Oc1ccccc1C(=O)O"}
    b = {"compound_id": "aspirin", "compound_key": "BSYNRYMUTXBXSQ", "smiles": "CC(=O)Oc1ccccc1C(O)=O"}
    assert group_key(a, p) == group_key(b, p) and fold_of(group_key(a, p), p) == fold_of(group_key(b, p), p)
    assert assign_split(group_key(a, p), p) == assign_split(group_key(b, p), p)


# -- 4. baselines on toy sets with known answers --------------------------------------------------

def _table(meta: dict, responses) -> ResponseTable:
    r = np.asarray(responses, float)
    n = len(r)
    m = pd.DataFrame({"record_id": [f"r{i}" for i in range(n)], **meta})
    return ResponseTable(m, [f"c{k}" for k in range(r.shape[1])], np.zeros_like(r), r)


def test_per_dose_mean_is_per_cell_line():
    train = _table({"compound_id": list("abcd"), "smiles": ["C"] * 4, "dose_um": [1.0, 1.0, 1.0, 10.0],
                    "cell_line": ["A549", "A549", "U2OS", "U2OS"]}, [[1, 0], [3, 0], [0, 5], [0, 7]])
    query = pd.DataFrame({"dose_um": [1.0, 8.0, 1.0, 1.0], "cell_line": ["A549", "U2OS", "U2OS", "HeLa"]})
    out = per_dose_mean_by_line(train, query)
    assert out[:3].tolist() == [[2, 0], [0, 7], [0, 5]]
    assert out[3].tolist() == pytest.approx([4 / 3, 5 / 3])   # HeLa: no training well -> every line at 1 uM


def test_tanimoto_nn_excludes_the_same_compound_when_asked():
    smi = ["c1ccccc1O", "CCCCCCCCO", "c1ccccc1N"]
    train = _table({"compound_id": ["phenol", "octanol", "aniline"], "smiles": smi, "dose_um": [1.0] * 3},
                   [[1, 1], [2, 2], [3, 3]])
    query = pd.DataFrame({"compound_id": ["q"], "smiles": ["c1ccccc1O"], "dose_um": [1.0]})
    same, ids, sim = fingerprint_nn(train, query)
    assert ids == ["phenol"] and sim[0] == pytest.approx(1.0) and same.tolist() == [[1, 1]]
    other, ids, sim = fingerprint_nn(train, query, exclude_same=True)
    expected = tanimoto(ecfp4(["c1ccccc1O"]), ecfp4(smi[1:]))[0]
    assert ids == [["octanol", "aniline"][int(np.argmax(expected))]] and sim[0] == pytest.approx(max(expected))
    assert other.tolist() == [[3, 3]]   # aniline is phenol's nearest other compound


def test_ecfp_ridge_recovers_a_linear_fingerprint_response():
    rng = np.random.default_rng(0)
    smiles = ["c1ccccc1" + s for s in ("O", "N", "C", "Cl", "F", "Br", "CO", "CN", "CC", "OC", "NC", "CCl")]
    fp = ecfp4(smiles, 1024).astype(float)
    w = rng.normal(size=(1024, 3)) * (rng.random((1024, 1)) < 0.05)
    doses = [0.1, 1.0, 10.0]
    rows = [(s, d, (fp[i] @ w) * np.log10(d * 10)) for i, s in enumerate(smiles) for d in doses]
    train = _table({"compound_id": [r[0] for r in rows], "smiles": [r[0] for r in rows],
                    "dose_um": [r[1] for r in rows]}, [r[2] for r in rows])
    pred, alpha = ecfp_ridge(train, train.meta, alphas=(0.01, 1.0))
    assert alpha in (0.01, 1.0)
    assert stats.pearsonr(pred.ravel(), train.response.ravel())[0] > 0.95


def test_same_compound_interpolation_in_log_dose():
    train = _table({"compound_id": ["a"] * 3 + ["b"], "smiles": ["CCO"] * 3 + ["CCN"], "dose_um": [0.1, 1.0, 10.0, 1.0]},
                   [[0, 0], [2, 2], [4, 8], [9, 9]])
    query = pd.DataFrame({"compound_id": ["a", "a", "a", "c"], "smiles": ["CCO", "CCO", "CCO", "CCCl"],
                          "dose_um": [np.sqrt(10.0), 100.0, 0.01, 1.0]})
    out, covered = same_compound_interpolation(train, query)
    assert out.tolist()[0] == pytest.approx([3.0, 5.0])       # halfway between 1 and 10 uM in log dose
    assert out.tolist()[1] == [4, 8] and out.tolist()[2] == [0, 0]   # beyond the ends: the nearest end
    assert covered.tolist() == [True, True, True, False] and out[3].tolist() == [0, 0]


def test_molecule_ablations_zero_and_shuffle_the_compound_embedding():
    from cgc_framework.plugin.roles import control_view
    from cgc_plugins.encoders import HGTEncoder, HGTParams
    from cgc_plugins.tasks import CausalIntervention, CausalParams

    schema, graphs, _ = lincs_experiment_graphs(4)
    torch.manual_seed(0)
    enc = HGTEncoder(HGTParams(hidden_dim=16, heads=2, num_layers=1), schema).eval()
    task = CausalIntervention(CausalParams(), schema, 16).eval()
    b = Batch.from_data_list(graphs[:6])
    with torch.no_grad():
        real = task.predict(b, enc)["compartment"]
        zero = task.predict(b, enc, molecule="zero")["compartment"]
        assert not torch.allclose(real, zero)
        view = control_view(b, task.cooccurrence)
        z = enc(view)
        zm = enc.readout(z, view, task.molecule_types)
        parts = [task.dose(b.dose_um), enc.readout(z, view, task.cell_types)]
        perm = torch.randperm(6, generator=torch.Generator().manual_seed(3))
        expected = task.intervention(torch.cat([zm[perm], *parts], dim=-1))
        got = task.intervention_embedding(z, view, enc, molecule="shuffle", generator=torch.Generator().manual_seed(3))
        assert torch.allclose(got, expected, atol=1e-6)          # each well gets another well's compound
        zeroed = task.intervention(torch.cat([torch.zeros_like(zm), *parts], dim=-1))
        assert torch.allclose(task.intervention_embedding(z, view, enc, molecule="zero"), zeroed, atol=1e-6)
    with pytest.raises(ValueError, match="molecule must be"):
        task.predict(b, enc, molecule="nope")


# -- metrics, weights and verdicts ------------------------------------------------------------------

def test_nan_aware_metrics_equal_scipy_on_the_measured_entries_and_wmse_weights_features():
    rng = np.random.default_rng(2)
    m = rng.standard_normal((10, 5))
    p = m + 0.5 * rng.standard_normal((10, 5))
    m[0, 1] = m[3, 4] = np.nan
    s, feats, wells = response_metrics(m, p, np.array([1.0, 1.0, 1.0, 1.0, 6.0]) / 2.0)
    ok = np.isfinite(m)
    assert s["mse"] == pytest.approx(np.mean((m[ok] - p[ok]) ** 2))
    assert s["pearson"] == pytest.approx(stats.pearsonr(m[ok], p[ok])[0])
    assert feats.pearson[1] == pytest.approx(stats.pearsonr(m[1:, 1], p[1:, 1])[0])
    assert wells.spearman[3] == pytest.approx(stats.spearmanr(m[3, :4], p[3, :4])[0])
    w = np.broadcast_to(np.array([1, 1, 1, 1, 6.0]) / 2, m.shape)
    assert s["wmse"] == pytest.approx((w[ok] * (m[ok] - p[ok]) ** 2).sum() / w[ok].sum())
    # weights follow the training response variance, mean 1
    train = _table({"compound_id": list("abc"), "smiles": ["C"] * 3, "dose_um": [1.0] * 3}, [[0, 1], [0, 3], [0, 5]])
    assert feature_weights(train).tolist() == [0.0, 2.0]


def test_paired_verdicts_say_who_is_better_per_compound():
    from cgc_plugins.evaluators.responses import evaluate_methods

    rng = np.random.default_rng(0)
    resp = rng.standard_normal((40, 6)) * np.array([3, 3, 3, 0.1, 0.1, 0.1])
    meta = {"compound_id": [f"c{i // 4}" for i in range(40)], "smiles": [f"C{'C' * (i // 4)}O" for i in range(40)],
            "dose_um": [1.0] * 40, "cell_line": ["A549"] * 40}
    ev = _table(meta, resp)
    ev.predicted = resp + 0.3 * rng.standard_normal(resp.shape)       # a good model
    train = _table(meta, resp[::-1])
    rows, _, _, extras = evaluate_methods(ev, train, part="test", baselines=("control", "per_dose_mean"))
    v = pd.DataFrame(paired_verdicts(ev, extras, part="test"))
    assert set(v.baseline) == {"control", "per_dose_mean"}
    defined = v[v.n_compounds > 0]       # a constant prediction (control) has no per-well Pearson
    assert defined.model_better.all() and len(defined) == 3
    assert (v[v.metric == "wmse"].p_value < 0.01).all() and (defined.n_compounds == 10).all()


# -- 5. retrieval statistics ------------------------------------------------------------------------

def test_clopper_pearson_and_binomial_p_match_scipy():
    from scipy.stats import binomtest

    from cgc_plugins.evaluators.zeroshot import _binom_p, _clopper_pearson

    ci = binomtest(7, 40).proportion_ci(0.95, method="exact")
    assert _clopper_pearson(7, 40) == pytest.approx((ci.low, ci.high))
    assert _clopper_pearson(0, 10)[0] == 0.0 and _clopper_pearson(10, 10)[1] == 1.0
    assert _binom_p(5, 20, 0.05) == pytest.approx(binomtest(5, 20, 0.05, alternative="greater").pvalue)


# -- 6. cell-state protocol ---------------------------------------------------------------------------

def test_support_draws_never_share_a_compound_with_the_test_set():
    from cgc_plugins.evaluators.cell_state import knn_labels, support_draw

    labels = np.array(["a"] * 12 + ["b"] * 12 + ["c"] * 3, dtype=object)
    groups = np.array([f"g{i // 3}" for i in range(24)] + ["solo"] * 3, dtype=object)
    for d in range(5):
        sup, test, skipped = support_draw(labels, groups, 5, np.random.default_rng(d))
        assert skipped == ["c"] and len(sup) == 10
        assert not set(groups[sup]) & set(groups[test]) and set(labels[test]) == {"a", "b"}
    x = np.repeat(np.eye(2), [12, 12], axis=0)
    x = np.vstack([x, np.ones((3, 2))]) + 0.01 * np.random.default_rng(0).standard_normal((27, 2))
    pred = knn_labels(x, labels, groups)
    assert (pred[:24] == labels[:24]).all()      # the nearest well of another compound shares the class


# -- 7. honest outputs ---------------------------------------------------------------------------------

class _FakePre:
    def __init__(self, ckpt):
        self.checkpoint = ckpt


def test_whatif_warns_unless_the_checkpoints_evaluation_beat_the_per_dose_mean(tmp_path):
    from cgc_plugins.whatif.predictor import WhatIf

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    fake = type("W", (), {"pre": _FakePre(run / "checkpoints" / "final.pt")})()
    assert "no held-out evaluation" in WhatIf.evidence_warnings(fake)[0]
    ev = run / "evaluations" / "causal"
    ev.mkdir(parents=True)
    rows = [{"part": "test", "baseline": "per_dose_mean", "metric": m, "model": 1.0, "baseline_value": 2.0,
             "n_compounds": 30, "model_better": better, "p_value": 0.01} for m, better in (("wmse", True),
                                                                                         ("well_pearson", False))]
    pd.DataFrame(rows).to_csv(ev / "verdict.csv", index=False)
    warn = WhatIf.evidence_warnings(fake)
    assert len(warn) == 1 and "did not beat the per-dose mean" in warn[0] and "no evidence" in warn[0]
    pd.DataFrame([dict(r, model_better=True) for r in rows]).to_csv(ev / "verdict.csv", index=False)
    assert WhatIf.evidence_warnings(fake) == []


def test_summary_collects_the_verdicts_at_the_top():
    from cgc_framework.engine.report import verdict_section

    paras = ["### causal (causal_consistency)\n\nText.\n**Verdict** (test): the model did not beat `per_dose_mean` — x.\n",
             "### other (few_shot)\n\nno verdict here\n"]
    out = verdict_section(paras)
    assert out[1] == "## Verdicts" and out[-1].startswith("- causal (causal_consistency): (test): the model did not beat")
    assert verdict_section(["### x\n\nnothing"]) == []


# -- 8. the cross-validated summary ----------------------------------------------------------------------

def test_cv_summary_pools_folds_and_seeds(tmp_path):
    import yaml

    from cgc_plugins.evaluators.cv_summary import report

    rng = np.random.default_rng(0)
    trials = []
    for seed in (0, 1):
        for fold in range(3):
            t = f"t{seed}{fold}"
            trials.append({"trial": t, "seed": seed, "variant": "compound", "status": "ok"})
            run = tmp_path / "trials" / t / "run"
            (run / "evaluations" / "causal").mkdir(parents=True)
            (run / "config.resolved.yaml").write_text(yaml.safe_dump(
                {"data": {"dataset": {"params": {"split": {"folds": 3, "fold": fold}}}}}))
            rows = []
            for method, pr, w in (("model", 0.5, 1.0), ("per_dose_mean", 0.3, 1.5)):
                rows += [{"part": "test", "wells": "all", "method": method, "metric": "pearson",
                          "value": pr + 0.01 * rng.standard_normal(), "n_wells": 10, "n_features": 5},
                         {"part": "test", "wells": "all", "method": method, "metric": "wmse",
                          "value": w + 0.01 * rng.standard_normal(), "n_wells": 10, "n_features": 5}]
            pd.DataFrame(rows).to_csv(run / "evaluations" / "causal" / "counterfactual.csv", index=False)
    pd.DataFrame(trials).to_csv(tmp_path / "trials.csv", index=False)
    md = report(tmp_path, tmp_path / "out")
    diffs = pd.read_csv(tmp_path / "out" / "cv_differences.csv")
    d = diffs[(diffs.baseline == "per_dose_mean") & (diffs.metric == "pearson")].iloc[0]
    assert d.n == 6 and d["mean"] == pytest.approx(0.2, abs=0.02) and d.ci_low > 0 and d.model_better_ci
    w = diffs[(diffs.baseline == "per_dose_mean") & (diffs.metric == "wmse")].iloc[0]
    assert w["mean"] == pytest.approx(0.5, abs=0.02)          # baseline - model: > 0 = the model is better
    assert "beats it (both CIs above 0)" in md
    assert json.loads((tmp_path / "out" / "cv_trials.json").read_text())[0]["fold"] == 0

