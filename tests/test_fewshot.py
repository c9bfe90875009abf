"""Few-shot transfer evaluator on real MoleculeNet data through DeepChem's loaders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from cgc_framework.api import run
from cgc_framework.metrics import mean_ci
from conftest import one_stage
from cgc_plugins.evaluators.fewshot import FewShotParams, _support, summarize
from cgc_plugins.evaluators.molnet import load_molnet


def test_support_sets_hold_k_labelled_molecules_of_each_class():
    y = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    present = np.array([1, 1, 1, 0, 1, 1, 0, 1], bool)
    idx = _support(y, present, 2, np.random.default_rng(0))
    assert sorted(y[idx].tolist()) == [0, 0, 1, 1] and present[idx].all() and len(set(idx)) == 4
    assert _support(y, present, 3, np.random.default_rng(0)) is None  # only 2 labelled negatives


def test_params_reject_zero_shot_k_and_unknown_sets():
    with pytest.raises(ValidationError, match="k = 0 is the zero-shot"):
        FewShotParams(k=[0, 5])
    with pytest.raises(ValidationError):
        FewShotParams(datasets=["qm9"])


def test_summary_numbers_are_recomputed_from_the_table():
    rng = np.random.default_rng(3)
    table = pd.DataFrame([{"dataset": "bbbp", "task": t, "method": m, "k": k, "draw": d, "metric": "auroc",
                           "value": rng.random()} for t in ("a", "b") for m in ("ecfp_lr",) for k in (1, 5)
                          for d in range(4)])
    text = summarize(table, [])
    per_draw = table[table.k == 5].groupby("draw")["value"].mean()
    m, lo, hi = mean_ci(per_draw.values)
    assert f"{m:.3f} [{lo:.3f}, {hi:.3f}]" in text.splitlines()[-1]


@pytest.fixture(scope="module")
def fewshot_run(shared_data, tmp_path_factory, registry_yaml):
    params = (f"{{datasets: [bbbp], k: [5, 10], draws: 3, data_dir: {shared_data / 'moleculenet'}}}")
    # every well of the plate (no compound split): the leakage guard alone holds molecules out
    return run(registry_yaml, overrides=["trainer.num_workers=0", one_stage(2),
                                         "data.dataset.params.include_splits=[train, val, test]",
                                         "model.encoder.params.hidden_dim=16",
                                         f"evaluations={{fs: {{name: few_shot, params: {params}}}}}"],
               run_dir=tmp_path_factory.mktemp("fs") / "r", progress=False)


def test_fewshot_table_has_every_method_k_and_draw(fewshot_run):
    table = pd.read_csv(fewshot_run.run_dir / "evaluations" / "fs" / "few_shot.csv")
    # BBBP: 1 task x 4 methods x 2 k x 3 draws x 4 metrics
    assert len(table) == 1 * 4 * 2 * 3 * 4
    assert set(table.method) == {"pretrained", "untrained", "ecfp_lr", "ecfp_rf"}
    auc = table[table.metric == "auroc"].value
    assert auc.between(0, 1).all() and auc.std() > 0
    assert (table.n_test > 150).all()  # scaffold test split of BBBP (204 molecules)
    assert "| bbbp | ecfp_lr |" in fewshot_run.summary_path.read_text()


def test_leakage_guard_holds_the_scaffold_test_molecules_out_and_says_so(fewshot_run, shared_data):
    from cgc_plugins.datasets.lincs import EMBEDDED_COMPOUNDS
    from cgc_plugins.evaluators.common import inchikey14

    leaks = pd.read_csv(fewshot_run.run_dir / "evaluations" / "fs" / "leakage.csv")
    ds = load_molnet("bbbp", shared_data / "moleculenet")
    comp = pd.read_csv(EMBEDDED_COMPOUNDS).dropna(subset=["smiles"])
    test_keys = {inchikey14(s) for s in ds.test.smiles}
    corpus = {inchikey14(s) for s in comp.smiles} - {None}
    assert len(corpus & test_keys) >= 3  # the embedded plate shares molecules with BBBP's test split
    # ... which the guard left out of pretraining, one skip per well, with the reason
    skipped = pd.read_csv(fewshot_run.run_dir / "skipped_records.csv")
    guarded = skipped[skipped.component == "leakage_guard"]
    assert set(guarded.reason) == {"held out: in the scaffold test split of bbbp of evaluation 'fs' (few_shot)"}
    assert {inchikey14(s) for s in guarded.value} == corpus & test_keys
    row = leaks[(leaks.dataset == "bbbp") & (leaks.split == "test")]
    assert row.molecules.item() == len(ds.test.smiles) and row.seen_in_pretraining.item() == 0
    train = leaks[(leaks.dataset == "bbbp") & (leaks.split == "train")]
    assert train.seen_in_pretraining.item() == sum(inchikey14(s) in corpus for s in ds.train.smiles) > 0
    summary = fewshot_run.summary_path.read_text()
    assert f"bbbp 0/{len(ds.test.smiles)}" in summary and f"left {len(guarded)} pretraining records" in summary
    assert "leakage_guard" in summary


def test_ecfp_baseline_matches_an_independent_sklearn_fit(fewshot_run, shared_data, tmp_path):
    ds = load_molnet("bbbp", shared_data / "moleculenet", tmp_path)
    table = pd.read_csv(fewshot_run.run_dir / "evaluations" / "fs" / "few_shot.csv")
    assert set(table.method) >= {"ecfp_lr"}
    row = table[(table.method == "ecfp_lr") & (table.k == 5) & (table.draw == 1) & (table.metric == "auroc")]
    rng = np.random.default_rng([0, 0, 5, 1])  # seed, task, k, draw: the evaluator's documented stream
    y, present = ds.train.y[:, 0], ds.train.present[:, 0]
    pos = rng.choice(np.flatnonzero(present & (y == 1)), 5, replace=False)
    neg = rng.choice(np.flatnonzero(present & (y == 0)), 5, replace=False)
    idx = np.concatenate([pos, neg])
    scaler = StandardScaler().fit(ds.train.ecfp[idx])
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(ds.train.ecfp[idx]), y[idx])
    test = ds.test.present[:, 0]
    expected = roc_auc_score(ds.test.y[test, 0], clf.predict_proba(scaler.transform(ds.test.ecfp[test]))[:, 1])
    assert row.value.item() == pytest.approx(expected, abs=1e-9)
