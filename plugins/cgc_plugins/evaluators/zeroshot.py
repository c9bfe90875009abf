"""Zero-shot (k = 0) scores (proposal §2.4.1): no label is used to fit anything.

(a) **Molecule -> profile retrieval per compound** (MolPhenix's protocol). The run's dataset must be
split by compound (or scaffold) so that its ``test`` part holds compounds pretraining never read (the
leakage guard drops any other record of the same molecule). Every *active* well of the dataset (all
parts; response above the 95th percentile of its plate's DMSO wells, the records' ``active`` field) is
built as in pretraining; the wells of one molecule in one cell line are aggregated into one
*profile* (replicates and active doses averaged). Queries: the held-out compounds; gallery: every
profile of the dataset, train and test (the whole candidate pool). A query is a hit at k when its own
profile is among the k most similar (ties count against it); with one positive per query, chance is
exactly ``k / gallery``. Reported per cut-off (``top_k`` and top-1% of the gallery): the hit rate, a
95% Clopper-Pearson interval and the one-sided binomial p-value against chance. Spaces and methods:
``contrast`` (the contrast task's projection heads through the task's own view; molecule side at each
active well's dose when dose-aware; mean of the L2-normalised embeddings over the compound's active
wells), for the pretrained and the untrained model; ``predicted_response`` — the causal head's
predicted responses of the compound's active conditions vs the measured responses (cosine over the
response slots); and the baseline ``ecfp_ridge`` in that space: an ECFP4 + log-dose ridge regression
fitted on the training compounds' wells predicts the responses instead of the model.

(b) **Predicted response magnitude as a label-free toxicity score.** For every compound of the
dataset (all splits; the held-out ones flagged), the causal head predicts the treated state of the
compound's own first well's control state at a dose the model was trained on, ``D``
(``toxicity_dose_um``, default: the highest dose at which at least half of the training compounds
were measured); the score is the L2 norm
of the predicted change over every cell node and feature, ``||y^ - x||_2`` (robust-z units of the
profile features). Scored by AUROC/AUPRC (scikit-learn, :mod:`cgc_framework.plugin.metrics`) against the
toxicity labels of the compounds found, by InChIKey connectivity block, in MoleculeNet Tox21 /
ClinTox (``CT_TOX``) / SIDER / ToxCast (DeepChem loaders, all splits), per task; tasks with fewer
than ``min_labelled`` matched compounds or one class are listed, not scored. Beside: the untrained
model's predicted magnitude; the *measured* magnitude ``||y - x||_2`` of the compound's own well at
its highest measured dose (not a prediction: the observed response the head learns from); and two
fingerprint-free descriptors, Crippen logP and molecular weight (RDKit).

Tables: ``retrieval`` (method x space x k: hits, CI, chance, p), ``toxicity`` (subset x set x task x
score), ``compounds`` (one row per compound: split, scores, descriptors), ``leakage`` (held-out
compounds the pretraining corpus contained).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader
from torch_geometric.utils import scatter

from cgc_framework.plugin import (
    EvaluationContext,
    EvaluationResult,
    Evaluator,
    HeldOutMolecules,
    Pretrained,
    Record,
    SkipLog,
)
from cgc_framework.plugin.metrics import SingleClassError, classification_metrics
from cgc_framework.plugin.roles import CELL_STATE

from .common import dataset_with_splits, guard_note, inchikey14, pretraining_inchikeys
from .molnet import load_molnet, molnet_data_files
from .params import TOXICITY_SETS as TOXICITY_SETS
from .params import ZeroShotParams
from .responses import build_experiment_graphs, causal_task_key, predict_treated

NON_TOXICITY_TASKS = frozenset({"FDA_APPROVED"})  # ClinTox: approval is not a toxicity label
SCORES = ("predicted_magnitude", "untrained_predicted_magnitude", "measured_magnitude", "logp", "mol_weight")


# -- retrieval metrics ----------------------------------------------------------------------------


def topk_any_positive(scores: np.ndarray, positives: np.ndarray, ks: list[int]) -> dict[int, float]:
    """Fraction of queries with a positive among their top k.

    Args:
        scores: ``[Q, G]`` similarity of each query to each gallery item (higher = closer).
        positives: ``[Q, G]`` bool, at least one True per row.
    Returns: ``{k: accuracy}``. The rank of a query is the number of negatives scoring ``>=`` its
    best positive (ties count against it), a hit at k when that number is ``< k``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if not positives.any(axis=1).all():
        raise ValueError("every query needs at least one positive")
    best = np.where(positives, scores, -np.inf).max(axis=1, keepdims=True)  # [Q, 1]
    rank = ((scores >= best) & ~positives).sum(axis=1)  # [Q]
    return {k: float((rank < k).mean()) for k in ks}


