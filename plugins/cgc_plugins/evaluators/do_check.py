"""Do-calculus check (proposal §2.4.3): does the model identify the causal effect of a compound
on the cell state in data with a confounder, where the truth is known analytically?

Needs a run pretrained on an SCM dataset with known do() effects (``scm_cellpainting``,
:mod:`cgc_plugins.datasets.scm`). Queries: every compound x every dose x the control state of each
``reference_plates`` plate (default: plates 0 and 1, one of each batch). For each query
``do(k, d)`` on control state ``c``:

* truth: ``c + h(d) tau_k`` (the SCM's analytic interventional mean), passed through the run's cell
  builder, so it is compared in the same slot space as every prediction;
* ``model``: the causal head's prediction from the query's experiment graph (control state ``c``,
  compound ``k``, dose ``d``), built by the run's builders;
* ``ridge`` (correlational): ridge regression of the observed treated state on the compound's ECFP4
  crossed with a one-hot of the dose level (plus the dose one-hot), fitted on the run's training
  wells — it sees compound and dose, never the control state or the batch;
* ``correlational_limit``: ``E[y | k, d]`` computed analytically from the SCM, the value any purely
  correlational regressor converges to with unlimited data (its error is the confounding bias);
* ``control``: no effect (``y = c``); its MSE is the mean squared true effect (the scale).

Reported per method: MSE against the truth over (query, slot), ``relative_mse`` = MSE / mean squared
true effect, and Pearson/Spearman of the predicted vs the true effect (``prediction - c``). Verdict:
the model **identified** the causal effect when its MSE is below the correlational regressor's and
its ``relative_mse`` is at most ``tolerance``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge

from cgc_framework.plugin import EvaluationContext, EvaluationResult, Evaluator, Record
from cgc_framework.plugin.metrics import regression_metrics

from .causal_consistency import training_records
from .params import DoCheckParams
from .responses import build_experiment_graphs, causal_task_key, ecfp4, predict_treated, response_table


def dose_design(fps: np.ndarray, doses: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Correlational design matrix ``[N, (L + 1) * bits]``-ish: ECFP4 x dose-level one-hot blocks,
    then the dose one-hot ``[N, L]`` (doses matched to ``levels`` within 5 %)."""
    onehot = np.zeros((len(doses), len(levels)))
    for i, d in enumerate(doses):
        onehot[i, int(np.argmin(np.abs(np.log10(levels) - np.log10(max(d, 1e-9)))))] = 1
    crossed = (fps[:, None, :] * onehot[:, :, None]).reshape(len(doses), -1)
    return np.concatenate([crossed, onehot], axis=1)


def verdict(model_mse: float, correlational_mse: float, truth_ms: float, tolerance: float) -> tuple[bool, str]:
    """``(identified, sentence)``: identified iff ``model_mse < correlational_mse`` and
    ``model_mse / truth_ms <= tolerance``."""
    rel = model_mse / truth_ms if truth_ms > 0 else float("inf")
    ok = bool(model_mse < correlational_mse and rel <= tolerance)
    why = (f"model MSE {model_mse:.4g} vs correlational {correlational_mse:.4g}; model MSE / mean squared true "
           f"effect = {rel:.3f} (tolerance {tolerance:g})")
    return ok, ("identified the causal effect: " if ok else "did NOT identify the causal effect: ") + why


