"""Cell-state classification from morphology (or any cell-state modality) with few labelled wells.

Does the pretrained model's cell-level embedding separate cell states better than the raw
measurements? Works on any dataset whose records carry a label field (``label_field``: e.g. the
Dahlin 2023 injury class or the BBBC021 mechanism of action, both in the ``moa`` field of the Cell
Painting presets; a cell type for single-cell expression, e.g. ``h5ad_cells`` records with
``group_field: cell_id`` and ``state: treated``) and whose graph schema has ``cell_state``-role node
types: nothing here names a node type or a modality.

Data: the run's dataset (or ``dataset``), records with a label (``exclude_labels`` dropped, e.g.
controls), optionally grouped (``per``: e.g. ``source``, so that Dahlin's injury classes and
BBBC021's MoAs are separate problems); each record's experiment graph is built as in pretraining.

Features, per well:

- ``embedding``: the pretrained encoder's cell-level embedding (readout of the ``cell_state`` types) of
  the well's treated state (:meth:`cgc_framework.engine.pretrained.Pretrained.embed_graphs`,
  ``level="cell", state="treated"``); ``embedding_untrained``: the same encoder with untrained weights;
- ``contrast``: the contrast task's profile head on its own view (when the run has one);
- ``raw``: the well's measured values — every value slot of its cell-state nodes
  (:func:`cgc_framework.plugin.value_slots`), as the response ``y - x`` (``state: response``) or the
  treated state ``y`` (``state: treated``); unmeasured slots 0;
- ``pca``: ``raw`` reduced to ``pca_components`` principal components (fitted label-free on every
  evaluated well).

Protocols (all methods see the same wells and the same support sets):

- ``k = 0`` (retrieval / prototype-free): each well takes the label of its most cosine-similar well
  among the wells of *other* compounds (``group_field``); no label is used to fit anything;
- ``k >= 1``: per draw (``numpy.random.default_rng([seed, k, draw])``), k labelled wells per class form
  the support set, drawn from a random subset of the class's compounds; the test set is the wells of
  the class's other compounds (replicates of a support compound would make the task trivial);
  standardised features + logistic regression (scikit-learn, ``max_iter`` 2000). A class whose wells
  outside one compound cannot make k is skipped for that k (listed in the notes).

Graphs are built by the cell modality's builder alone (a cell state needs no molecule).

Metrics per (group, method, k, draw): accuracy, balanced accuracy, macro F1 (scikit-learn); the
summary gives balanced accuracy mean [95% CI over draws] and the verdict "embedding + LR >= raw + LR
at every k". Table ``cell_state`` (tidy: ``dataset, method, k, task, draw, metric, value``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cgc_framework.plugin import Comparison, EvaluationContext, EvaluationResult, Evaluator, Record
from cgc_framework.plugin.metrics import mean_ci

from .params import CellStateParams
from .responses import dataset_records, response_table

METHODS = ("embedding", "embedding_untrained", "contrast", "raw", "pca")


def knn_labels(features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``k = 0``: each row's label = the label of its most cosine-similar row of another group
    (ties: the first such row)."""
    f = np.nan_to_num(np.asarray(features, dtype=np.float64))
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim = f @ f.T
    sim[groups[:, None] == groups[None, :]] = -np.inf
    best = np.argmax(sim, axis=1)
    out = labels[best].copy()
    none = ~np.isfinite(sim.max(axis=1))
    out[none] = None
    return out


