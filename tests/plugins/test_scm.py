"""The structural-causal-model dataset (scm_cellpainting) and the do-calculus check (do_check):
records shaped like the real ones, the analytic truth recomputed here from first principles, the
confounded assignment, and the evaluator's errors against that truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cgc_framework.plugin.records import SkipLog
from cgc_plugins.cells.profile_builder import CellProfile, ProfileCellBuilder
from cgc_plugins.datasets.experiment import CellPaintingExperiments, SplitParams
from cgc_plugins.datasets.scm import SCMCellPainting, SCMParams
from cgc_plugins.evaluators.do_check import dose_design, verdict


def _records(**kw):
    ds = SCMCellPainting(SCMParams(**kw))
    return ds, list(ds.records(SkipLog()))


def test_records_look_like_the_real_experiment_records():
    ds, recs = _records(n_plates=2, wells_per_plate=4)
    real = next(iter(CellPaintingExperiments().records(SkipLog())))
    assert len(recs) == 8 and set(real.fields) <= set(recs[0].fields)
    prof = recs[0].fields["cell_profile"]
    assert isinstance(prof, CellProfile) and prof.features == real.fields["cell_profile"].features
    assert prof.treated.shape == prof.control.shape == (454,) and prof.dose_um == recs[0].fields["dose_um"]
    assert all(r.fields["smiles"] and r.fields["compound_id"].startswith("BRD-") for r in recs)
    again = _records(n_plates=2, wells_per_plate=4)[1]
    assert [r.id for r in again] == [r.id for r in recs]
    np.testing.assert_array_equal(again[5].fields["cell_profile"].treated, recs[5].fields["cell_profile"].treated)
    other = _records(n_plates=2, wells_per_plate=4, seed=1)[1]
    assert not np.allclose(other[0].fields["cell_profile"].control, prof.control)


def test_noise_free_treated_state_is_the_analytic_interventional_mean():
    ds, recs = _records(n_plates=4, wells_per_plate=12, noise_sd=0.0, ec50_um=0.5, hill=2.0)
    for r in recs:
        b = int(r.fields["plate"].split("-P")[1])
        k = ds.compound_ids.index(r.fields["compound_id"])
        d = r.fields["dose_um"]
        h = d ** 2 / (d ** 2 + 0.5 ** 2)  # Hill, written out
        expected = ds.controls[b] + h * ds.effects[k]
        np.testing.assert_allclose(r.fields["cell_profile"].treated, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r.fields["cell_profile"].control, ds.controls[b], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ds.true_effect(r.fields["compound_id"], d), h * ds.effects[k])
        assert r.fields["batch"] == b % 2
    assert ds.hill_response(0.5) == pytest.approx(0.5)


def test_effects_have_the_declared_rank_and_the_batch_shift_separates_controls():
    ds = SCMCellPainting(SCMParams(effect_rank=3, n_compounds=10))
    assert np.linalg.matrix_rank(ds.effects) == 3
    gap = ds.controls[1::2].mean(0) - ds.controls[0::2].mean(0)
    assert np.corrcoef(gap, ds.batch_shift)[0, 1] > 0.95


def test_assignment_is_confounded_by_batch_and_the_observational_mean_follows_it():
    ds, recs = _records(n_plates=8, wells_per_plate=200, confounding=0.8, n_compounds=8)
    favoured = [ds.groups[ds.compound_ids.index(r.fields["compound_id"])] == r.fields["batch"] for r in recs]
    assert np.mean(favoured) == pytest.approx(0.8, abs=3 * np.sqrt(0.16 / len(recs)))
    # E[c_B | compound] = sum_b P(b | compound) c_b: empirical mean of the controls of each compound's wells
    for cid in ds.compound_ids[:3]:
        ctrl = np.mean([r.fields["cell_profile"].control for r in recs if r.fields["compound_id"] == cid], axis=0)
        analytic = ds.plate_weights(cid) @ ds.controls
        assert np.linalg.norm(ctrl - analytic) < 0.15 * np.linalg.norm(analytic - ds.controls.mean(0)) + 0.3
        np.testing.assert_allclose(ds.observational_mean(cid, 1.11) - ds.true_effect(cid, 1.11), analytic)
    full = SCMCellPainting(SCMParams(confounding=1.0))
    w = full.plate_weights(full.compound_ids[1])  # group 1: only ever on batch-1 plates
    assert (w[full.batches == 0] == 0).all() and w.sum() == pytest.approx(1)


def test_splits_apply_to_scm_records():
    _, test = _records(split=SplitParams(by="compound", seed=0, test_fraction=0.3), include_splits=["test"])
    _, train = _records(split=SplitParams(by="compound", seed=0, test_fraction=0.3), include_splits=["train"])
    assert test and train and not ({r.fields["compound_id"] for r in test} & {r.fields["compound_id"] for r in train})


def test_verdict_and_design_known_answers():
    assert verdict(0.1, 0.5, 1.0, 0.5)[0] and not verdict(0.6, 0.5, 1.0, 0.9)[0]
    assert not verdict(0.6, 0.9, 1.0, 0.5)[0]  # beats the regressor but misses most of the effect
    x = dose_design(np.array([[1, 0, 1], [0, 1, 0]]), np.array([0.04, 10.0]), np.array([0.04, 1.11, 10.0]))
    assert x.shape == (2, 3 * 3 + 3)
    assert x[0].tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert x[1].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]


# -- the evaluator on a small pretraining run ----------------------------------------------------

SCM = "{n_compounds: 6, n_plates: 4, wells_per_plate: 24, seed: 0}"


@pytest.fixture(scope="module")
def scm_run(tmp_path_factory, registry_yaml):
    from cgc_framework.api import run

    return run(registry_yaml, overrides=[
        "trainer.num_workers=0", "stages=[{name: causal, epochs: 1, weights: {causal: 1.0}}]",
        "model.encoder.params.hidden_dim=16", f"data.dataset={{name: scm_cellpainting, params: {SCM}}}",
        "evaluations={do: {name: do_check, params: {reference_plates: [0, 1]}}}"],
        run_dir=tmp_path_factory.mktemp("scm") / "r", progress=False)


def _slots(graph, attr):
    out = []
    for t, n in (("compartment", 35), ("channel", 57)):
        x, v = graph[t].x.numpy(), graph[t][attr].numpy()
        out.append(v[:, :n][x[:, n:] > 0.5])
    return np.concatenate(out)


def test_do_check_errors_match_the_truth_computed_here(scm_run):
    table = pd.read_csv(scm_run.run_dir / "evaluations" / "do" / "do_check.csv").set_index("method")
    ds = SCMCellPainting(SCMParams(n_compounds=6, n_plates=4, wells_per_plate=24, seed=0))
    builder = ProfileCellBuilder()
    truth_sq, limit_sq, n = 0.0, 0.0, 0
    for b in (0, 1):
        c = ds.controls[b]
        for k, cid in enumerate(ds.compound_ids):
            for d in ds.p.doses_um:
                h = d / (d + 1.0)  # Hill n = 1, EC50 = 1 uM
                truth = builder.build(CellProfile(ds.features, (c + h * ds.effects[k]).astype(np.float32),
                                                  c.astype(np.float32), d))
                p_b = ds.plate_weights(cid)
                limit = builder.build(CellProfile(ds.features, (p_b @ ds.controls + h * ds.effects[k]).astype(np.float32),
                                                  c.astype(np.float32), d))
                y, x, yl = _slots(truth, "y"), _slots(truth, "x"), _slots(limit, "y")
                truth_sq += float(((y - x) ** 2).sum())
                limit_sq += float(((yl - y) ** 2).sum())
                n += y.size
    assert table.loc["control", "mse"] == pytest.approx(truth_sq / n, rel=1e-4)  # mean squared true effect
    assert table.loc["correlational_limit", "mse"] == pytest.approx(limit_sq / n, rel=1e-4)
    assert table.loc["correlational_limit", "mse"] > 0.2 * table.loc["control", "mse"]  # confounding bias
    assert (table.n_queries == 2 * 6 * 6).all()
    model, ridge = table.loc["model", "mse"], table.loc["ridge", "mse"]
    ok = model < ridge and model / table.loc["control", "mse"] <= 0.5
    assert bool(table.loc["model", "identified"]) == ok
    summary = scm_run.summary_path.read_text()
    assert ("the model identified the causal effect" if ok else "the model did NOT identify") in summary


def test_do_check_refuses_a_dataset_without_analytic_effects(scm_run):
    from cgc_framework.api import plan_run
    from cgc_framework.plugin.contracts import EvaluationContext
    from cgc_plugins.evaluators.do_check import DoCheck

    plan = plan_run(scm_run.run_dir / "config.resolved.yaml",
                    overrides=["data.dataset={name: cellpainting_experiments, params: {}}"])
    ctx = EvaluationContext(scm_run.run_dir, plan, None, scm_run.checkpoints[-1])
    with pytest.raises(ValueError, match="scm_cellpainting"):
        DoCheck().evaluate(ctx)