# -- helpers -------------------------------------------------------------------------------------


def _split_by(plan: Any) -> str | None:
    split = getattr(plan.dataset_spec.params, "split", None)
    return getattr(split, "by", None)


def _build(ctx: EvaluationContext, records: list[Record]) -> tuple[list[HeteroData], list[Record], list[str]]:
    """Experiment graphs of ``records`` as pretraining builds them; rejected ones as ``"id: reason"``."""
    graphs, kept, skips = build_experiment_graphs(ctx, records)
    return graphs, kept, [f"{e.record_id}: {e.reason}" for e in skips.entries]


def _task_key(plan: Any, name: str) -> str | None:
    return next((k for k, s in plan.tasks.items() if s.info.name == name), None)


def _cell_types(pre: Pretrained) -> list[str]:
    return list(pre.schema.roles.cell_state)


def _per_graph_sq(values: dict[str, Tensor], batch: HeteroData) -> Tensor:
    """``[B]``: per graph, the sum over cell nodes and features of ``values[t] ** 2``."""
    total = torch.zeros(batch.num_graphs, dtype=torch.float64)
    for t, v in values.items():
        b = batch[t].get("batch")
        if b is None:
            b = torch.zeros(v.size(0), dtype=torch.long)
        sq = torch.nan_to_num(v.double()).pow(2).sum(-1)  # [N_t]
        total += scatter(sq.cpu(), b.cpu(), dim=0, dim_size=batch.num_graphs, reduce="sum")
    return total


def predicted_magnitude(pre: Pretrained, causal_key: str, graphs: list[HeteroData], batch_size: int = 64) -> np.ndarray:
    """``[len(graphs)]``: ``||y^ - x||_2`` over the cell nodes of each graph (causal head, eval mode;
    the predictions of :func:`~.responses.predict_treated`, NaN entries of ``x`` ignored)."""
    preds = predict_treated(pre.model, causal_key, graphs, pre.device, batch_size)
    return np.array([np.sqrt(sum(np.nansum((p[t].astype(np.float64) - g[t].x.double().numpy()) ** 2)
                                 for t in p)) for p, g in zip(preds, graphs)])


def measured_magnitude(graphs: list[HeteroData], cell_types: list[str]) -> np.ndarray:
    """``[len(graphs)]``: ``||y - x||_2`` over the cell nodes of each graph (the measured change)."""
    out = []
    for batch in DataLoader(graphs, batch_size=256):
        out.append(_per_graph_sq({t: batch[t].y - batch[t].x for t in cell_types
                                  if t in batch.node_types and batch[t].get("y") is not None}, batch).sqrt())
    return torch.cat(out).numpy() if out else np.zeros(0)


def _descriptors(smiles: str) -> tuple[float, float]:
    from rdkit import Chem
    from rdkit.Chem import Crippen, Descriptors

    mol = Chem.MolFromSmiles(smiles)
    return (float(Crippen.MolLogP(mol)), float(Descriptors.MolWt(mol))) if mol is not None else (np.nan, np.nan)


# -- the evaluator -------------------------------------------------------------------------------