class DoCheck(Evaluator):
    """Registered as ``do_check``; see the module docstring."""

    def __init__(self, params: DoCheckParams | None = None):
        self.params = params or DoCheckParams()

    def evaluate(self, ctx: EvaluationContext) -> EvaluationResult:
        from cgc_plugins.cells.profile_builder import CellProfile
        from cgc_plugins.datasets.scm import SCMCellPainting

        p = self.params
        spec = ctx.plan.dataset_spec
        scm = ctx.plan.registry.create("dataset", spec.info.name, spec.params)
        if not isinstance(scm, SCMCellPainting):
            raise ValueError(f"do_check needs a dataset with analytic do() effects (scm_cellpainting); the run's "
                             f"dataset is '{spec.info.name}'")
        key = causal_task_key(ctx.model, p.task)
        doses = list(p.doses_um or scm.p.doses_um)
        bad = [b for b in p.reference_plates if not 0 <= b < scm.p.n_plates]
        if bad:
            raise ValueError(f"reference_plates {bad} outside 0..{scm.p.n_plates - 1}")
        # queries: truth (treated = analytic interventional mean) and the correlational limit
        queries, limits = [], []
        for b in p.reference_plates:
            c = scm.controls[b]
            plate = f"SCM{scm.p.seed}-P{b:02d}"
            for k, cid in enumerate(scm.compound_ids):
                for d in doses:
                    fields = dict(scm._fields(k), dose_um=float(d), plate=plate, well="do", batch=int(scm.batches[b]),
                                  split="query")
                    truth = scm.interventional_mean(cid, d, c)
                    q = Record(f"do:{cid}:{d:g}:P{b:02d}", dict(fields, cell_profile=CellProfile(
                        scm.features, truth.astype(np.float32), c.astype(np.float32), float(d), plate)))
                    lim = Record(q.id, dict(fields, cell_profile=CellProfile(
                        scm.features, scm.observational_mean(cid, d).astype(np.float32), c.astype(np.float32),
                        float(d), plate)))
                    queries.append(q)
                    limits.append(lim)
        graphs, kept, skips = build_experiment_graphs(ctx, queries)
        if len(kept) != len(queries):
            raise ValueError(f"the run's builders rejected {len(skips)} do() queries, e.g. "
                             f"{skips.entries[0].record_id}: {skips.entries[0].reason}")
        preds = predict_treated(ctx.model, key, graphs, ctx.device, p.batch_size)
        qt = response_table(ctx, graphs, kept, preds)
        lg, lk, _ = build_experiment_graphs(ctx, limits)
        lt = response_table(ctx, lg, lk)
        # the correlational regressor, fitted on the run's training wells
        train_recs = training_records(ctx, exclude=("val", "test"))
        tg, tk, _ = build_experiment_graphs(ctx, train_recs)
        tt = response_table(ctx, tg, tk)
        cols = [c for c in qt.complete_columns() if c in set(tt.complete_columns())]
        qt, lt, tt = qt.select_columns(cols), lt.select_columns(cols), tt.select_columns(cols)
        levels = np.unique(np.asarray(scm.p.doses_um, float))
        fps = {s: f for s, f in zip(scm.compound_ids, ecfp4(list(scm.compounds.smiles)))}
        x_train = dose_design(np.stack([fps[str(c)] for c in tt.meta.compound_id]),
                              tt.meta.dose_um.astype(float).to_numpy(), levels)
        ridge = Ridge(alpha=p.ridge_alpha).fit(x_train, tt.treated)
        x_query = dose_design(np.stack([fps[str(c)] for c in qt.meta.compound_id]),
                              qt.meta.dose_um.astype(float).to_numpy(), levels)
        truth, control = qt.treated, qt.control
        methods = {"model": qt.predicted, "ridge": ridge.predict(x_query), "correlational_limit": lt.treated,
                   "control": control}
        truth_ms = float(np.mean((truth - control) ** 2))
        rows, per_query = [], []
        for name, pred in methods.items():
            m = regression_metrics(truth - control, pred - control)
            rows.append({"method": name, "mse": m["mse"], "relative_mse": m["mse"] / truth_ms if truth_ms else np.nan,
                         "effect_pearson": m["pearson"], "effect_spearman": m["spearman"],
                         "n_queries": len(qt), "n_slots": len(cols), "n_train_wells": len(tt)})
            err = np.mean((pred - truth) ** 2, axis=1)
            per_query += [{"method": name, "record_id": r, "compound_id": c, "dose_um": d, "plate": pl, "mse": e}
                          for r, c, d, pl, e in zip(qt.meta.record_id, qt.meta.compound_id, qt.meta.dose_um,
                                                    qt.meta.plate, err)]
        table = pd.DataFrame(rows)
        mse = dict(zip(table.method, table.mse))
        ok, sentence = verdict(mse["model"], mse["ridge"], truth_ms, p.tolerance)
        table["identified"] = [ok if r == "model" else np.nan for r in table.method]
        lines = [f"Do-calculus check on the SCM ({len(scm.compound_ids)} compounds x {len(doses)} doses x control "
                 f"states of plates {p.reference_plates}; {len(cols)} slots; confounding {scm.p.confounding:g}, "
                 f"batch sd {scm.p.batch_sd:g}, effect sd {scm.p.effect_sd:g}). Errors against the analytic "
                 f"do() truth (mean squared true effect {truth_ms:.4g}):", "",
                 "| method | MSE | MSE / true effect | effect Pearson | effect Spearman |", "|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['method']} | {r['mse']:.4g} | {r['relative_mse']:.3f} | {r['effect_pearson']:.3f} | "
                         f"{r['effect_spearman']:.3f} |")
        lines += ["", f"Verdict: the model {sentence}. `ridge` regresses the treated state on ECFP4 x dose "
                      f"without the control state ({len(tt)} training wells); `correlational_limit` is its "
                      "infinite-data limit E[y | compound, dose], computed from the SCM."]
        return EvaluationResult({"do_check": table, "do_queries": pd.DataFrame(per_query)}, "\n".join(lines))
