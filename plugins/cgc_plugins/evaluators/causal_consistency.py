"""Causal consistency (proposal §2.4.3-2.4.4): counterfactual accuracy on held-out interventions
and the intervention consistency score (ICS) of held-out compounds sharing a target gene.

**Counterfactual accuracy.** The run's dataset is re-created with ``include_splits: [<split>]``
(default ``test``: the wells its seeded group split — one fold of a compound- or scaffold-grouped
K-fold cross-validation — held out of pretraining); each well's experiment graph is built by the
run's own builders and edge sources, and the causal head predicts the treated cell state from the
well's control state and its intervention (compound, dose). Measured response = treated - control,
predicted response = prediction - control, in the cell graph's slot space (robust z vs plate DMSO).
Columns (``columns``): ``complete`` — slots measured in every evaluated and training well;
``covered`` — slots measured in at least one of each (metrics then skip unmeasured entries; for
pooled sources with different stain sets).

Methods on the same wells: ``model``; its molecule ablations ``model_no_compound`` (compound
embedding zeroed) and ``model_shuffled_compound`` (permuted over the wells of a batch) — does the
model use the molecule at all?; the baselines ``control`` (no change), ``per_dose_mean`` (per cell
line, the mean training response at the training dose nearest in log10 dose), ``fingerprint_nn``
(the most Tanimoto-similar ECFP4 *other* training compound in the same cell line, its mean response
at its dose nearest the query's) and ``ecfp_ridge`` (ridge regression on ECFP4, ECFP4 x log dose,
log dose and the cell line; penalty chosen by a grouped inner CV on training compounds). "Training" =
the pretraining records of the run (``plan.dataset``: the wells the model was trained on), minus the
evaluated part. Metrics: ``mse``,
``wmse`` (each feature weighted by its training response variance, mean weight 1: "no change"
cannot win by averaging over features that never respond), Pearson and Spearman over all (well,
slot) entries, per feature (across wells, then the mean over slots) and per well (across slots, then
the mean over wells); on every well and on the *active* wells (response above the 95th percentile of
the plate's DMSO wells). Verdicts (``verdict.csv`` and the summary's **Verdict** lines): the model beats
a baseline when its flattened Pearson is higher and its weighted MSE lower, with a one-sided Wilcoxon
test over compounds (per-compound mean of the per-well weighted squared error).

**ICS.** ``ICS = 1/|P| sum_{(i, i') in P} cos(f(G_i, i), f(G_i', i'))`` over the pairs ``P`` of
*held-out* compounds (the ``split`` part) that share at least one target gene (the records' ``target``
field: Repurposing Hub / JUMP-Target annotations, ``|``-separated), where ``f(G, i)`` is the
predicted response to ``do(compound i, dose = ics_dose_um)`` on the control state of the compound's
own first held-out well (its plate and cell line); unmeasured slots count 0 in the cosine. The same
score over all held-out compound pairs is the random-pair reference. ``*_centred`` rows repeat it
after subtracting the mean response over compounds. Significance: a one-sided permutation test that
shuffles the target annotations over compounds (seeded, ``n_permutations``): ``p = (1 + #{ICS_perm >=
ICS}) / (1 + n_permutations)``. The same statistics of the *measured* responses (mean over the
compound's wells at its dose nearest ``ics_dose_um``) show whether the data themselves are
target-consistent. The vectors are written to ``ics_vectors.parquet`` so that a cross-validation
pools every fold's held-out compounds (:mod:`cgc_plugins.evaluators.cv_summary`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics.pairwise import cosine_similarity

from cgc_framework.plugin import EvaluationContext, EvaluationResult, Evaluator, Record, SkipLog

from .common import held_out, inchikey14
from .params import CausalConsistencyParams
from .responses import (
    ABLATIONS,
    BASELINES,
    ResponseTable,
    causal_task_key,
    dataset_records,
    evaluate_methods,
    feature_weights,
    metrics_markdown,
    nearest_dose,
    paired_verdicts,
    predicted_table,
    run_split_info,
    verdict_sentences,
)

# -- ICS ---------------------------------------------------------------------------------------

@dataclass
class ICSResult:
    """Intervention consistency of ``n_compounds`` response vectors.

    ``ics_target``: mean cosine over the ``n_target_pairs`` pairs sharing a target; ``ics_random``:
    mean over all ``n_pairs`` pairs; ``null_mean``: mean of the permutation null; ``p_value``:
    one-sided permutation p (see the module docstring)."""

    ics_target: float
    ics_random: float
    null_mean: float
    p_value: float
    n_compounds: int
    n_target_pairs: int
    n_pairs: int
    n_permutations: int

    def as_row(self) -> dict[str, Any]:
        return dict(self.__dict__, difference=self.ics_target - self.ics_random)


def shared_target_matrix(targets: list[frozenset[str]]) -> np.ndarray:
    """Boolean ``[C, C]``: compounds ``i`` and ``j`` (``i != j``) share at least one target."""
    c = len(targets)
    m = np.zeros((c, c), dtype=bool)
    for i in range(c):
        for j in range(i + 1, c):
            m[i, j] = m[j, i] = bool(targets[i] & targets[j])
    return m


def intervention_consistency(responses: np.ndarray, targets: list[frozenset[str]], *,
                             n_permutations: int = 1000, seed: int = 0) -> ICSResult:
    """ICS of response vectors ``[C, D]`` with target sets ``[C]`` (see the module docstring).

    The permutation null shuffles which compound carries which target set
    (``numpy.random.default_rng(seed)``); the observed labelling is not counted among them.
    """
    r = np.asarray(responses, float)
    if r.shape[0] != len(targets):
        raise ValueError(f"{r.shape[0]} response vectors for {len(targets)} target sets")
    sim = cosine_similarity(r) if len(r) else np.zeros((0, 0))
    iu = np.triu_indices(len(r), k=1)
    pair_sim = sim[iu]
    shared = shared_target_matrix(targets)
    same = shared[iu]
    if not same.any():
        nan = float("nan")
        return ICSResult(nan, float(pair_sim.mean()) if pair_sim.size else nan, nan, nan, len(r), 0,
                         int(pair_sim.size), 0)
    observed = float(pair_sim[same].mean())
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    for k in range(n_permutations):
        perm = rng.permutation(len(targets))
        s = shared[np.ix_(perm, perm)][iu]  # = shared_target_matrix of the permuted target sets
        null[k] = pair_sim[s].mean() if s.any() else np.nan
    null = null[np.isfinite(null)]
    p = float((1 + np.sum(null >= observed - 1e-12)) / (1 + null.size))
    return ICSResult(observed, float(pair_sim.mean()), float(null.mean()), p, len(r), int(same.sum()),
                     int(pair_sim.size), int(null.size))


def target_set(value: Any) -> frozenset[str]:
    """``"A|B"`` -> ``{"A", "B"}`` (upper case; empty for missing)."""
    if not isinstance(value, str):
        return frozenset()
    return frozenset(g.strip().upper() for g in value.split("|") if g.strip())


# -- counterfactual ------------------------------------------------------------------------------

def training_records(ctx: EvaluationContext, exclude: tuple[str, ...] = ()) -> list[Record]:
    """The run's pretraining records (``plan.dataset``, leakage guard included: exactly what the model
    was trained on) except those of the parts in ``exclude`` (the evaluated parts, e.g. an
    in-distribution ``val`` hold-out); records without a ``split`` field count as train. The baselines
    fit the same wells the model saw."""
    return [r for r in ctx.plan.dataset.records(SkipLog()) if r.fields.get("split", "train") not in exclude]


def counterfactual(ctx: EvaluationContext, parts: dict[str, list[Record]], train: ResponseTable,
                   task_key: str, batch_size: int, max_wells: int | None = None, *,
                   columns: str = "complete", baselines: tuple[str, ...] = BASELINES,
                   ablations: tuple[str, ...] = tuple(ABLATIONS), part_baselines: dict[str, tuple[str, ...]] | None = None,
                   exclude_same: bool = True) -> tuple[dict[str, list[dict]], dict[str, ResponseTable], list[str]]:
    """Predict every part (at most ``max_wells`` buildable wells each, seeded), align columns with the
    training table, score model, ablations and baselines (:func:`~.responses.evaluate_methods`).

    Returns ``({"metrics"|"per_feature"|"per_well"|"verdicts": rows}, {part: aligned ResponseTable},
    notes)``. ``columns``: ``complete`` (slots measured in every well of every evaluated part and of the
    training table) or ``covered`` (measured in at least one training well and one evaluated well).
    ``part_baselines``: extra baselines per part (e.g. ``same_compound_interpolation`` for held-out doses).
    """
    tables = {name: predicted_table(ctx, recs, task_key, batch_size, max_wells, salt, ablations)
              for salt, (name, recs) in enumerate(parts.items())}
    notes = []
    if columns == "complete":
        common = set(train.complete_columns())
        for t in tables.values():
            if len(t):
                common &= set(t.complete_columns())
    else:
        common = set(train.covered_columns())
        evaluated: set[str] = set()
        for t in tables.values():
            evaluated |= set(t.covered_columns())
        common &= evaluated
    for name, t in tables.items():
        if len(t.skips):
            notes.append(f"{name}: {len(t.skips)} record(s) rejected by the run's builders "
                         f"(e.g. {t.skips.entries[0].record_id}: {t.skips.entries[0].reason})")
    cols = [c for c in train.columns if c in common]
    out: dict[str, list[dict]] = {"metrics": [], "per_feature": [], "per_well": [], "verdicts": []}
    aligned = {}
    tr = train.select_columns(cols)
    weights = feature_weights(tr)
    for name, t in tables.items():
        if not len(t):
            notes.append(f"{name}: no wells to evaluate")
            continue
        t = aligned[name] = t.align(cols)
        extra = (part_baselines or {}).get(name, ())
        rows, feats, wells, extras = evaluate_methods(t, tr, part=name, baselines=tuple(baselines) + tuple(extra),
                                                      weights=weights, exclude_same=exclude_same)
        if "ridge_alpha" in extras:
            notes.append(f"{name}: ecfp_ridge penalty {extras['ridge_alpha']:g} (chosen on training compounds)")
        if "interpolation_covered" in extras:
            cov = extras["interpolation_covered"]
            notes.append(f"{name}: same_compound_interpolation covers {int(cov.sum())}/{len(cov)} wells (the rest "
                         "have no training well of their molecule and predict no change)")
        out["metrics"] += rows
        out["per_feature"] += feats
        out["per_well"] += wells
        out["verdicts"] += paired_verdicts(t, extras, part=name)
    return out, aligned, notes


def response_train_table(ctx: EvaluationContext, exclude: tuple[str, ...] = ()) -> ResponseTable:
    """The training wells (see :func:`training_records`) in slot space, without predictions."""
    from .responses import build_experiment_graphs, response_table

    recs = training_records(ctx, exclude)
    graphs, kept, skips = build_experiment_graphs(ctx, recs)
    return response_table(ctx, graphs, kept, None, skips=skips)


def leakage_sentence(ctx: EvaluationContext, split: str) -> str:
    by, included = run_split_info(ctx)
    if by == "none":
        return ("The run's dataset has no group split (`data.dataset.params.split.by: none`): every well is "
                "in `train`, so there are no held-out interventions.")
    if split in included:
        return (f"Leakage: the run pretrained on the `{split}` part (`include_splits: {included}`), so these "
                f"wells are not held out; set `include_splits` without `{split}` for an honest number.")
    split_p = getattr(ctx.plan.dataset_spec.params, "split", None)
    fold = f" (fold {split_p.fold} of {split_p.folds})" if getattr(split_p, "folds", None) else ""
    return f"Held out: split by `{by}`{fold}; pretraining read only `{included}`, never the `{split}` part."


def held_out_compounds(plan: Any, split: str) -> Any:
    """:class:`~cgc_framework.plugin.HeldOutMolecules` of the ``split`` part when the run's dataset is
    split by compound or scaffold: the leakage guard then drops every pretraining record of the same
    molecule (InChIKey14), also one listed under another id or by another source."""
    p = getattr(plan.dataset_spec.params, "split", None)
    if getattr(p, "by", None) not in ("compound", "scaffold"):
        return None
    from .common import dataset_with_splits

    records = dataset_with_splits(plan, [split]).records(SkipLog())
    where = f"{split} part (split by {p.by}" + (f", fold {p.fold} of {p.folds})" if p.folds else ")")
    return held_out((inchikey14(r.fields.get("smiles")), where) for r in records)


ICS_COLUMNS = ["source", "ics_target", "ics_random", "null_mean", "p_value", "n_compounds", "n_target_pairs",
               "n_pairs", "n_permutations", "difference", "dose_um"]
"""Columns of ``ics.csv`` (also when no held-out compound pair shares a target)."""


def _verdict_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["part", "baseline", "metric", "model", "baseline_value", "n_compounds",
                                       "model_better", "p_value"])


# -- the evaluator -------------------------------------------------------------------------------

class CausalConsistency(Evaluator):
    """Registered as ``causal_consistency``; see the module docstring."""

    def __init__(self, params: CausalConsistencyParams | None = None):
        self.params = params or CausalConsistencyParams()

    def held_out_molecules(self, plan: Any):
        return held_out_compounds(plan, self.params.split)

    def evaluate(self, ctx: EvaluationContext) -> EvaluationResult:
        p = self.params
        key = causal_task_key(ctx.model, p.task)
        held, _ = dataset_records(ctx, [p.split])
        train = response_train_table(ctx, exclude=(p.split,))
        res, aligned, notes = counterfactual(ctx, {p.split: held}, train, key, p.batch_size, p.max_wells,
                                             columns=p.columns, baselines=tuple(p.baselines),
                                             ablations=tuple(p.ablations))
        metrics = pd.DataFrame(res["metrics"])
        tables: dict[str, Any] = {"counterfactual": metrics,
                                  "per_feature": pd.DataFrame(res["per_feature"]),
                                  "per_well": pd.DataFrame(res["per_well"]),
                                  "verdict": _verdict_table(res["verdicts"])}
        t = aligned.get(p.split)
        n_comp = t.meta.compound_key.nunique() if t is not None and "compound_key" in t.meta and \
            t.meta.compound_key.notna().any() else (t.meta.compound_id.nunique() if t is not None else 0)
        lines = [f"Counterfactual accuracy on the `{p.split}` part: {len(t) if t is not None else 0} wells of "
                 f"{n_comp} compounds, {len(t.columns) if t is not None else 0} response slots (treated - control, "
                 f"robust z; columns: {p.columns}), {len(train)} training wells for the baselines. "
                 f"{leakage_sentence(ctx, p.split)}", "",
                 *verdict_sentences(res["verdicts"], metrics, p.split), "",
                 metrics_markdown(res["metrics"], [p.split]), ""]
        if not metrics.empty and (metrics.wells == "active").any():
            n_act = int(metrics[metrics.wells == "active"].n_wells.iloc[0])
            lines += [f"Active wells only ({n_act}: response above the 95th percentile of the plate's DMSO wells):",
                      "", metrics_markdown(res["metrics"], [p.split], wells="active"), ""]
        lines += ["`wmse`: MSE with each slot weighted by its training response variance (mean weight 1); "
                  "`feature_pearson`: mean over slots of the correlation across wells; `well_pearson`: mean "
                  "over wells of the correlation across slots (undefined, '-', for a constant prediction such "
                  "as `control`). `model_no_compound` / `model_shuffled_compound`: the model with its compound "
                  "embedding zeroed / shuffled over wells."]
        if p.ics:
            ics_rows, pair_rows, vectors, ics_text = self._ics(ctx, key, held)
            tables["ics"] = pd.DataFrame(ics_rows, columns=ICS_COLUMNS)
            tables["ics_pairs"] = pd.DataFrame(pair_rows, columns=["source", "compound_a", "compound_b",
                                                                   "shared_targets", "cosine"])
            if vectors is not None:
                vectors.to_parquet(ctx.output_dir / "ics_vectors.parquet", index=False)
            lines += ["", ics_text]
        if notes:
            lines += ["", "Notes: " + "; ".join(notes)]
        return EvaluationResult(tables, "\n".join(lines))

    def _ics(self, ctx: EvaluationContext, key: str, held: list[Record]
             ) -> tuple[list[dict], list[dict], pd.DataFrame | None, str]:
        from cgc_plugins.cells.profile_builder import CellProfile

        from .responses import build_experiment_graphs, molecule_key, predict_treated, response_table

        p = self.params
        by_compound: dict[str, list[Record]] = {}
        for r in held:
            if r.fields.get("smiles") and target_set(r.fields.get("target")):
                by_compound.setdefault(inchikey14(r.fields["smiles"]) or str(r.fields["compound_id"]), []).append(r)
        if len(by_compound) < 2:
            return [], [], None, (f"ICS: fewer than two held-out compounds (`{p.split}` part) with a target "
                                  "annotation; not computed.")
        compounds = sorted(by_compound)
        do_records = []
        for c in compounds:
            first = by_compound[c][0]
            prof = first.fields["cell_profile"]
            f = dict(first.fields)
            if isinstance(prof, CellProfile):
                f["cell_profile"] = CellProfile(prof.features, np.array(prof.control), np.array(prof.control),
                                                float(p.ics_dose_um), prof.plate, context=prof.context,
                                                cell_line=prof.cell_line, time_h=prof.time_h, activity=prof.activity)
            f["dose_um"] = float(p.ics_dose_um)
            do_records.append(Record(f"do:{c}", f))
        graphs, kept, _ = build_experiment_graphs(ctx, do_records)
        pred = response_table(ctx, graphs, kept, predict_treated(ctx.model, key, graphs, ctx.device, p.batch_size))
        cols = pred.covered_columns()
        pred = pred.select_columns(cols)
        pred_resp = np.nan_to_num(pred.predicted_response)
        pred_ids = [k for k in molecule_key(pred.meta)]
        # measured: the held-out wells of these compounds, mean at the dose nearest ics_dose_um
        all_recs = [r for c in pred_ids for r in by_compound[c]]
        g_all, k_all, _ = build_experiment_graphs(ctx, all_recs)
        meas = response_table(ctx, g_all, k_all).align(cols)
        mids = molecule_key(meas.meta)
        doses = meas.meta.dose_um.astype(float).fillna(0).to_numpy()
        meas_resp, meas_ids = [], []
        for c in pred_ids:
            rows = np.flatnonzero(mids == c)
            if not rows.size:
                continue
            best = nearest_dose(np.unique(doses[rows]), p.ics_dose_um)
            rows = rows[np.isclose(doses[rows], best)]
            meas_resp.append(np.nan_to_num(np.nanmean(meas.response[rows], axis=0)))
            meas_ids.append(c)
        targets = {c: target_set(by_compound[c][0].fields.get("target")) for c in compounds}
        results = {"model": (pred_ids, pred_resp), "measured": (meas_ids, np.array(meas_resp))}
        for s in ("model", "measured"):  # centred: the mean response over compounds removed
            ids, resp = results[s]
            results[f"{s}_centred"] = (ids, resp - resp.mean(axis=0, keepdims=True) if len(resp) else resp)
        rows, pairs = [], []
        for s, (ids, resp) in results.items():
            res = intervention_consistency(resp, [targets[c] for c in ids], n_permutations=p.n_permutations,
                                           seed=ctx.seed)
            rows.append({"source": s, **res.as_row(), "dose_um": p.ics_dose_um})
            sim = cosine_similarity(resp) if len(resp) else np.zeros((0, 0))
            for i in range(len(ids)):
                for j in range(i + 1, len(ids)):
                    shared = targets[ids[i]] & targets[ids[j]]
                    if shared:
                        pairs.append({"source": s, "compound_a": ids[i], "compound_b": ids[j],
                                      "shared_targets": "|".join(sorted(shared)), "cosine": float(sim[i, j])})
        vec = []
        for s in ("model", "measured"):
            ids, resp = results[s]
            for c, v in zip(ids, resp):
                vec.append({"source": s, "compound": c, "targets": "|".join(sorted(targets[c])),
                            **dict(zip(cols, map(float, v)))})
        lines = [f"Intervention consistency on the held-out compounds (`{p.split}` part; ICS, cosine of responses "
                 f"to do(compound, {p.ics_dose_um:g} uM) on each compound's own control state; "
                 f"{p.n_permutations} target-label permutations, seed {ctx.seed}):", "",
                 "| source | compounds | same-target pairs | ICS same target | ICS all pairs | p (permutation) |",
                 "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['source']} | {r['n_compounds']} | {r['n_target_pairs']} | {r['ics_target']:.3f} | "
                         f"{r['ics_random']:.3f} | {r['p_value']:.3g} |")
        lines.append("")
        lines.append("`model`: predicted responses; `measured`: the compounds' measured responses at their dose "
                     f"nearest {p.ics_dose_um:g} uM; `*_centred`: the same after subtracting the mean response over "
                     "the compounds. One fold holds few same-target pairs: a cross-validation pools the folds "
                     "(`ics_vectors.parquet`, `cgc_plugins.evaluators.cv_summary`).")
        return rows, pairs, pd.DataFrame(vec), "\n".join(lines)