class ZeroShotEvaluator(Evaluator):
    def __init__(self, params: ZeroShotParams | None = None):
        self.params = params or ZeroShotParams()

    def data_files(self) -> dict[str, list[Path]]:
        return molnet_data_files(self.params.model_dump())

    def held_out_molecules(self, plan: Any) -> HeldOutMolecules | None:
        """The compounds of the dataset's test part when it is split by compound or scaffold: the
        leakage guard drops every pretraining record of the same molecule (InChIKey14), whatever its
        id or source."""
        if not self.params.retrieval:
            return None
        from .causal_consistency import held_out_compounds

        return held_out_compounds(plan, "test")

    def evaluate(self, ctx: EvaluationContext) -> EvaluationResult:
        p = self.params
        notes: list[str] = []
        tables: dict[str, pd.DataFrame] = {}
        pre = ctx.pretrained()
        untrained = ctx.pretrained(untrained=True)
        seen = pretraining_inchikeys(ctx.plan)
        text = []
        if p.retrieval:
            ret, leak, ret_notes, md = self._retrieval(ctx, pre, untrained, seen)
            notes += ret_notes
            if ret is not None:
                tables["retrieval"], tables["leakage"] = ret, leak
            text.append(md)
        if p.toxicity:
            tox, comp, tox_notes, md = self._toxicity(ctx, pre, untrained)
            notes += tox_notes
            if comp is not None:
                tables["toxicity"], tables["compounds"] = tox, comp
            text.append(md)
        if notes:
            text.append("Notes: " + "; ".join(dict.fromkeys(notes)))
        return EvaluationResult(tables, "\n\n".join(t for t in text if t))

    # (a) ----------------------------------------------------------------------------------------

    def _retrieval(self, ctx: EvaluationContext, pre: Pretrained, untrained: Pretrained, seen: set[str]):
        p, plan = self.params, ctx.plan
        by = _split_by(plan)
        if by is None:
            return None, None, [], "Retrieval skipped: the dataset has no split parameters."
        if by not in ("compound", "scaffold"):
            return None, None, [], (f"Retrieval skipped: the dataset is split by '{by}', so no compound is "
                                    f"held out; set `data.dataset.params.split.by: compound` (or scaffold).")
        records = list(dataset_with_splits(plan, ["train", "val", "test"]).records(SkipLog()))
        has_activity = any("active" in r.fields for r in records)
        active = [r for r in records if r.fields.get("active", True) and r.fields.get("smiles")]
        if p.max_profiles and len(active) > p.max_profiles:
            idx = np.sort(np.random.default_rng(ctx.seed).choice(len(active), p.max_profiles, replace=False))
            active = [active[i] for i in idx]
        graphs, kept, rejected = _build(ctx, active)
        notes = [f"{len(rejected)} active wells rejected by the graph builders (e.g. {rejected[0]})"] \
            if rejected else []
        items = _profile_items(kept)             # (molecule, cell line) -> well indices
        names = list(items)
        test = {k for k in names if any(kept[i].fields.get("split") == "test" for i in items[k])}
        queries = [k for k in names if k in test]
        if len(queries) < 1 or len(names) < 2:
            return None, None, notes, (f"Retrieval skipped: {len(queries)} held-out compound(s) with an active "
                                       f"profile among {len(names)} candidates.")
        n, qi = len(names), [names.index(k) for k in queries]
        one_pct = max(1, math.ceil(0.01 * n))
        cuts = [(f"top-{k}", k) for k in sorted(set(p.top_k))] + [(f"top-1% ({one_pct})", one_pct)]
        ks = sorted({k for _, k in cuts})
        rows = []
        spaces: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        contrast_key = _task_key(plan, "contrast")
        for method, model in (("pretrained", pre), ("untrained", untrained)):
            if contrast_key is not None:
                zm, zc = _contrast_embeddings(model, contrast_key, graphs, p.batch_size)
                spaces[f"{method}|contrast"] = (_aggregate(zm, items, names), _aggregate(zc, items, names))
        causal = _task_key_of(ctx.model)
        if causal is not None:
            pred, meas = _response_vectors(ctx, causal, graphs, kept, p.batch_size)
            spaces["pretrained|predicted_response"] = (_aggregate(pred, items, names, normalise=False),
                                                       _aggregate(meas, items, names, normalise=False))
            pretrained_on = set(getattr(plan.dataset_spec.params, "include_splits", ["train"])) - {"test"}
            train_idx = [i for i, r in enumerate(kept) if r.fields.get("split", "train") in pretrained_on]
            ridge = _ridge_vectors(ctx, kept, meas, train_idx)
            spaces["ecfp_ridge|predicted_response"] = (_aggregate(ridge, items, names, normalise=False),
                                                       _aggregate(meas, items, names, normalise=False))
        for label, (q, g) in spaces.items():
            method, space = label.split("|")
            sim = _cosine(q[qi], g)  # [Q, N]
            positives = np.zeros_like(sim, dtype=bool)
            positives[np.arange(len(qi)), qi] = True
            hits = topk_any_positive(sim, positives, ks)
            for label, k in cuts:
                h = int(round(hits[k] * len(qi)))
                lo, hi = _clopper_pearson(h, len(qi))
                chance = min(k, n) / n
                rows.append({"method": method, "space": space, "direction": "molecule_to_profile", "k": k,
                             "k_label": label, "accuracy": hits[k], "hits": h, "ci_low": lo, "ci_high": hi,
                             "chance": chance, "p_value": _binom_p(h, len(qi), chance), "queries": len(qi),
                             "gallery": n})
        table = pd.DataFrame(rows)
        smiles = {k[0]: next(kept[i].fields.get("smiles") for i in items[k]) for k in queries}
        n_seen = sum(inchikey14(s) in seen for s in smiles.values())
        leak = pd.DataFrame([{"dataset": plan.dataset_spec.info.name, "split": "test (compounds)",
                              "molecules": len(smiles), "seen_in_pretraining": n_seen}])
        md = [f"Molecule -> profile retrieval per compound (MolPhenix-style): {len(queries)} held-out compounds "
              f"(`test` part, split by {by}) query a gallery of {n} replicate-aggregated *active* profiles "
              f"(one per compound and cell line, train and test: the whole candidate pool"
              + ("; active = response above the 95th percentile of the plate's DMSO wells" if has_activity else "")
              + "). One positive per query: chance = k / gallery. Hit rate [95% Clopper-Pearson CI] "
                "(binomial p vs chance):", "",
              "| method | space | " + " | ".join(dict.fromkeys(table.k_label)) + " |",
              "|---|---|" + "---|" * table.k_label.nunique()]
        for (method, space), df in table.groupby(["method", "space"], sort=False):
            cells = [f"{r.accuracy:.3f} [{r.ci_low:.2f}, {r.ci_high:.2f}] (chance {r.chance:.3f}, p {r.p_value:.2g})"
                     for r in df.itertuples()]
            md.append(f"| {method} | {space} | " + " | ".join(cells) + " |")
        md += ["", "Spaces: `contrast` — the contrast task's projection heads (molecule side at each active well's "
                   "dose when dose-aware), averaged over the compound's active wells; `predicted_response` — the "
                   "causal head's predicted responses for the compound's active conditions vs the measured ones "
                   "(cosine over the response slots); `ecfp_ridge` — the same with an ECFP4 + log-dose ridge "
                   "regression fitted on the wells pretraining read (never the test part) instead of the model.",
               "", f"Held-out compounds the pretraining corpus contained (InChIKey connectivity match): "
                   f"{n_seen}/{len(smiles)}. " + guard_note(plan)]
        return table, leak, notes, "\n".join(md)

    # (b) ----------------------------------------------------------------------------------------

    def _toxicity(self, ctx: EvaluationContext, pre: Pretrained, untrained: Pretrained):
        p, plan = self.params, ctx.plan
        try:
            causal_key = causal_task_key(ctx.model)
        except ValueError:
            return None, None, [], "Response-magnitude toxicity score skipped: the run has no causal task."
        try:
            records = list(dataset_with_splits(plan, ["train", "val", "test"]).records(SkipLog()))
        except ValueError as exc:
            return None, None, [], f"Response-magnitude toxicity score skipped: {exc}."
        doses = [r.fields.get("dose_um") for r in records if r.fields.get("dose_um") is not None]
        cells = plan.modality_with_role(CELL_STATE)
        field = cells.modality.record_field if cells is not None else None
        if not doses or field is None or not any(r.fields.get(field) is not None for r in records):
            return None, None, [], "Response-magnitude toxicity score skipped: the records carry no dose or profile."
        top = p.toxicity_dose_um if p.toxicity_dose_um is not None else _trained_probe_dose(records)
        by_comp: dict[str, list[Record]] = {}
        for r in records:
            if r.fields.get("smiles"):
                by_comp.setdefault(str(r.fields["compound_id"]), []).append(r)
        probes, measured_recs, ids = [], [], []
        for cid, recs in by_comp.items():
            r0 = recs[0]
            prof = r0.fields["cell_profile"]
            control = np.asarray(prof.control)
            extra = {k: getattr(prof, k) for k in ("context", "cell_line", "time_h", "activity") if hasattr(prof, k)}
            probe = type(prof)(prof.features, control.copy(), control, top, prof.plate, **extra)  # treated unused
            probes.append(Record(f"{cid}@{top:g}uM", {**r0.fields, "dose_um": top, "cell_profile": probe}))
            measured_recs.append(max(recs, key=lambda r: r.fields.get("dose_um") or 0.0))
            ids.append(cid)
        g_probe, kept, rejected = _build(ctx, probes)
        g_meas, kept_m, _ = _build(ctx, measured_recs)
        keep = {r.id.rsplit("@", 1)[0] for r in kept} & {str(r.fields["compound_id"]) for r in kept_m}
        sel = [i for i, c in enumerate(ids) if c in keep]
        gi = {r.id.rsplit("@", 1)[0]: g for r, g in zip(kept, g_probe)}
        gm = {str(r.fields["compound_id"]): (r, g) for r, g in zip(kept_m, g_meas)}
        probes_g = [gi[ids[i]] for i in sel]
        cell = _cell_types(pre)
        pred = predicted_magnitude(pre, causal_key, probes_g, p.batch_size)
        pred_u = predicted_magnitude(untrained, causal_key, probes_g, p.batch_size)
        meas = measured_magnitude([gm[ids[i]][1] for i in sel], cell)
        test_ids = {str(r.fields["compound_id"]) for r in records if r.fields.get("split") == "test"}
        rows = []
        for j, i in enumerate(sel):
            cid = ids[i]
            r0 = by_comp[cid][0]
            logp, mw = _descriptors(r0.fields["smiles"])
            rows.append({"compound_id": cid, "compound_name": r0.fields.get("compound_name"),
                         "smiles": r0.fields["smiles"], "inchikey14": inchikey14(r0.fields["smiles"]),
                         "split": "test" if cid in test_ids else "train/val", "top_dose_um": top,
                         "predicted_magnitude": float(pred[j]), "untrained_predicted_magnitude": float(pred_u[j]),
                         "measured_magnitude": float(meas[j]),
                         "measured_dose_um": gm[cid][0].fields.get("dose_um"), "logp": logp, "mol_weight": mw})
        comp = pd.DataFrame(rows)
        if comp.empty:
            return None, None, rejected[:3], "Response-magnitude toxicity score skipped: no compound could be built."
        notes = [f"{len(rejected)} compounds' top-dose graphs rejected by the builders (e.g. {rejected[0]})"] \
            if rejected else []
        tox_rows, matched = [], {}
        for name in p.toxicity_sets:
            try:
                ds = load_molnet(name, p.data_dir)
            except Exception as exc:  # noqa: BLE001 - offline without data_dir, missing file
                notes.append(f"{name}: labels not loaded ({type(exc).__name__}: {str(exc)[:120]})")
                continue
            labels = _labels_by_key(ds)
            key_rows = comp.inchikey14.map(labels.get)
            hit = key_rows.notna().to_numpy()
            matched[name] = int(hit.sum())
            for t, task in enumerate(ds.tasks):
                if task in NON_TOXICITY_TASKS:
                    continue
                for subset in ("all", "held_out"):
                    mask = hit & (comp.split.eq("test").to_numpy() if subset == "held_out" else True)
                    idx = [i for i in np.flatnonzero(mask) if key_rows.iloc[i][1][t]]
                    y = np.array([key_rows.iloc[i][0][t] for i in idx], dtype=int)
                    base = {"subset": subset, "dataset": name, "task": task, "n": len(idx), "n_positive": int(y.sum())}
                    few = min(int(y.sum()), len(y) - int(y.sum()))
                    if len(idx) < p.min_labelled or few < p.min_per_class:
                        why = (f"{len(idx)} matched labelled compounds < min_labelled {p.min_labelled}"
                               if len(idx) < p.min_labelled else
                               f"{few} compounds of the rarer class < min_per_class {p.min_per_class}")
                        tox_rows.append({**base, "score": "-", "auroc": np.nan, "auprc": np.nan, "skipped": why})
                        continue
                    for score in SCORES:
                        s = comp[score].to_numpy()[idx]
                        ok = np.isfinite(s)
                        try:
                            m = classification_metrics(y[ok], s[ok])
                        except SingleClassError:
                            tox_rows.append({**base, "score": score, "auroc": np.nan, "auprc": np.nan,
                                             "skipped": "one class among the matched compounds"})
                            break
                        tox_rows.append({**base, "score": score, "auroc": m["auroc"], "auprc": m["auprc"],
                                         "skipped": ""})
        tox = pd.DataFrame(tox_rows, columns=["subset", "dataset", "task", "n", "n_positive", "score", "auroc",
                                              "auprc", "skipped"])
        return tox, comp, notes, _tox_summary(tox, comp, matched, top, p)


