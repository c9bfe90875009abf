"""Causal consistency (proposal §2.4.3-2.4.4): counterfactual accuracy on held-out interventions
and the intervention consistency score (ICS) of compounds sharing a target gene.

**Counterfactual accuracy.** The run's dataset is re-created with ``include_splits: [<split>]``
(default ``test``: the wells its seeded group split held out of pretraining); each well's
experiment graph is built by the run's own builders and edge sources, and the causal head predicts
the treated cell state from the well's control state and its intervention (compound, dose). Measured
response = treated - control, predicted response = prediction - control, in the cell graph's slot
space (robust z vs plate DMSO; slots measured in every evaluated and training well). Reported:
MSE, Pearson and Spearman over all (well, slot) entries; per feature (correlation across wells,
then the mean over slots) and per well (correlation across slots, mean over wells). Baselines on the
same wells: ``control`` (zero change), ``per_dose_mean`` (the mean training response at the
training dose nearest in log10 dose) and ``fingerprint_nn`` (the training compound with the most
similar ECFP4, its mean response at its dose nearest the query's). "Training" = the pretraining
records of the run (``plan.dataset``) in the ``train`` part.

**ICS.** ``ICS = 1/|P| sum_{(i, i') in P} cos(f(G, i), f(G, i'))`` over the pairs ``P`` of
compounds that share at least one target gene (the records' ``target`` field: Repurposing Hub /
JUMP-Target annotations, ``|``-separated), where ``f(G, i)`` is the predicted response to
``do(compound i, dose = ics_dose_um)`` on one fixed control state ``G`` (the first record's plate
control). The same score over all compound pairs is the random-pair reference. ``*_centred`` rows
repeat it after subtracting the mean response over compounds (a response common to all compounds
makes every raw cosine high and the contrast small). Significance: a
one-sided permutation test that shuffles the target annotations over compounds (seeded,
``n_permutations``): ``p = (1 + #{ICS_perm >= ICS}) / (1 + n_permutations)``. The same statistics of
the *measured* responses (mean over the compound's wells at its dose nearest ``ics_dose_um``) show
whether the data themselves are target-consistent. Compounds without a target annotation are
left out of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics.pairwise import cosine_similarity

from cgc_framework.plugin import EvaluationContext, EvaluationResult, Evaluator, Record, SkipLog

from .params import CausalConsistencyParams
from .responses import (
    ResponseTable,
    causal_task_key,
    dataset_records,
    evaluate_methods,
    metrics_markdown,
    nearest_dose,
    predicted_table,
    run_split_info,
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

def training_records(ctx: EvaluationContext) -> list[Record]:
    """The run's pretraining records (``plan.dataset``, leakage guard included) of the ``train``
    part (records without a ``split`` field count as train)."""
    return [r for r in ctx.plan.dataset.records(SkipLog()) if r.fields.get("split", "train") == "train"]


def counterfactual(ctx: EvaluationContext, parts: dict[str, list[Record]], train: ResponseTable,
                   task_key: str, batch_size: int, max_wells: int | None = None
                   ) -> tuple[dict[str, list[dict]], dict[str, ResponseTable], list[str]]:
    """Predict every part (at most ``max_wells`` buildable wells each, seeded), align columns with the
    training table, score model and baselines.

    Returns ``({"metrics"|"per_feature"|"per_well": rows}, {part: aligned ResponseTable}, notes)``.
    Columns: slots measured in every well of every evaluated part and of the training table.
    """
    tables = {name: predicted_table(ctx, recs, task_key, batch_size, max_wells, salt)
              for salt, (name, recs) in enumerate(parts.items())}
    notes = []
    common = set(train.complete_columns())
    for name, t in tables.items():
        if len(t.skips):
            notes.append(f"{name}: {len(t.skips)} record(s) rejected by the run's builders "
                         f"(e.g. {t.skips.entries[0].record_id}: {t.skips.entries[0].reason})")
        if len(t):
            common &= set(t.complete_columns())
    cols = [c for c in train.columns if c in common]
    out: dict[str, list[dict]] = {"metrics": [], "per_feature": [], "per_well": []}
    aligned = {}
    tr = train.select_columns(cols)
    for name, t in tables.items():
        if not len(t):
            notes.append(f"{name}: no wells to evaluate")
            continue
        t = aligned[name] = t.select_columns(cols)
        rows, feats, wells, _ = evaluate_methods(t, tr, part=name)
        out["metrics"] += rows
        out["per_feature"] += feats
        out["per_well"] += wells
    return out, aligned, notes


def response_train_table(ctx: EvaluationContext) -> ResponseTable:
    """The training wells (see :func:`training_records`) in slot space, without predictions."""
    from .responses import build_experiment_graphs, response_table

    recs = training_records(ctx)
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
    return (f"Held out: split by `{by}`; pretraining read only `{included}`, never the `{split}` part.")


# -- the evaluator -------------------------------------------------------------------------------

class CausalConsistency(Evaluator):
    """Registered as ``causal_consistency``; see the module docstring."""

    def __init__(self, params: CausalConsistencyParams | None = None):
        self.params = params or CausalConsistencyParams()

    def evaluate(self, ctx: EvaluationContext) -> EvaluationResult:
        p = self.params
        key = causal_task_key(ctx.model, p.task)
        held, _ = dataset_records(ctx, [p.split])
        train = response_train_table(ctx)
        res, aligned, notes = counterfactual(ctx, {p.split: held}, train, key, p.batch_size, p.max_wells)
        tables: dict[str, Any] = {"counterfactual": pd.DataFrame(res["metrics"]),
                                  "per_feature": pd.DataFrame(res["per_feature"]),
                                  "per_well": pd.DataFrame(res["per_well"])}
        t = aligned.get(p.split)
        lines = [f"Counterfactual accuracy on the `{p.split}` part: {len(t) if t is not None else 0} wells, "
                 f"{len(t.columns) if t is not None else 0} response slots (treated - control, robust z), "
                 f"{len(train)} training wells for the baselines. {leakage_sentence(ctx, p.split)}", "",
                 metrics_markdown(res["metrics"], [p.split]), "",
                 "`feature_pearson`: mean over slots of the correlation across wells; `well_pearson`: mean "
                 "over wells of the correlation across slots (undefined, '-', for a constant prediction such "
                 "as `control`)."]
        if p.ics:
            ics_rows, pair_rows, ics_text = self._ics(ctx, key)
            tables["ics"], tables["ics_pairs"] = pd.DataFrame(ics_rows), pd.DataFrame(pair_rows)
            lines += ["", ics_text]
        if notes:
            lines += ["", "Notes: " + "; ".join(notes)]
        return EvaluationResult(tables, "\n".join(lines))

    def _ics(self, ctx: EvaluationContext, key: str) -> tuple[list[dict], list[dict], str]:
        from cgc_plugins.cells.profile_builder import CellProfile

        from .responses import build_experiment_graphs, predict_treated, response_table

        p = self.params
        records, _ = dataset_records(ctx, ["train", "val", "test"]) if _has_splits(ctx) else dataset_records(ctx)
        by_compound: dict[str, list[Record]] = {}
        for r in records:
            if r.fields.get("smiles") and target_set(r.fields.get("target")):
                by_compound.setdefault(str(r.fields["compound_id"]), []).append(r)
        template = next((r for r in records if isinstance(r.fields.get("cell_profile"), CellProfile)), None)
        if template is None or len(by_compound) < 2:
            return [], [], "ICS: fewer than two compounds with a target annotation; not computed."
        prof: CellProfile = template.fields["cell_profile"]
        compounds = sorted(by_compound)
        do_records = []
        for c in compounds:
            f = dict(by_compound[c][0].fields)
            f.update(dose_um=float(p.ics_dose_um), cell_profile=CellProfile(
                prof.features, np.array(prof.control), np.array(prof.control), float(p.ics_dose_um), prof.plate))
            do_records.append(Record(f"do:{c}", f))
        graphs, kept, _ = build_experiment_graphs(ctx, do_records)
        pred = response_table(ctx, graphs, kept, predict_treated(ctx.model, key, graphs, ctx.device, p.batch_size))
        pred_cols = pred.complete_columns()
        pred_resp = pred.select_columns(pred_cols).predicted_response
        pred_ids = [str(c) for c in pred.meta.compound_id]
        # measured: every well of these compounds, mean at the dose nearest ics_dose_um
        all_recs = [r for c in pred_ids for r in by_compound[c]]
        g_all, k_all, _ = build_experiment_graphs(ctx, all_recs)
        meas = response_table(ctx, g_all, k_all)
        meas = meas.select_columns(meas.complete_columns())
        mids = meas.meta.compound_id.astype(str).to_numpy()
        doses = meas.meta.dose_um.astype(float).fillna(0).to_numpy()
        meas_resp, meas_ids = [], []
        for c in pred_ids:
            rows = np.flatnonzero(mids == c)
            if not rows.size:
                continue
            best = nearest_dose(np.unique(doses[rows]), p.ics_dose_um)
            rows = rows[np.isclose(doses[rows], best)]
            meas_resp.append(np.nanmean(meas.response[rows], axis=0))
            meas_ids.append(c)
        targets = {c: target_set(by_compound[c][0].fields.get("target")) for c in compounds}
        results = {"model": (pred_ids, intervention_consistency(
            pred_resp, [targets[c] for c in pred_ids], n_permutations=p.n_permutations, seed=ctx.seed), pred_resp),
                   "measured": (meas_ids, intervention_consistency(
            np.array(meas_resp), [targets[c] for c in meas_ids], n_permutations=p.n_permutations,
            seed=ctx.seed), np.array(meas_resp))}
        for s in ("model", "measured"):  # centred: the mean response over compounds removed
            ids, _, resp = results[s]
            centred = resp - resp.mean(axis=0, keepdims=True)
            results[f"{s}_centred"] = (ids, intervention_consistency(
                centred, [targets[c] for c in ids], n_permutations=p.n_permutations, seed=ctx.seed), centred)
        rows = [{"source": s, **res.as_row(), "dose_um": p.ics_dose_um} for s, (_, res, _) in results.items()]
        pairs = []
        for s, (ids, _, resp) in results.items():
            sim = cosine_similarity(resp) if len(resp) else np.zeros((0, 0))
            for i in range(len(ids)):
                for j in range(i + 1, len(ids)):
                    shared = targets[ids[i]] & targets[ids[j]]
                    if shared:
                        pairs.append({"source": s, "compound_a": ids[i], "compound_b": ids[j],
                                      "shared_targets": "|".join(sorted(shared)), "cosine": float(sim[i, j])})
        lines = [f"Intervention consistency (ICS, cosine of responses to do(compound, {p.ics_dose_um:g} uM); "
                 f"{p.n_permutations} target-label permutations, seed {ctx.seed}):", "",
                 "| source | compounds | same-target pairs | ICS same target | ICS all pairs | p (permutation) |",
                 "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['source']} | {r['n_compounds']} | {r['n_target_pairs']} | {r['ics_target']:.3f} | "
                         f"{r['ics_random']:.3f} | {r['p_value']:.3g} |")
        lines.append("")
        lines.append("`model`: predicted responses on one fixed control state (plate "
                     f"{prof.plate}); `measured`: the compounds' measured responses at their dose nearest "
                     f"{p.ics_dose_um:g} uM; `*_centred`: the same after subtracting the mean response over "
                     "the compounds (a response shared by every compound makes every raw cosine high). Targets: "
                     "the records' `target` annotations.")
        return rows, pairs, "\n".join(lines)


def _has_splits(ctx: EvaluationContext) -> bool:
    params = ctx.plan.dataset_spec.params
    return params is not None and "include_splits" in type(params).model_fields