def support_draw(labels: np.ndarray, groups: np.ndarray, k: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(support indices, test indices, skipped classes)`` of one draw. Per class, its compounds
    (``groups``) are shuffled and their wells taken in that order until ``k`` wells are reached (``k``
    drawn from the last compound taken); the class's remaining compounds are its test wells. A class
    without ``k`` wells outside at least one compound is skipped."""
    support, test, skipped = [], [], []
    for c in sorted(set(labels)):
        rows = np.flatnonzero(labels == c)
        comps = list(dict.fromkeys(groups[rows]))
        order = [comps[i] for i in rng.permutation(len(comps))]
        taken, n = [], 0
        for g in order:
            if n >= k:
                break
            taken.append(g)
            n += int((groups[rows] == g).sum())
        rest = [g for g in order if g not in taken]
        if n < k or not rest:
            skipped.append(str(c))
            continue
        pool = rows[np.isin(groups[rows], taken)]
        support.append(rng.choice(pool, k, replace=False))
        test.append(rows[np.isin(groups[rows], rest)])
    if not support:
        return np.zeros(0, int), np.zeros(0, int), skipped
    return np.concatenate(support), np.concatenate(test), skipped


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    ok = np.array([p is not None for p in y_pred])
    y_true, y_pred = y_true[ok].astype(str), y_pred[ok].astype(str)
    if not len(y_true):
        return {"accuracy": float("nan"), "balanced_accuracy": float("nan"), "macro_f1": float("nan")}
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro"))}


def fit_predict(x_sup: np.ndarray, y_sup: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Standardised features + logistic regression on the support set, labels of the test rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(y_sup)) < 2:
        return np.array([y_sup[0]] * len(x_test), dtype=object)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(x_sup, y_sup.astype(str))
    return clf.predict(x_test).astype(object)


class CellStateClassification(Evaluator):
    """Registered as ``cell_state``; see the module docstring."""

    def __init__(self, params: CellStateParams | None = None):
        self.params = params or CellStateParams()

    def comparisons(self) -> list[Comparison]:
        return [Comparison("cell_state", "embedding", ("raw", "pca", "embedding_untrained"), "balanced_accuracy",
                           title="Cell-state classification, balanced accuracy")]

    def _records(self, ctx: EvaluationContext) -> list[Record]:
        p = self.params
        if p.dataset is not None:
            recs, _ = dataset_records(ctx, ref=p.dataset)
        else:
            recs, _ = dataset_records(ctx, p.include_splits) if p.include_splits else dataset_records(ctx)
        exclude = {s.lower() for s in p.exclude_labels}
        out = [r for r in recs if isinstance(r.fields.get(p.label_field), str)
               and r.fields[p.label_field].strip() and r.fields[p.label_field].strip().lower() not in exclude]
        if p.only is not None and p.per is not None:
            out = [r for r in out if str(r.fields.get(p.per)) in set(p.only)]
        return out

    def _features(self, ctx: EvaluationContext, graphs: list, records: list[Record]) -> dict[str, np.ndarray]:
        import torch
        from torch_geometric.loader import DataLoader

        p = self.params
        pre = ctx.pretrained()
        feats = {"embedding": pre.embed_graphs(graphs, "cell", state="treated").numpy(),
                 "embedding_untrained": ctx.pretrained(untrained=True).embed_graphs(graphs, "cell",
                                                                                    state="treated").numpy()}
        contrast = next((k for k, s in ctx.plan.tasks.items() if s.info.name == "contrast"), None)
        if contrast is not None and contrast in getattr(ctx.model, "tasks", {}):
            task = ctx.model.tasks[contrast]
            zc = []
            with torch.no_grad():
                for batch in DataLoader(graphs, batch_size=p.batch_size):
                    zc.append(task.embed(batch.to(ctx.device), ctx.model.encoder)[1].cpu().numpy())
            feats["contrast"] = np.concatenate(zc)
        table = response_table(ctx, graphs, records)
        table = table.select_columns(table.covered_columns())
        raw = np.nan_to_num(table.response if p.state == "response" else table.treated)
        feats["raw"] = raw
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        n_comp = int(min(p.pca_components, raw.shape[0] - 1, raw.shape[1]))
        feats["pca"] = PCA(n_comp, random_state=0).fit_transform(StandardScaler().fit_transform(raw)) \
            if n_comp >= 1 else raw
        return feats

    def _graphs(self, ctx: EvaluationContext, records: list[Record]) -> tuple[list, list[Record], int]:
        """Cell-state graphs of the records, built by the cell modality's builder alone (a cell state
        needs no molecule: wells without a SMILES are classified too). Returns ``(graphs, kept, rejected)``."""
        from cgc_framework.plugin.roles import CELL_STATE

        mp = ctx.plan.modality_with_role(CELL_STATE)
        if mp is None:
            raise ValueError("cell_state needs a modality whose builder declares cell_state node types")
        name = next(n for n, m in ctx.plan.modalities.items() if m is mp)
        field = mp.modality.record_field
        have = [r for r in records if r.fields.get(field) is not None]
        graphs = ctx.pretrained().build([r.fields[field] for r in have], name, skip_invalid=True)
        kept = [(g, r) for g, r in zip(graphs, have) if g is not None]
        return [g for g, _ in kept], [r for _, r in kept], len(records) - len(kept)

    def evaluate(self, ctx: EvaluationContext) -> EvaluationResult:
        p = self.params
        records = self._records(ctx)
        graphs, kept, rejected = self._graphs(ctx, records)
        notes = [f"{rejected} labelled wells without a buildable cell graph"] if rejected else []
        if len(kept) < 4:
            return EvaluationResult({}, f"Cell-state classification skipped: {len(kept)} labelled wells "
                                        f"(field `{p.label_field}`).")
        groups_of = (lambda r: str(r.fields.get(p.per))) if p.per else (lambda r: "all")
        by_group: dict[str, list[int]] = {}
        for i, r in enumerate(kept):
            by_group.setdefault(groups_of(r), []).append(i)
        rows = []
        sizes = []
        for name, idx in by_group.items():
            recs = [kept[i] for i in idx]
            labels = np.array([r.fields[p.label_field].strip() for r in recs], dtype=object)
            counts = pd.Series(labels).value_counts()
            keep_cls = set(counts[counts >= p.min_per_class].index)
            sel = np.array([lab in keep_cls for lab in labels])
            if len(keep_cls) < 2:
                notes.append(f"{name}: fewer than two classes with {p.min_per_class} wells")
                continue
            idx_sel = [idx[j] for j in np.flatnonzero(sel)]
            recs = [kept[i] for i in idx_sel]
            labels = labels[sel]
            groups = np.array([str(r.fields.get(p.group_field)) for r in recs], dtype=object)
            feats = self._features(ctx, [graphs[i] for i in idx_sel], recs)
            sizes.append(f"{name}: {len(recs)} wells, {len(keep_cls)} classes, {len(set(groups))} {self._groups()}")
            for k in p.k:
                draws = 1 if k == 0 else p.draws
                for d in range(draws):
                    if k == 0:
                        sup, test = np.zeros(0, int), np.arange(len(recs))
                    else:
                        sup, test, skipped = support_draw(labels, groups, k,
                                                          np.random.default_rng([ctx.seed, k, d]))
                        if skipped and d == 0:
                            notes.append(f"{name}, k={k}: classes skipped ({len(skipped)}): "
                                         f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}")
                        if not len(test) or len(set(labels[sup])) < 2:
                            continue
                    for method, x in feats.items():
                        pred = knn_labels(x, labels, groups) if k == 0 else fit_predict(x[sup], labels[sup], x[test])
                        scored = _scores(labels[test], pred if k else pred[test])
                        rows += [{"dataset": name, "method": method, "k": k, "task": p.label_field, "draw": d,
                                  "metric": m, "value": v, "n_test": int(len(test)),
                                  "n_classes": int(len(set(labels[test])))} for m, v in scored.items()]
        table = pd.DataFrame(rows, columns=["dataset", "method", "k", "task", "draw", "metric", "value", "n_test",
                                            "n_classes"])
        return EvaluationResult({"cell_state": table}, self._summary(table, sizes, notes))

    def _groups(self) -> str:
        """What a group is, in words: compounds (the default ``group_field``), else the field's values
        (e.g. single cells, ``group_field: cell_id``)."""
        return "compounds" if self.params.group_field == "compound_id" else f"`{self.params.group_field}` groups"

    def _summary(self, table: pd.DataFrame, sizes: list[str], notes: list[str]) -> str:
        p = self.params
        groups = self._groups()
        lines = [f"Cell-state classification of `{p.label_field}` from {p.state} profiles ({'; '.join(sizes)}); "
                 f"k labelled wells per class, {p.draws} draws, test wells of {groups} outside the support; k = 0: "
                 f"nearest well {'of another compound' if groups == 'compounds' else 'outside its ' + groups[:-1]}. Balanced "
                 "accuracy, mean [95% CI over draws]:", ""]
        bal = table[table.metric == "balanced_accuracy"]
        for name, df in bal.groupby("dataset", sort=False):
            ks = sorted(df.k.unique())
            lines += [f"**{name}**", "", "| method | " + " | ".join(f"k={k}" for k in ks) + " |",
                      "|---|" + "---|" * len(ks)]
            means: dict[tuple[str, int], float] = {}
            for method in [m for m in METHODS if m in set(df.method)]:
                cells = []
                for k in ks:
                    v = df[(df.method == method) & (df.k == k)].value.to_numpy()
                    m, lo, hi = mean_ci(v)
                    means[(method, k)] = m
                    cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if len(v) > 1 else f"{m:.3f}")
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            wins = [k for k in ks if means.get(("embedding", k), np.nan) >= means.get(("raw", k), np.nan)]
            word = "at every k" if len(wins) == len(ks) else (f"at k = {', '.join(map(str, wins))} only" if wins
                                                             else "at no k")
            lines += ["", f"**Verdict** (cell_state, {name}): embeddings + LR >= raw features + LR {word}.", ""]
        if notes:
            lines += ["Notes: " + "; ".join(notes)]
        return "\n".join(lines)
