"""Metrics agree with scikit-learn/SciPy computed independently, and refuse undefined cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from cgc_framework.plugin.metrics import (
    SingleClassError,
    classification_metrics,
    mean_ci,
    multitask_classification_metrics,
    regression_metrics,
)


def test_classification_known_values():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.6, 0.4, 0.9])
    m = classification_metrics(y, s)
    # pairs (pos, neg): (0.4,0.1) ok, (0.4,0.6) wrong, (0.9,*) ok -> 3/4
    assert m["auroc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.5)  # predictions 0,1,0,1
    assert m["f1"] == pytest.approx(0.5)
    # ranks: 0.9(+), 0.6(-), 0.4(+), 0.1(-) -> AP = (1/1 + 2/3) / 2
    assert m["auprc"] == pytest.approx((1 + 2 / 3) / 2)


def test_classification_matches_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    m = classification_metrics(y, s)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert m["auprc"] == pytest.approx(average_precision_score(y, s))
    assert m["f1"] == pytest.approx(f1_score(y, s >= 0.5))


def test_single_class_task_is_skipped_and_named():
    y = np.array([[0, 1], [0, 0], [0, 1], [0, 0]])
    s = np.array([[0.2, 0.9], [0.3, 0.1], [0.1, 0.8], [0.4, 0.3]])
    with pytest.raises(SingleClassError):
        classification_metrics(y[:, 0], s[:, 0])
    res = multitask_classification_metrics(y, s, ["NR-AR", "SR-p53"])
    assert res.skipped_tasks == ["NR-AR"]
    assert set(res.per_task.task) == {"SR-p53"}
    assert res.macro["auroc"] == pytest.approx(1.0)


def test_missing_labels_are_ignored_through_weights():
    y = np.array([[1], [0], [1], [0]])
    s = np.array([[0.9], [0.2], [0.1], [0.8]])
    w = np.array([[1], [1], [0], [0]])
    res = multitask_classification_metrics(y, s, ["t"], weights=w)
    assert res.macro["auroc"] == pytest.approx(1.0)
    assert res.per_task.n.unique().tolist() == [2]


def test_regression_metrics_match_scipy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=50)
    b = a + rng.normal(scale=0.5, size=50)
    m = regression_metrics(a, b)
    assert m["mse"] == pytest.approx(np.mean((a - b) ** 2))
    assert m["pearson"] == pytest.approx(stats.pearsonr(a, b)[0])
    assert m["spearman"] == pytest.approx(stats.spearmanr(a, b)[0])
    assert math.isnan(regression_metrics([1, 1, 1], [1, 2, 3])["pearson"])


def test_mean_ci_is_a_t_interval():
    v = [0.70, 0.74, 0.72, 0.69, 0.75]
    m, lo, hi = mean_ci(v)
    half = stats.t.ppf(0.975, 4) * np.std(v, ddof=1) / np.sqrt(5)
    assert m == pytest.approx(0.72) and hi - m == pytest.approx(half) and m - lo == pytest.approx(half)
    assert mean_ci([0.5]) == (0.5, 0.5, 0.5)
