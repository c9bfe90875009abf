"""Evaluation metrics (proposal §2.4.4), computed by scikit-learn and SciPy, not re-implemented.

Classification: accuracy, F1, AUROC, AUPRC (average precision) per task, and their macro average
over the tasks that have both classes in the evaluated split; tasks with a single class are
listed, never silently averaged in. Regression: MSE, Pearson, Spearman. Uncertainty: mean with a
Student-t 95% confidence interval over seeds or draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm

CLASSIFICATION_METRICS = ("accuracy", "f1", "auroc", "auprc")
REGRESSION_METRICS = ("mse", "pearson", "spearman")


class SingleClassError(ValueError):
    """The labels of a task contain one class only: AUROC/AUPRC are undefined."""


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray, *, threshold: float = 0.5) -> dict[str, float]:
    """Binary metrics of one task. ``y_score``: probability of the positive class, shape ``[N]``."""
    y_true = np.asarray(y_true).astype(int).ravel()
    y_score = np.asarray(y_score, dtype=float).ravel()
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true has shape {y_true.shape}, y_score {y_score.shape}")
    if np.unique(y_true).size < 2:
        raise SingleClassError(f"only class {int(y_true[0]) if y_true.size else '-'} present in {y_true.size} labels")
    y_pred = (y_score >= threshold).astype(int)
    return {"accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "f1": float(skm.f1_score(y_true, y_pred, zero_division=0)),
            "auroc": float(skm.roc_auc_score(y_true, y_score)),
            "auprc": float(skm.average_precision_score(y_true, y_score))}


@dataclass
class MultitaskResult:
    """Per-task metrics (tidy: one row per task and metric), macro averages, skipped tasks."""

    per_task: pd.DataFrame
    macro: dict[str, float]
    skipped_tasks: list[str] = field(default_factory=list)


def multitask_classification_metrics(y_true: np.ndarray, y_score: np.ndarray, task_names: list[str],
                                     weights: np.ndarray | None = None) -> MultitaskResult:
    """Metrics for ``[N, T]`` labels/scores; entries with weight 0 (missing labels) are ignored."""
    y_true, y_score = np.atleast_2d(np.asarray(y_true)), np.atleast_2d(np.asarray(y_score))
    if y_true.shape[0] != y_score.shape[0] and y_true.shape[1] == y_score.shape[1] == 1:
        y_true, y_score = y_true.T, y_score.T
    w = np.ones_like(y_true, dtype=float) if weights is None else np.asarray(weights, dtype=float)
    rows, skipped = [], []
    for t, name in enumerate(task_names):
        keep = w[:, t] > 0
        try:
            values = classification_metrics(y_true[keep, t], y_score[keep, t])
        except SingleClassError:
            skipped.append(name)
            continue
        rows += [{"task": name, "metric": m, "value": v, "n": int(keep.sum())} for m, v in values.items()]
    per_task = pd.DataFrame(rows, columns=["task", "metric", "value", "n"])
    macro = per_task.groupby("metric")["value"].mean().to_dict() if rows else {}
    return MultitaskResult(per_task, {m: float(macro[m]) for m in CLASSIFICATION_METRICS if m in macro}, skipped)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, Pearson r and Spearman rho of flattened arrays (NaN where a correlation is undefined)."""
    a = np.asarray(y_true, dtype=float).ravel()
    b = np.asarray(y_pred, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"y_true has shape {a.shape}, y_pred {b.shape}")
    constant = a.size < 2 or np.all(a == a[0]) or np.all(b == b[0])
    return {"mse": float(skm.mean_squared_error(a, b)),
            "pearson": float("nan") if constant else float(stats.pearsonr(a, b)[0]),
            "spearman": float("nan") if constant else float(stats.spearmanr(a, b)[0])}


def mean_ci(values: np.ndarray | list[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student-t confidence interval of the mean; NaNs are ignored.

    One value gives a zero-width interval (no spread can be estimated).
    """
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (float("nan"),) * 3
    m = float(v.mean())
    if v.size == 1:
        return m, m, m
    half = float(stats.t.ppf(0.5 + level / 2, df=v.size - 1) * stats.sem(v))
    return m, m - half, m + half