# -- retrieval helpers ---------------------------------------------------------------------------


def _profile_items(records: list[Record]) -> dict[tuple[str, str], list[int]]:
    """(molecule key, cell line) -> indices of its wells, in first-seen order."""
    out: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(records):
        key = inchikey14(r.fields.get("smiles")) or str(r.fields.get("compound_id"))
        out.setdefault((key, str(r.fields.get("cell_line") or "")), []).append(i)
    return out


def _aggregate(v: np.ndarray, items: dict, names: list, normalise: bool = True) -> np.ndarray:
    """``[len(names), D]``: per item the mean of its rows (each row L2-normalised first when asked)."""
    v = np.asarray(v, dtype=np.float64)
    if normalise:
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return np.stack([np.nanmean(v[items[k]], axis=0) for k in names])


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(a) / np.maximum(np.linalg.norm(np.nan_to_num(a), axis=1, keepdims=True), 1e-12)
    b = np.nan_to_num(b) / np.maximum(np.linalg.norm(np.nan_to_num(b), axis=1, keepdims=True), 1e-12)
    return a @ b.T


def _clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def _binom_p(k: int, n: int, p: float) -> float:
    """One-sided binomial p-value of ``k`` or more hits in ``n`` at chance ``p``."""
    from scipy.stats import binomtest

    return float(binomtest(k, n, min(max(p, 0.0), 1.0), alternative="greater").pvalue) if n else float("nan")


