"""Full-data scaffold benchmark (Hu et al. protocol) on real MoleculeNet data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from cgc_framework.api import run
from cgc_plugins.evaluators.molnet import load_molnet
from tests.support import one_stage


@pytest.mark.slow
def test_scaffold_benchmark_protocols_and_fingerprint_baseline(registry_yaml, shared_data, tmp_path):
    params = (f"{{datasets: [bbbp], epochs: 2, max_train: 200, finetune_init: [scratch], "
              f"data_dir: {shared_data / 'moleculenet'}}}")
    res = run(registry_yaml, overrides=["trainer.num_workers=0", one_stage(1),
                                        "model.encoder.params.hidden_dim=16",
                                        f"evaluations={{sc: {{name: scaffold_benchmark, params: {params}}}}}"],
              run_dir=tmp_path / "r", progress=False)
    table = pd.read_csv(res.run_dir / "evaluations" / "sc" / "scaffold.csv")
    assert sorted(zip(table.protocol, table.init)) == [
        ("ecfp_lr", "-"), ("finetune", "scratch"), ("linear_probe", "pretrained"), ("linear_probe", "untrained")]
    assert table.test_auroc.between(0, 1).all() and (table.n_train == 200).all()
    # the fine-tuning curve: one row per epoch; the reported epoch is the one of best valid ROC-AUC
    curve = pd.read_csv(res.run_dir / "evaluations" / "sc" / "finetune_curve.csv")
    assert list(curve.epoch) == [0, 1] and (curve.train_loss > 0).all()
    assert set(curve.init) == {"scratch"} and set(curve.protocol) == {"finetune"}
    tuned = table[table.protocol == "finetune"].iloc[0]
    assert tuned.valid_auroc == pytest.approx(curve.valid_auroc.max())
    assert tuned.best_epoch == curve.epoch[curve.valid_auroc.idxmax()]
    # the fingerprint baseline, recomputed independently on the same subsample
    ds = load_molnet("bbbp", shared_data / "moleculenet", tmp_path / "dc")
    idx = np.sort(np.random.default_rng(0).choice(len(ds.train.smiles), 200, replace=False))
    x, y = ds.train.ecfp[idx], ds.train.y[idx, 0]
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(x), y)
    expected = roc_auc_score(ds.test.y[:, 0], clf.predict_proba(scaler.transform(ds.test.ecfp))[:, 1])
    assert table[table.protocol == "ecfp_lr"].test_auroc.item() == pytest.approx(expected, abs=1e-9)
    summary = res.summary_path.read_text()
    assert "GIN without pretraining: 67.0" in summary and "not directly comparable" in summary


@pytest.mark.slow
def test_a_sets_scores_do_not_depend_on_the_sets_listed_before_it(registry_yaml, shared_data, tmp_path):
    common = f"epochs: 1, max_train: 150, protocols: [finetune], data_dir: {shared_data / 'moleculenet'}"
    evaluations = (f"evaluations={{both: {{name: scaffold_benchmark, params: {{datasets: [bbbp, bace], {common}}}}}, "
                   f"alone: {{name: scaffold_benchmark, params: {{datasets: [bace], {common}}}}}}}")
    res = run(registry_yaml, overrides=["trainer.num_workers=0", one_stage(1), "model.encoder.params.hidden_dim=16",
                                        evaluations], run_dir=tmp_path / "r", progress=False)
    both, alone = (pd.read_csv(res.run_dir / "evaluations" / key / "scaffold.csv") for key in ("both", "alone"))
    columns = ["init", "test_auroc", "valid_auroc", "best_epoch"]
    assert list(alone.init) == ["pretrained", "scratch"]
    pd.testing.assert_frame_equal(both[both.dataset == "bace"][columns].reset_index(drop=True), alone[columns])


@pytest.mark.slow
def test_lp_ft_head_is_the_probe_and_its_start_is_a_candidate(registry_yaml, shared_data, tmp_path):
    from cgc_framework.engine.pretrained import load_pretrained
    from cgc_plugins.evaluators.molnet import Split
    from cgc_plugins.evaluators.scaffold import _Classifier, _fit_probe, _Labelled

    # the head set from the probe gives the probe's logits on the encoder's features
    pre = load_pretrained("default")
    ds = load_molnet("bbbp", shared_data / "moleculenet", tmp_path / "dc")
    n = 120
    graphs, rejected = pre.build_packed(list(ds.train.smiles[:n]))
    assert rejected == []
    split = Split(ds.train.smiles[:n], ds.train.ecfp[:n], ds.train.y[:n], ds.train.present[:n])
    model = _Classifier(pre.model.encoder, 1, pre.schema.roles)
    before = model.head.weight.detach().clone()
    model.head_from_probe(_Labelled.of(graphs, split), split, torch.device("cpu"))
    with torch.no_grad():
        x = model.features(graphs.collate(range(n))).double().numpy()
        logits = model(graphs.collate(range(n))).squeeze(1).double().numpy()
    scaler, clf = _fit_probe(x, split, 0)
    np.testing.assert_allclose(logits, clf.decision_function(scaler.transform(x)), rtol=1e-4, atol=1e-4)
    assert not torch.equal(before, model.head.weight)

    # in a run: the LP-FT curve starts at epoch -1 (no loss), and the reported epoch is the best valid one
    params = (f"{{datasets: [bbbp], epochs: 2, max_train: 200, protocols: [finetune_lp], finetune_init: [pretrained], "
              f"data_dir: {shared_data / 'moleculenet'}}}")
    res = run(registry_yaml, overrides=["trainer.num_workers=0", one_stage(1), "model.encoder.params.hidden_dim=16",
                                        f"evaluations={{sc: {{name: scaffold_benchmark, params: {params}}}}}"],
              run_dir=tmp_path / "r", progress=False)
    table = pd.read_csv(res.run_dir / "evaluations" / "sc" / "scaffold.csv")
    curve = pd.read_csv(res.run_dir / "evaluations" / "sc" / "finetune_curve.csv")
    assert list(curve.epoch) == [-1, 0, 1] and set(curve.protocol) == {"finetune_lp"}
    assert curve.train_loss.isna().tolist() == [True, False, False]
    tuned = table.iloc[0]
    assert (tuned.protocol, tuned.init) == ("finetune_lp", "pretrained")
    assert tuned.valid_auroc == pytest.approx(curve.valid_auroc.max())
    assert tuned.best_epoch == curve.epoch[curve.valid_auroc.idxmax()]
