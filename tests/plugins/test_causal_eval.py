"""Causal consistency and OOD response evaluators: ICS known answers, metrics against SciPy,
baselines, explicit group hold-outs, and an end-to-end run on the embedded LINCS plate (held-out
doses) plus the A549 -> MCF-7 (BBBC021) cell-context suite on the shared data."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import mean_squared_error
from sklearn.metrics.pairwise import cosine_similarity

from cgc_framework.plugin.contracts import EvaluationContext
from cgc_framework.plugin.records import SkipLog
from cgc_plugins.cells.feature_names import COMPARTMENT_SLOTS, COMPARTMENTS
from cgc_plugins.datasets.experiment import CellPaintingExperiments, ExperimentParams, SplitParams, assign_split
from cgc_plugins.evaluators.causal_consistency import intervention_consistency, shared_target_matrix, target_set
from cgc_plugins.evaluators.responses import (
    ResponseTable,
    ecfp4,
    fingerprint_nn,
    per_dose_mean,
    response_metrics,
    tanimoto,
)

# -- ICS: known answers --------------------------------------------------------------------------


def test_ics_of_identical_same_target_responses_is_one_and_random_pairs_a_third():
    e1, e2 = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    r = np.stack([e1, 2 * e1, e2, 3 * e2])  # cosine ignores scale
    targets = [frozenset({"A"}), frozenset({"A"}), frozenset({"B"}), frozenset({"B"})]
    res = intervention_consistency(r, targets, n_permutations=3000, seed=1)
    assert res.ics_target == pytest.approx(1.0)
    assert res.ics_random == pytest.approx(2 / 6)  # 2 of the 6 pairs have cosine 1, the rest 0
    assert (res.n_target_pairs, res.n_pairs, res.n_compounds) == (2, 6, 4)
    # exact null: a random relabelling of AABB pairs up {e1, 2e1} and {e2, 3e2} with probability 1/3
    assert res.p_value == pytest.approx(1 / 3, abs=0.03)


def test_ics_equals_a_plain_loop_over_pairs_and_detects_target_structure():
    rng = np.random.default_rng(0)
    genes = ["G0", "G1", "G2", "G3"]
    directions = rng.standard_normal((4, 30))
    labels = np.repeat(np.arange(4), 5)
    r = directions[labels] + 0.3 * rng.standard_normal((20, 30))
    targets = [frozenset({genes[i]}) for i in labels]
    res = intervention_consistency(r, targets, n_permutations=500, seed=0)
    sims = cosine_similarity(r)
    same = [sims[i, j] for i, j in itertools.combinations(range(20), 2) if labels[i] == labels[j]]
    every = [sims[i, j] for i, j in itertools.combinations(range(20), 2)]
    assert res.ics_target == pytest.approx(np.mean(same)) and res.ics_random == pytest.approx(np.mean(every))
    assert res.n_target_pairs == 4 * 10
    assert res.p_value == pytest.approx(1 / 501)  # no permutation reaches the observed score
    # responses unrelated to the targets: not significant
    shuffled = intervention_consistency(rng.standard_normal((20, 30)), targets, n_permutations=500, seed=0)
    assert shuffled.p_value > 0.05 and abs(shuffled.ics_target - shuffled.ics_random) < 0.1


def test_target_sets_and_multi_target_sharing():
    assert target_set("ABL1|kit| ") == frozenset({"ABL1", "KIT"}) and target_set(None) == frozenset()
    m = shared_target_matrix([frozenset({"A", "B"}), frozenset({"B"}), frozenset({"C"}), frozenset()])
    assert m.tolist() == [[False, True, False, False], [True, False, False, False],
                          [False, False, False, False], [False, False, False, False]]


def test_ics_without_same_target_pairs_is_undefined_not_zero():
    res = intervention_consistency(np.eye(3), [frozenset({"A"}), frozenset({"B"}), frozenset({"C"})])
    assert np.isnan(res.ics_target) and np.isnan(res.p_value) and res.n_target_pairs == 0


# -- metrics and baselines ----------------------------------------------------------------------

def test_response_metrics_match_scipy_per_feature_and_per_well():
    rng = np.random.default_rng(1)
    m = rng.standard_normal((12, 7))
    p = 0.5 * m + rng.standard_normal((12, 7))
    summary, feats, wells = response_metrics(m, p)
    assert summary["mse"] == pytest.approx(mean_squared_error(m.ravel(), p.ravel()))
    assert summary["pearson"] == pytest.approx(stats.pearsonr(m.ravel(), p.ravel())[0])
    assert summary["spearman"] == pytest.approx(stats.spearmanr(m.ravel(), p.ravel())[0])
    assert feats.pearson.tolist() == pytest.approx([stats.pearsonr(m[:, k], p[:, k])[0] for k in range(7)])
    assert wells.spearman.tolist() == pytest.approx([stats.spearmanr(m[i], p[i])[0] for i in range(12)])
    assert summary["feature_pearson"] == pytest.approx(feats.pearson.mean())
    assert summary["well_pearson"] == pytest.approx(wells.pearson.mean())
    zero, _, _ = response_metrics(m, np.zeros_like(m))  # the control baseline: no correlation defined
    assert np.isnan(zero["pearson"]) and zero["well_defined"] == 0
    assert zero["mse"] == pytest.approx(np.mean(m ** 2))


def _table(smiles, doses, responses, ids=None):
    n = len(smiles)
    meta = pd.DataFrame({"record_id": [f"r{i}" for i in range(n)], "compound_id": ids or smiles,
                         "smiles": smiles, "dose_um": doses})
    r = np.asarray(responses, float)
    return ResponseTable(meta, [f"c{k}" for k in range(r.shape[1])], np.zeros_like(r), r)


def test_per_dose_mean_uses_the_nearest_training_dose_in_log_space():
    train = _table(["C", "CC", "CCC", "CCO"], [0.041152, 0.041152, 10.0, 3.3333],
                   [[1, 0], [3, 0], [0, 5], [0, 7]])
    out = per_dose_mean(train, np.array([0.04, 9.0, 1.2, 2.5]))
    # 1.2 uM: log distance to 0.04 is 1.48, to 3.33 is 0.44 -> 3.33
    assert out.tolist() == [[2, 0], [0, 5], [0, 7], [0, 7]]


def test_fingerprint_nn_picks_the_most_similar_training_compound_at_the_nearest_dose():
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    smi = ["c1ccccc1O", "CCCCCCCCO", "c1ccccc1N"]
    train = _table(smi + ["c1ccccc1O"], [1.0, 1.0, 1.0, 10.0], [[1, 1], [2, 2], [3, 3], [9, 9]])
    query = pd.DataFrame({"smiles": ["Oc1ccc(O)cc1", "c1ccccc1O"], "dose_um": [8.0, 0.5]})
    out, ids, sim = fingerprint_nn(train, query)
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fp = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in ["Oc1ccc(O)cc1"] + smi]
    expected = DataStructs.BulkTanimotoSimilarity(fp[0], fp[1:])
    assert tanimoto(ecfp4(["Oc1ccc(O)cc1"]), ecfp4(smi))[0] == pytest.approx(expected)
    assert ids[0] == smi[int(np.argmax(expected))] and sim[0] == pytest.approx(max(expected))
    assert ids == ["c1ccccc1O", "c1ccccc1O"] and out.tolist() == [[9, 9], [1, 1]]  # nearest dose of phenol


# -- explicit group hold-outs --------------------------------------------------------------------

def test_test_groups_hold_out_named_doses_and_val_by_record_draws_wells_of_training_doses():
    p = SplitParams(by="dose", test_groups=[3.33, 10], val_by="record", val_fraction=0.2, seed=0)
    assert assign_split(3.3333, p, "x") == assign_split(10.0, p, "y") == "test"
    assert assign_split(0.041152, p, "x") in ("train", "val")
    recs = list(CellPaintingExperiments(ExperimentParams(split=p)).records(SkipLog()))
    parts = {s: [r for r in recs if r.fields["split"] == s] for s in ("train", "val", "test")}
    assert {round(r.fields["dose_um"], 2) for r in parts["test"]} == {3.33, 10.0}
    assert len(parts["test"]) == 110
    train_doses = {round(r.fields["dose_um"], 2) for r in parts["train"]}
    # val = wells drawn at random from the training doses (one compound has single wells at odd doses)
    assert np.mean([round(r.fields["dose_um"], 2) in train_doses for r in parts["val"]]) > 0.9
    assert 0.1 < len(parts["val"]) / (len(parts["val"]) + len(parts["train"])) < 0.3
    assert assign_split("proteasome inhibitor", SplitParams(by="moa", test_groups=["proteasome inhibitor"])) == "test"


# -- end to end on the embedded plate -----------------------------------------------------------

DOSE_SPLIT = "{by: dose, test_groups: [3.33, 10], val_by: record, val_fraction: 0.15, seed: 0}"


@pytest.fixture(scope="module")
def dose_run(tmp_path_factory, registry_yaml):
    from cgc_framework.api import run

    evals = ("{cc: {name: causal_consistency, params: {n_permutations: 200, max_wells: 50}}, "
             "ood: {name: ood_response, params: {suite: dose, max_wells: 40}}}")
    return run(registry_yaml, overrides=[
        "trainer.num_workers=0", "stages=[{name: causal, epochs: 1, weights: {causal: 1.0}}]",
        "model.encoder.params.hidden_dim=16", f"data.dataset.params.split={DOSE_SPLIT}",
        "data.dataset.params.include_splits=[train]", f"evaluations={evals}"],
        run_dir=tmp_path_factory.mktemp("causal") / "r", progress=False)


def test_counterfactual_table_scores_model_and_baselines_on_held_out_doses(dose_run):
    d = dose_run.run_dir / "evaluations" / "cc"
    table = pd.read_csv(d / "counterfactual.csv")
    # issue 18: the ECFP4 ridge baseline and the model's molecule ablations joined the table, and every
    # metric is also given on the active wells (response above the plate's DMSO wells)
    assert set(table.method) == {"model", "model_no_compound", "model_shuffled_compound", "control",
                                 "per_dose_mean", "fingerprint_nn", "ecfp_ridge"}
    assert set(table.wells) == {"all", "active"}
    table = table[table.wells == "all"]
    held = [r for r in CellPaintingExperiments(ExperimentParams(split=SplitParams(
        by="dose", test_groups=[3.33, 10], val_by="record", val_fraction=0.15))).records(SkipLog())
        if r.fields["split"] == "test"]
    assert len(held) == 110  # 55 compounds x 2 doses
    assert (table.part == "test").all() and (table.n_wells == 50).all()  # max_wells of 104 buildable
    per_well = pd.read_csv(d / "per_well.csv")
    assert set(per_well.record_id) <= {r.id for r in held if r.fields["smiles"]} and per_well.record_id.nunique() == 50
    mse = table[table.metric == "mse"].set_index("method").value
    ctrl = per_well[per_well.method == "control"]
    assert mse["control"] == pytest.approx(ctrl.mse.mean())  # equal well sizes: mean of per-well MSEs
    # issue 18: the nearest neighbour excludes the query's own compound (before: itself at another dose)
    assert (per_well[per_well.method == "fingerprint_nn"].tanimoto < 1.0).all()
    summary = dose_run.summary_path.read_text()
    assert "pretraining read only `['train']`, never the `test` part" in summary
    ics = pd.read_csv(d / "ics.csv").set_index("source")
    assert set(ics.index) == {"model", "measured", "model_centred", "measured_centred"}
    assert (ics.n_target_pairs > 5).all()
    assert ((ics.p_value > 0) & (ics.p_value <= 1)).all()


def test_counterfactual_numbers_recomputed_from_per_well_and_per_feature_tables(dose_run):
    d = dose_run.run_dir / "evaluations" / "cc"
    table = pd.read_csv(d / "counterfactual.csv")
    table = table[table.wells == "all"]
    feats = pd.read_csv(d / "per_feature.csv")
    wells = pd.read_csv(d / "per_well.csv")
    for method in ("model", "per_dose_mean"):
        row = table[(table.method == method)].set_index("metric").value
        assert row["feature_pearson"] == pytest.approx(feats[feats.method == method].pearson.mean())
        assert row["well_spearman"] == pytest.approx(wells[wells.method == method].spearman.mean())


def test_ood_dose_suite_reports_in_and_out_of_distribution_side_by_side(dose_run):
    d = dose_run.run_dir / "evaluations" / "ood"
    table = pd.read_csv(d / "ood.csv")
    assert set(table.part) == {"id", "ood"} and (table.suite == "dose").all()
    methods = {"model", "model_no_compound", "model_shuffled_compound", "control", "per_dose_mean",
               "fingerprint_nn", "ecfp_ridge"}
    assert set(table[table.part == "id"].method) == methods
    # held-out doses are also scored against the same compound's neighbouring doses (issue 18)
    assert set(table[table.part == "ood"].method) == methods | {"same_compound_interpolation"}
    table = table[table.wells == "all"]
    wells = pd.read_csv(d / "per_well.csv")
    ood_doses = {round(x, 2) for x in wells[wells.part == "ood"].dose_um}
    id_doses = {round(x, 2) for x in wells[wells.part == "id"].dose_um}
    assert ood_doses == {3.33, 10.0} and not (id_doses & ood_doses)
    assert (table.n_wells <= 40).all()
    overlap = pd.read_csv(d / "overlap.csv").set_index("item")["count"]
    assert overlap["OOD doses (uM) not among training doses"] == 2


COMPARTMENT_VALUES = {f"{c}_{s}" for c in COMPARTMENTS for s in COMPARTMENT_SLOTS}


def test_cell_context_suite_scores_mcf7_bbbc021_on_the_shared_slots(shared_data, dose_run):
    """A549 LINCS checkpoint -> MCF-7 BBBC021 wells through the shared cell schema."""
    from cgc_framework.api import plan_run
    from cgc_framework.engine.checkpoint import build_model, load_checkpoint
    from cgc_framework.plugin.graph import GraphSchema
    from cgc_plugins.evaluators.ood import OODParams, OODResponse

    cp = shared_data / "cellpainting"
    ref = {"name": "cellpainting_experiments", "params": {
        "profiles": [str(cp / "profiles" / "bbbc021_MCF7_per_well_mean_annotated.csv.gz")],
        "compounds": str(cp / "annotations" / "BBBC021_compound_smiles_via_repurposing_hub_name_match.csv"),
        "compounds_key": "compound"}}
    plan = plan_run(dose_run.run_dir / "config.resolved.yaml")
    ckpt = load_checkpoint(dose_run.checkpoints[-1])
    model = build_model(ckpt, GraphSchema.from_dict(ckpt["schema"]), plan.registry)
    model.load_state_dict(ckpt["model"])
    out = dose_run.run_dir / "evaluations" / "cell"
    out.mkdir()
    ctx = EvaluationContext(out, plan, model.eval(), dose_run.checkpoints[-1])
    res = OODResponse(OODParams(suite="cell_context", ood_dataset=ref, id_split=None, max_wells=60)).evaluate(ctx)
    table = res.tables["ood"]
    table = table[table.wells == "all"]
    assert set(table.part) == {"ood"} and (table.n_wells == 60).all()
    overlap = res.tables["overlap"].set_index("item")["count"]
    n_slots = table.n_features.iloc[0]
    assert 0 < n_slots == overlap["response slots scored (measured in every evaluated and training well)"]
    assert n_slots < overlap["response slots measured in every training well"]  # 3 stains vs 5 channels
    assert overlap["CellProfiler feature names in both"] < overlap["CellProfiler features (OOD file)"]
    # every scored slot is a compartment slot or a DNA channel slot: the stains both contexts have
    # (CellProfiler names: a channel slot ends in _<channel>, a compartment slot is <compartment>_<slot>)
    feats = res.tables["per_feature"].feature.unique()
    assert all(f in COMPARTMENT_VALUES or f.endswith("_DNA") for f in feats)
    assert "| control |" in res.summary_markdown