@torch.no_grad()
def _contrast_embeddings(model: Pretrained, key: str, graphs: list[HeteroData], batch_size: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``(z_m, z_c)`` ``[N, P]`` of each graph through the contrast task's own (leak-free) view."""
    task = model.model.tasks[key]
    model.model.eval()
    zm, zc = [], []
    for batch in DataLoader(graphs, batch_size=batch_size):
        a, b = task.embed(batch.to(model.device), model.model.encoder)
        zm.append(a.cpu().numpy())
        zc.append(b.cpu().numpy())
    return np.concatenate(zm), np.concatenate(zc)


def _task_key_of(model: Any) -> str | None:
    try:
        return causal_task_key(model)
    except ValueError:
        return None


def _response_vectors(ctx: EvaluationContext, key: str, graphs: list[HeteroData], records: list[Record],
                      batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and measured responses ``[N, K]`` of the graphs on their covered slots (NaN -> 0)."""
    from .responses import response_table

    table = response_table(ctx, graphs, records, predict_treated(ctx.model, key, graphs, ctx.device, batch_size))
    table = table.select_columns(table.covered_columns())
    return np.nan_to_num(table.predicted_response), np.nan_to_num(table.response)


def _ridge_vectors(ctx: EvaluationContext, records: list[Record], measured: np.ndarray, train_idx: list[int]
                   ) -> np.ndarray:
    """ECFP4 + log-dose ridge predictions ``[N, K]`` for every well, fitted on the ``train_idx`` wells."""
    from .responses import ResponseTable, ecfp_ridge

    meta = pd.DataFrame([{"record_id": r.id, **{f: r.fields.get(f) for f in ("compound_id", "smiles", "dose_um",
                                                                                "cell_line")}} for r in records])
    zeros = np.zeros_like(measured)
    train = ResponseTable(meta.iloc[train_idx].reset_index(drop=True), [str(i) for i in range(measured.shape[1])],
                          zeros[train_idx], measured[train_idx])
    pred, _ = ecfp_ridge(train, meta) if train_idx else (zeros, 0.0)
    return pred


def _trained_probe_dose(records: list[Record]) -> float:
    """The highest dose (6 significant digits) at which at least half of the training compounds were
    measured (the largest dose when no dose reaches half)."""
    train = [r for r in records if r.fields.get("split", "train") == "train" and r.fields.get("dose_um")]
    by_dose: dict[float, set] = {}
    comps = set()
    for r in train:
        d = float(f"{float(r.fields['dose_um']):.6g}")
        by_dose.setdefault(d, set()).add(r.fields.get("compound_id"))
        comps.add(r.fields.get("compound_id"))
    ok = [d for d, c in by_dose.items() if len(c) >= 0.5 * len(comps)]
    if ok:
        return max(ok)
    every = [float(r.fields["dose_um"]) for r in records if r.fields.get("dose_um")]
    return max(every) if every else 1.0


def _labels_by_key(ds) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """InChIKey14 -> (labels ``[T]``, present ``[T]``) over every split (first occurrence kept)."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in (ds.train, ds.valid, ds.test):
        for s, y, w in zip(split.smiles, split.y, split.present):
            k = inchikey14(str(s))
            if k is not None and k not in out:
                out[k] = (y, w)
    return out


def _tox_summary(tox: pd.DataFrame, comp: pd.DataFrame, matched: dict[str, int], top: float,
                 p: ZeroShotParams) -> str:
    paras = [f"Predicted response magnitude at {top:g} uM (a dose the model was trained on; each compound's own "
             f"control state) for "
             f"{len(comp)} compounds ({int(comp.split.eq('test').sum())} held out): mean "
             f"{comp.predicted_magnitude.mean():.3g} (untrained model {comp.untrained_predicted_magnitude.mean():.3g}; "
             f"measured at each compound's highest dose {comp.measured_magnitude.mean():.3g}); Spearman "
             f"predicted vs measured {comp.predicted_magnitude.corr(comp.measured_magnitude, method='spearman'):.3f}."]
    if not p.toxicity_sets:
        return paras[0] + " No toxicity labels configured (`toxicity_sets: []`)."
    paras.append("Compounds matched to MoleculeNet by InChIKey connectivity block: "
                 + ", ".join(f"{k} {v}/{len(comp)}" for k, v in matched.items()) + ".")
    scored = tox[tox.skipped.eq("") & tox.score.ne("-")]
    if scored.empty:
        paras.append(f"No task had at least {p.min_labelled} matched labelled compounds with "
                     f"{p.min_per_class} of each class: no AUROC reported.")
        return "\n\n".join(paras)
    wide = scored.pivot_table(index=["subset", "dataset"], columns="score", values="auroc", aggfunc="mean")
    ntask = scored.groupby(["subset", "dataset"]).task.nunique()
    cols = [s for s in SCORES if s in wide.columns]
    lines = ["AUROC of each label-free score, macro over the scored tasks (`all`: every matched compound, "
             "including those whose responses pretraining saw; `held_out`: the test-split compounds only):", "",
             "| subset | set | tasks | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for (subset, ds), row in wide.iterrows():
        lines.append(f"| {subset} | {ds} | {ntask[(subset, ds)]} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    paras.append("\n".join(lines))
    skipped = tox[tox.skipped.ne("")]
    if len(skipped):
        paras.append(f"{skipped[['subset', 'dataset', 'task']].drop_duplicates().shape[0]} (subset, task) pairs "
                     f"not scored (too few matched labelled compounds or one class; see `toxicity.csv`).")
    return "\n\n".join(paras)
