"""Few-shot transfer on MoleculeNet (proposal §2.4.1): frozen embeddings + logistic regression.

Protocol, per data set and task: DeepChem's scaffold split; for each k in ``k`` and each of
``draws`` random draws, a support set of k positive and k negative training molecules (labelled
ones only); a classifier is fitted on the support set and scored on every labelled molecule of the
scaffold test split. Methods compared on the same support sets: the pretrained encoder
(``pretrained``), the same encoder with untrained weights (``untrained``), ECFP4 + logistic
regression (``ecfp_lr``) and ECFP4 + random forest (``ecfp_rf``). Tasks whose test labels hold one
class, or whose training labels cannot supply k of each class, are listed, not averaged in.
Output: one row per data set x task x method x k x draw x metric; the summary reports the AUROC
macro-averaged over tasks, mean and 95% CI over draws.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from cgc_framework.config import ExistingPath
from cgc_framework.contracts import EvaluationContext, EvaluationResult, Evaluator, HeldOutMolecules
from cgc_framework.metrics import SingleClassError, classification_metrics, mean_ci
from .common import (embed_smiles, guard_note, held_out, inchikey14, leakage_rows, pretrained_from_context,  # noqa: F401
                     pretraining_inchikeys)
from .molnet import CLASSIFICATION_SETS, MolnetSet, load_molnet, scaffold_test_smiles

Method = Literal["pretrained", "untrained", "ecfp_lr", "ecfp_rf"]


class FewShotParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasets: list[Literal[CLASSIFICATION_SETS]] = Field(["bbbp"], min_length=1)  # type: ignore[valid-type]
    k: list[int] = Field([1, 5, 10, 20], min_length=1, description="labelled examples per class")
    draws: int = Field(10, ge=1, description="random support sets per k")
    methods: list[Method] = Field(["pretrained", "untrained", "ecfp_lr", "ecfp_rf"], min_length=1)
    data_dir: ExistingPath | None = Field(None, description="MoleculeNet CSVs; default: DeepChem downloads")
    max_tasks: int | None = Field(None, gt=0, description="first N tasks per set (ToxCast has 617)")

    def model_post_init(self, _: object) -> None:
        if any(k < 1 for k in self.k):
            raise ValueError(f"k must be >= 1 (k = 0 is the zero-shot evaluator), got {self.k}")


def scaffold_held_out(datasets: list[str], data_dir) -> HeldOutMolecules:
    """The scaffold test molecules of ``datasets`` (InChIKey14), for the leakage guard."""
    return held_out((inchikey14(s), f"scaffold test split of {name}")
                    for name in datasets for s in scaffold_test_smiles(name, data_dir))


def _support(y: np.ndarray, present: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray | None:
    pos = np.flatnonzero(present & (y == 1))
    neg = np.flatnonzero(present & (y == 0))
    if len(pos) < k or len(neg) < k:
        return None
    return np.concatenate([rng.choice(pos, k, replace=False), rng.choice(neg, k, replace=False)])


def _fit_predict(method: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    if method == "ecfp_rf":
        clf = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
        return clf.fit(x_train, y_train).predict_proba(x_test)[:, 1]
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=1.0, max_iter=1000)
    return clf.fit(scaler.transform(x_train), y_train).predict_proba(scaler.transform(x_test))[:, 1]


class FewShotEvaluator(Evaluator):
    def __init__(self, params: FewShotParams | None = None):
        self.params = params or FewShotParams()

    def held_out_molecules(self, plan) -> HeldOutMolecules:
        return scaffold_held_out(self.params.datasets, self.params.data_dir)

    def _features(self, ctx: EvaluationContext, ds: MolnetSet) -> dict[str, tuple]:
        """Per encoder method: (train features, train accepted mask, test features, test mask);
        molecule-level embeddings from :mod:`cgc_framework.embeddings`."""
        feats: dict[str, tuple] = {}
        for name in ("pretrained", "untrained"):
            if name in self.params.methods:
                pre = pretrained_from_context(ctx, untrained=name == "untrained")
                feats[name] = (*embed_smiles(pre, list(ds.train.smiles)), *embed_smiles(pre, list(ds.test.smiles)))
        return feats

    def evaluate(self, ctx: EvaluationContext) -> EvaluationResult:
        p = self.params
        rows, notes, leakage = [], [], []
        seen = pretraining_inchikeys(ctx.plan)
        for name in p.datasets:
            ds = load_molnet(name, p.data_dir)
            feats = self._features(ctx, ds)
            # molecules the run's builder rejects are excluded for every method alike
            tr_keep = np.ones(len(ds.train.smiles), bool)
            te_keep = np.ones(len(ds.test.smiles), bool)
            for _tr, tr_ok, _te, te_ok in feats.values():
                tr_keep &= tr_ok
                te_keep &= te_ok
            x = {m: (f[0][tr_keep[f[1]]], f[2][te_keep[f[3]]]) for m, f in feats.items()}
            x["ecfp_lr"] = x["ecfp_rf"] = (ds.train.ecfp[tr_keep], ds.test.ecfp[te_keep])
            y_tr, pr_tr = ds.train.y[tr_keep], ds.train.present[tr_keep]
            y_te, pr_te = ds.test.y[te_keep], ds.test.present[te_keep]
            if (~tr_keep).sum() or (~te_keep).sum():
                notes.append(f"{name}: {(~tr_keep).sum()} train / {(~te_keep).sum()} test molecules "
                             f"rejected by the molecule builder, excluded for every method")
            leakage += leakage_rows(name, {"train": ds.train.smiles, "test": ds.test.smiles}, seen)
            tasks = ds.tasks[: p.max_tasks] if p.max_tasks else ds.tasks
            for t, task in enumerate(tasks):
                for k in p.k:
                    for draw in range(p.draws):
                        rng = np.random.default_rng([ctx.seed, t, k, draw])
                        idx = _support(y_tr[:, t], pr_tr[:, t], k, rng)
                        if idx is None:
                            notes.append(f"{name}/{task}: fewer than {k} labelled molecules of a class; k={k} skipped")
                            break
                        test_rows = pr_te[:, t]
                        for method in p.methods:
                            xtr, xte = x[method]
                            score = _fit_predict(method, xtr[idx], y_tr[idx, t], xte[test_rows], ctx.seed + draw)
                            try:
                                values = classification_metrics(y_te[test_rows, t], score)
                            except SingleClassError:
                                notes.append(f"{name}/{task}: one class in the test split; skipped")
                                break
                            rows += [{"dataset": name, "task": task, "method": method, "k": k, "draw": draw,
                                      "metric": m, "value": v, "n_test": int(test_rows.sum())}
                                     for m, v in values.items()]
        table, leaks = pd.DataFrame(rows), pd.DataFrame(leakage)
        text = summarize(table, sorted(set(notes)))
        test_leaks = leaks[leaks.split == "test"]
        text += "\n\nMolecules of the scaffold test splits that the pretraining data contained " \
                "(InChIKey connectivity match): " + ", ".join(
                    f"{r.dataset} {r.seen_in_pretraining}/{r.molecules}" for r in test_leaks.itertuples()) + ". " \
            + guard_note(ctx.plan)
        return EvaluationResult({"few_shot": table, "leakage": leaks}, text)


def summarize(table: pd.DataFrame, notes: list[str]) -> str:
    """Markdown: AUROC macro over tasks per draw, then mean [95% CI] over draws, per set/method/k."""
    if table.empty:
        return "No few-shot result: " + "; ".join(notes)
    auc = table[table.metric == "auroc"].groupby(["dataset", "method", "k", "draw"])["value"].mean()
    lines = ["Few-shot AUROC (scaffold test split; mean [95% CI] over support draws, macro over tasks):", "",
             "| dataset | method | " + " | ".join(f"k={k}" for k in sorted(table.k.unique())) + " |",
             "|---|---|" + "---|" * table.k.nunique()]
    for (ds, method), df in auc.groupby(level=["dataset", "method"]):
        cells = []
        for k in sorted(table.k.unique()):
            m, lo, hi = mean_ci(df.xs(k, level="k").values) if k in df.index.get_level_values("k") else (np.nan,) * 3
            cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]")
        lines.append(f"| {ds} | {method} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes: " + "; ".join(notes)]
    return "\n".join(lines)
