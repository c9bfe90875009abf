"""Out-of-distribution response prediction (proposal §2.4.2): the counterfactual metrics and
baselines of :mod:`.causal_consistency`, in-distribution and out-of-distribution side by side.

Suites (``suite``; the run's dataset split decides what is held out, this evaluator checks it):

* ``dose`` — held-out doses: ``data.dataset.params.split: {by: dose, test_groups: [3.33, 10],
  val_by: record}`` trains on four of the six LINCS doses; ``ood`` = the two held-out doses. Beside
  the usual baselines, the OOD part is scored against ``same_compound_interpolation``: the same
  compound's (same cell line's) training responses at its neighbouring lower and higher doses,
  interpolated in log dose — what a lookup table of the measured doses gives.
* ``moa`` — novel MoA classes: ``split: {by: moa, val_by: record}`` (or ``test_groups: [...]``):
  every compound of a held-out MoA is unseen in pretraining.
* ``cell_context`` — held-out cell context: the run trains on A549 (LINCS); ``ood`` = the wells of
  ``ood_dataset`` (e.g. MCF-7 BBBC021 through the ``bbbc021_annotated`` preset) in the shared cell
  schema. Only slots measured in both contexts are scored; ``overlap.csv`` says how many (and how
  many raw CellProfiler feature names the two files share). Baselines come from A549 training wells.
* ``custom`` — any ``ood_split`` / ``ood_dataset`` without checks.

``id`` = the run's ``id_split`` part (default ``val``; with ``val_by: record`` these are wells drawn
at random from the training groups, never pretrained on) — the in-distribution reference.

Every part also scores the model's molecule ablations and writes ``verdict.csv`` and **Verdict**
lines (see :mod:`.causal_consistency`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from cgc_framework.plugin import EvaluationContext, EvaluationResult, Evaluator

from .causal_consistency import _verdict_table, counterfactual, leakage_sentence, response_train_table
from .common import inchikey14
from .params import DatasetRef as DatasetRef
from .params import OODParams
from .responses import BASELINES, causal_task_key, dataset_records, metrics_markdown, run_split_info, verdict_sentences

SUITE_SPLIT = {"dose": "dose", "moa": "moa", "cell_context": None, "custom": None}


class OODResponse(Evaluator):
    """Registered as ``ood_response``; see the module docstring."""

    def __init__(self, params: OODParams | None = None):
        if params is None:
            raise ValueError("ood_response needs params (at least `suite`)")
        self.params = params

    def evaluate(self, ctx: EvaluationContext) -> EvaluationResult:
        p = self.params
        key = causal_task_key(ctx.model, p.task)
        by, included = run_split_info(ctx)
        notes = []
        want = SUITE_SPLIT[p.suite]
        if want is not None and by != want:
            notes.append(f"suite `{p.suite}` expects the run's dataset split by `{want}`, found `{by}`: the OOD "
                         "part is not what the suite's name says")
        parts: dict[str, list] = {}
        if p.id_split is not None and by != "none":
            parts["id"] = dataset_records(ctx, [p.id_split])[0]
        if p.ood_dataset is not None:
            ood_records, ood_ds = dataset_records(ctx, ref=p.ood_dataset)
        else:
            ood_records, ood_ds = dataset_records(ctx, [p.ood_split])
        parts["ood"] = ood_records
        train = response_train_table(ctx, exclude=tuple(x for x in (p.id_split, p.ood_split) if x))
        baselines = tuple(p.baselines) if p.baselines is not None else BASELINES
        extra = {"ood": ("same_compound_interpolation",)} if p.suite == "dose" and p.baselines is None else None
        res, aligned, more = counterfactual(ctx, parts, train, key, p.batch_size, p.max_wells, columns=p.columns,
                                            baselines=baselines, ablations=tuple(p.ablations), part_baselines=extra)
        notes += more
        metrics = pd.DataFrame(res["metrics"])
        tables: dict[str, Any] = {"ood": metrics.assign(suite=p.suite),
                                  "per_feature": pd.DataFrame(res["per_feature"]),
                                  "per_well": pd.DataFrame(res["per_well"]),
                                  "verdict": _verdict_table(res["verdicts"]).assign(suite=p.suite)}
        overlap, overlap_text = self._overlap(ctx, train, aligned, ood_records)
        tables["overlap"] = pd.DataFrame(overlap)
        where = (f"`{p.ood_dataset.name}` ({len(ood_records)} records)" if p.ood_dataset is not None
                 else f"the `{p.ood_split}` part")
        text = [f"OOD suite `{p.suite}`: in-distribution (`id` = the run's `{p.id_split}` part) vs "
                f"out-of-distribution (`ood` = {where}); "
                + ", ".join(f"{k}: {len(v)} wells" for k, v in aligned.items())
                + f"; {len(train)} training wells for the baselines. "
                + (leakage_sentence(ctx, p.ood_split) if p.ood_dataset is None else
                   f"Split of the run's dataset: by `{by}`, pretraining read `{included}`."), "",
                *[v for part in ("ood", "id") if part in aligned
                  for v in verdict_sentences(res["verdicts"], metrics, part)], "",
                metrics_markdown(res["metrics"], [k for k in ("id", "ood") if k in aligned]), "", overlap_text]
        if notes:
            text += ["", "Notes: " + "; ".join(notes)]
        return EvaluationResult(tables, "\n".join(text))

    @staticmethod
    def _overlap(ctx: EvaluationContext, train, aligned: dict, ood_records: list) -> tuple[list[dict], str]:
        """What the OOD wells share with training: slots, raw feature names, compounds, doses."""
        rows = []
        tr_cols = set(train.complete_columns())
        ood = aligned.get("ood")
        scored = len(ood.columns) if ood is not None else 0
        rows.append({"item": "response slots measured in every training well", "count": len(tr_cols)})
        rows.append({"item": "response slots scored (measured in every evaluated and training well)",
                     "count": scored})
        pretraining = list(ctx.plan.dataset.records(_skips()))
        tr_feats = set(_first_features(pretraining))
        ood_feats = set(_first_features(ood_records))
        if ood_feats:
            rows += [{"item": "CellProfiler features (training file)", "count": len(tr_feats)},
                     {"item": "CellProfiler features (OOD file)", "count": len(ood_feats)},
                     {"item": "CellProfiler feature names in both", "count": len(tr_feats & ood_feats)}]
        tr_keys = {inchikey14(r.fields.get("smiles")) for r in pretraining} - {None}
        ood_keys = {inchikey14(r.fields.get("smiles")) for r in ood_records} - {None}
        rows += [{"item": "OOD compounds (InChIKey14)", "count": len(ood_keys)},
                 {"item": "OOD compounds also in pretraining", "count": len(ood_keys & tr_keys)}]
        if ood is not None:
            tr_doses = {round(float(d), 4) for d in train.meta.dose_um.dropna()}
            ood_doses = {round(float(d), 4) for d in ood.meta.dose_um.dropna()}
            rows.append({"item": "OOD doses (uM) not among training doses", "count": len(ood_doses - tr_doses)})
        text = "Overlap with pretraining: " + "; ".join(f"{r['item']}: {r['count']}" for r in rows) + "."
        return rows, text


def _skips():
    from cgc_framework.plugin.records import SkipLog

    return SkipLog()


def _features(record) -> tuple[str, ...]:
    prof = record.fields.get("cell_profile")
    return tuple(getattr(prof, "features", ()))


def _first_features(records) -> tuple[str, ...]:
    for r in records:
        f = _features(r)
        if f:
            return f
    return ()
