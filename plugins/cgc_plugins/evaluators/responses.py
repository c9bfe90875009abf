"""Response prediction helpers shared by the causal, OOD and zero-shot evaluators.

A *response* is the change of a well's cell graph from its control state to its treated state,
``treated - control``, in the cell builder's value slots (:mod:`cgc_framework.plugin.slots`): for
``cellprofiler_profile`` graphs, one column per (node, slot) measured in the well, named as
CellProfiler names features (e.g. ``Cells_Intensity_MeanIntensity_Mito``), in robust z units vs the
plate's DMSO wells. Predictions come from the run's response-predicting head
(:func:`cgc_framework.plugin.response_head`, the causal task), which maps the control-state graph
and the intervention (compound, dose) to predicted treated features.

Main entry points:

* :func:`dataset_records` — re-create the run's dataset with other ``include_splits`` (or any
  dataset by name/params);
* :func:`build_experiment_graphs` — records -> experiment graphs through the run's own builders
  and edge sources (:meth:`cgc_framework.plugin.Plan.build_graphs`), rejected records listed;
* :func:`response_table` — graphs (+ optional predictions) -> :class:`ResponseTable`
  (``[N, K]`` control / treated / predicted matrices with named columns);
* :func:`predict_treated` — the causal head's predictions per graph;
* :func:`per_dose_mean`, :func:`fingerprint_nn` — the response baselines;
* :func:`response_metrics` — MSE / Pearson / Spearman flattened, per feature and per well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader

from cgc_framework.plugin import DataError, Dataset, EvaluationContext, Record, SkipLog, response_head, value_slots
from cgc_framework.plugin.metrics import regression_metrics

from .common import dataset_with_splits
from .params import DatasetRef

META_FIELDS = ("compound_id", "compound_name", "smiles", "inchikey", "dose_um", "moa", "target", "plate",
               "well", "cell_line", "split")


# -- records and graphs ------------------------------------------------------------------------

def dataset_records(ctx: EvaluationContext, include_splits: list[str] | None = None,
                    ref: DatasetRef | None = None) -> tuple[list[Record], Dataset]:
    """Records of the run's dataset re-created with ``include_splits`` (the run's split params are
    kept), or of the dataset ``ref`` names. Returns ``(records, dataset)``."""
    plan = ctx.plan
    if ref is not None:
        params = plan.registry.validate_params("dataset", ref.name, ref.params, key="evaluation dataset",
                                               context={"base_dir": plan.base_dir})
        ds = plan.registry.create("dataset", ref.name, params)
    elif include_splits is not None:
        ds = dataset_with_splits(plan, include_splits)
    else:
        ds = plan.create_dataset()
    return list(ds.records(SkipLog())), ds


def run_split_info(ctx: EvaluationContext) -> tuple[str, list[str]]:
    """``(split.by, include_splits)`` of the run's dataset params (``("none", [...])`` when absent)."""
    p = ctx.plan.dataset_spec.params
    split = getattr(p, "split", None)
    return (getattr(split, "by", "none") if split is not None else "none",
            list(getattr(p, "include_splits", ["train", "val", "test"])))


def build_experiment_graphs(ctx: EvaluationContext, records: list[Record]) -> tuple[list[HeteroData], list[Record], SkipLog]:
    """Experiment graphs of ``records`` built exactly as pretraining built them (the plan's
    builders, edge sources, cache and schema). Returns ``(graphs, kept records, skips)``; records a
    component rejects are in ``skips``, not in the outputs. Empty input gives empty outputs."""
    if not records:
        return [], [], SkipLog()
    # graphs already built for this plan (evaluators of one run share records) are reused
    cache: dict[str, Any] = ctx.plan.evaluation_cache.setdefault("experiment_graphs", {})
    keys = [_record_key(r) for r in records]
    todo = [r for r, k in zip(records, keys) if k not in cache]
    if todo:
        try:
            built = ctx.plan.build_graphs(todo)
            got = dict(zip(built.record_ids, built.graphs))
            rejected = {e.record_id: e for e in built.skips.entries}
        except DataError as exc:  # nothing usable
            got, rejected = {}, {}
            for r in todo:
                log = SkipLog()
                log.add(r.id, "evaluation", "", "", str(exc))
                rejected[r.id] = log.entries[0]
        for r, k in zip(records, keys):
            if k not in cache and (r.id in got or r.id in rejected):
                cache[k] = got.get(r.id, rejected.get(r.id))
    graphs, kept, skips = [], [], SkipLog()
    for r, k in zip(records, keys):
        hit = cache[k]
        if isinstance(hit, HeteroData):
            graphs.append(hit)
            kept.append(r)
        else:
            skips.entries.append(hit)
    return graphs, kept, skips


def _record_key(r: Record) -> str:
    """Identity of a record's content for the graph cache (id, molecule, dose, profile digest)."""
    return "|".join(str(r.fields.get(f)) for f in ("smiles", "compound_id", "inchikey", "target", "dose_um",
                                                  "cell_profile")) + "|" + r.id


# -- predictions -------------------------------------------------------------------------------

def causal_task_key(model: torch.nn.Module, key: str | None = None) -> str:
    """The key of the response-predicting (causal) head in ``model.tasks`` (``key`` if given);
    ``ValueError`` naming the tasks otherwise (:func:`cgc_framework.plugin.response_head`)."""
    return response_head(model, key)[0]


@torch.no_grad()
def predict_treated(model: torch.nn.Module, task_key: str, graphs: list[HeteroData], device: torch.device,
                    batch_size: int = 64) -> list[dict[str, np.ndarray]]:
    """Predicted treated features per graph: ``[{cell node type: float [N_t, x_dim]}]``, in the
    order of ``graphs`` (model in eval mode; ``y`` is never read)."""
    model.eval()
    head = model.tasks[task_key]
    out: list[dict[str, np.ndarray]] = []
    for batch in DataLoader(graphs, batch_size=batch_size):
        batch = batch.to(device)
        preds = head.predict(batch, model.encoder)
        n = int(batch.num_graphs)
        per_graph: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
        for t, p in preds.items():
            g = batch[t].batch.cpu().numpy()
            p = p.float().cpu().numpy()
            for i in range(n):
                per_graph[i][t] = p[g == i]
        out += per_graph
    return out


# -- slot space --------------------------------------------------------------------------------

def _flatten(schema: Any, graph: HeteroData, cell_types: list[str], arrays: dict[str, np.ndarray] | None,
             attr: str) -> dict[str, float]:
    """``{value name: value}`` of one graph's cell-state nodes (:func:`cgc_framework.plugin.value_slots`
    names them); ``attr`` ``x``/``y`` (or ``arrays`` when given). Only slots measured in both ``x``
    and ``y`` are listed."""
    out: dict[str, float] = {}
    for slots in value_slots(schema, graph, cell_types, measured_in=("x", "y")):
        store = graph[slots.node_type]
        if arrays is not None:
            src = arrays[slots.node_type]
        else:
            values = store.x if attr == "x" or store.get("y") is None else store.y
            src = values.cpu().numpy()
        out.update(zip(slots.name, map(float, slots.take(src))))
    return out


@dataclass
class ResponseTable:
    """Wells in slot space.

    Attributes:
        meta: one row per well (``record_id`` and :data:`META_FIELDS`).
        columns: ``K`` value names (:mod:`cgc_framework.plugin.slots`, e.g. ``Cells_AreaShape_Area``).
        control: float ``[N, K]`` control state (NaN: slot not measured in this well).
        treated: float ``[N, K]`` measured treated state.
        predicted: float ``[N, K]`` predicted treated state, or ``None``.
    """

    meta: pd.DataFrame
    columns: list[str]
    control: np.ndarray
    treated: np.ndarray
    predicted: np.ndarray | None = None
    skips: SkipLog = field(default_factory=SkipLog)

    @property
    def response(self) -> np.ndarray:
        """Measured response ``treated - control``, ``[N, K]``."""
        return self.treated - self.control

    @property
    def predicted_response(self) -> np.ndarray:
        """Predicted response ``predicted - control``, ``[N, K]``."""
        if self.predicted is None:
            raise ValueError("no predictions in this table")
        return self.predicted - self.control

    def __len__(self) -> int:
        return len(self.meta)

    def select_columns(self, columns: list[str]) -> ResponseTable:
        idx = [self.columns.index(c) for c in columns]
        return ResponseTable(self.meta, list(columns), self.control[:, idx], self.treated[:, idx],
                             None if self.predicted is None else self.predicted[:, idx], self.skips)

    def complete_columns(self) -> list[str]:
        """Columns measured (finite control and treated) in every well."""
        ok = np.isfinite(self.control).all(0) & np.isfinite(self.treated).all(0)
        return [c for c, k in zip(self.columns, ok) if k]


def response_table(ctx: EvaluationContext, graphs: list[HeteroData], records: list[Record],
                   predictions: list[dict[str, np.ndarray]] | None = None,
                   cell_types: list[str] | None = None, skips: SkipLog | None = None) -> ResponseTable:
    """Stack wells into a :class:`ResponseTable` (columns: union over wells, NaN where absent)."""
    schema = ctx.plan.schema
    types = cell_types or list(schema.roles.cell_state)
    xs = [_flatten(schema, g, types, None, "x") for g in graphs]
    ys = [_flatten(schema, g, types, None, "y") for g in graphs]
    ps = None if predictions is None else [_flatten(schema, g, types, p, "p") for g, p in zip(graphs, predictions)]
    columns = list(dict.fromkeys(k for d in xs for k in d))

    def stack(rows: list[dict[str, float]]) -> np.ndarray:
        a = np.full((len(rows), len(columns)), np.nan)
        pos = {c: j for j, c in enumerate(columns)}
        for i, d in enumerate(rows):
            for k, v in d.items():
                a[i, pos[k]] = v
        return a

    meta = pd.DataFrame([{"record_id": r.id, **{f: r.fields.get(f) for f in META_FIELDS}} for r in records],
                        columns=["record_id", *META_FIELDS])
    return ResponseTable(meta, columns, stack(xs), stack(ys), None if ps is None else stack(ps),
                         skips or SkipLog())


def predicted_table(ctx: EvaluationContext, records: list[Record], task_key: str,
                    batch_size: int = 64, max_wells: int | None = None, salt: int = 0) -> ResponseTable:
    """Records -> graphs -> causal-head predictions -> :class:`ResponseTable` (with ``predicted``).

    ``max_wells``: keep a seeded subsample (``default_rng([ctx.seed, salt])``) of the wells whose
    graphs could be built (rejected records never count against it)."""
    graphs, kept, skips = build_experiment_graphs(ctx, records)
    if max_wells is not None and len(graphs) > max_wells:
        idx = np.sort(np.random.default_rng([ctx.seed, salt]).choice(len(graphs), max_wells, replace=False))
        graphs, kept = [graphs[i] for i in idx], [kept[i] for i in idx]
    preds = predict_treated(ctx.model, task_key, graphs, ctx.device, batch_size) if graphs else []
    return response_table(ctx, graphs, kept, preds, skips=skips)


# -- baselines ---------------------------------------------------------------------------------

def _log_dose(d: Any) -> float:
    d = float(d) if d is not None and np.isfinite(float(d)) else 0.0
    return float(np.log10(max(d, 1e-6)))


def _dose_levels(doses: np.ndarray) -> np.ndarray:
    """Distinct training doses (6 significant digits)."""
    return np.unique(np.array([float(f"{d:.6g}") for d in doses]))


def nearest_dose(levels: np.ndarray, dose: float) -> float:
    """The element of ``levels`` nearest to ``dose`` in log10 dose (ties: the lower)."""
    ld = np.array([_log_dose(x) for x in levels])
    return float(levels[int(np.argmin(np.abs(ld - _log_dose(dose))))])


def per_dose_mean(train: ResponseTable, query_doses: np.ndarray) -> np.ndarray:
    """Baseline ``[Q, K]``: the mean training response at the training dose nearest (log10) each
    query dose (NaN-aware over wells)."""
    doses = train.meta.dose_um.astype(float).fillna(0).to_numpy()
    rounded = np.array([float(f"{d:.6g}") for d in doses])
    levels = _dose_levels(doses)
    means = {lv: np.nanmean(train.response[rounded == lv], axis=0) for lv in levels}
    return np.stack([means[nearest_dose(levels, d)] for d in np.asarray(query_doses, float)]) \
        if len(query_doses) else np.zeros((0, len(train.columns)))


def ecfp4(smiles: list[str | None], n_bits: int = 2048) -> np.ndarray:
    """ECFP4 (Morgan radius 2) bit vectors ``[N, n_bits]`` (uint8; zeros for unparsable SMILES)."""
    from rdkit import Chem, DataStructs, RDLogger
    from rdkit.Chem import rdFingerprintGenerator

    RDLogger.DisableLog("rdApp.*")
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s) if isinstance(s, str) else None
        if mol is not None:
            arr = np.zeros((n_bits,), dtype=np.uint8)
            DataStructs.ConvertToNumpyArray(gen.GetFingerprint(mol), arr)
            out[i] = arr
    return out


def tanimoto(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tanimoto similarity ``[len(a), len(b)]`` of bit matrices (0 where both are empty)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def fingerprint_nn(train: ResponseTable, query: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Baseline: for each query well (``smiles``, ``dose_um``), the training compound with the most
    similar ECFP4 (Tanimoto; ties: the smallest compound id) and its mean training response at its
    dose nearest (log10) to the query dose. Returns ``(responses [Q, K], neighbour ids, similarity [Q])``.
    A query compound that is itself in training (e.g. held-out doses) is its own neighbour."""
    tm = train.meta.assign(dose_um=train.meta.dose_um.astype(float).fillna(0))
    comps = sorted(tm.compound_id.astype(str).unique())
    smiles_of = tm.groupby(tm.compound_id.astype(str))["smiles"].first()
    fps_train = ecfp4([smiles_of[c] for c in comps])
    fps_query = ecfp4(list(query.smiles))
    sim = tanimoto(fps_query, fps_train) if len(query) else np.zeros((0, len(comps)))
    resp = train.response
    out = np.zeros((len(query), len(train.columns)))
    nn_ids, nn_sim = [], np.zeros(len(query))
    cid = tm.compound_id.astype(str).to_numpy()
    for i, dose in enumerate(query.dose_um.astype(float).fillna(0).to_numpy()):
        j = int(np.argmax(sim[i]))  # first maximum = smallest id among ties (comps is sorted)
        rows = np.flatnonzero(cid == comps[j])
        d = tm.dose_um.to_numpy()[rows]
        best = nearest_dose(_dose_levels(d), dose)
        rows = rows[np.isclose([float(f"{x:.6g}") for x in d], best)]
        out[i] = np.nanmean(resp[rows], axis=0)
        nn_ids.append(comps[j])
        nn_sim[i] = sim[i, j]
    return out, nn_ids, nn_sim


# -- metrics -----------------------------------------------------------------------------------

def columnwise_metrics(measured: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """MSE (scikit-learn), Pearson and Spearman (SciPy: ``pearsonr`` along axis 0, Spearman as
    ``pearsonr`` of ``rankdata`` — SciPy's own definition, average ranks for ties) of every column of
    ``[N, K]`` arrays; NaN where a column of either is constant or ``N < 2``."""
    import warnings

    from scipy import stats
    from sklearn.metrics import mean_squared_error

    n, k = measured.shape
    out = pd.DataFrame({"mse": mean_squared_error(measured, predicted, multioutput="raw_values") if n and k
                        else np.full(k, np.nan)})
    ok = (n >= 2) & (np.ptp(measured, axis=0) > 0) & (np.ptp(predicted, axis=0) > 0) if n else np.zeros(k, bool)
    for name, transform in (("pearson", lambda a: a), ("spearman", lambda a: stats.rankdata(a, axis=0))):
        col = np.full(k, np.nan)
        if ok.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                col[ok] = stats.pearsonr(transform(measured[:, ok]), transform(predicted[:, ok]), axis=0).statistic
        out[name] = col
    return out


def response_metrics(measured: np.ndarray, predicted: np.ndarray) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """Agreement of predicted and measured responses, ``[N wells, K features]`` each.

    Returns ``(summary, per_feature, per_well)``: ``summary`` has the flattened ``mse``/``pearson``/
    ``spearman`` over all entries and the means over features (``feature_pearson``, ...: each
    feature's correlation across wells) and over wells (``well_pearson``, ...: each well's
    correlation across features), NaN-skipping correlations that are undefined (a constant
    prediction, e.g. the zero-change baseline); ``per_feature``/``per_well`` hold the parts.
    """
    m, p = np.asarray(measured, float), np.asarray(predicted, float)
    summary = regression_metrics(m, p)
    feats, wells = columnwise_metrics(m, p), columnwise_metrics(m.T, p.T)
    for prefix, df in (("feature", feats), ("well", wells)):
        for col in ("pearson", "spearman"):
            v = df[col].to_numpy(float)
            summary[f"{prefix}_{col}"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        summary[f"{prefix}_defined"] = int(np.isfinite(df["pearson"].to_numpy(float)).sum())
    return summary, feats, wells


def evaluate_methods(evaluated: ResponseTable, train: ResponseTable, *, part: str,
                     methods: dict[str, np.ndarray] | None = None) -> tuple[list[dict], list[dict], list[dict], dict]:
    """The model and the three baselines on ``evaluated`` (columns already aligned with ``train``).

    Returns ``(metric rows, per-feature rows, per-well rows, extras)``; ``extras`` holds the
    fingerprint neighbours. ``methods`` adds predicted responses ``[N, K]`` under other names.
    """
    n, k = evaluated.response.shape
    preds: dict[str, np.ndarray] = {}
    if evaluated.predicted is not None:
        preds["model"] = evaluated.predicted_response
    preds["control"] = np.zeros((n, k))
    preds["per_dose_mean"] = per_dose_mean(train, evaluated.meta.dose_um.astype(float).fillna(0).to_numpy())
    fp, nn_ids, nn_sim = fingerprint_nn(train, evaluated.meta)
    preds["fingerprint_nn"] = fp
    preds.update(methods or {})
    rows, feat_rows, well_rows = [], [], []
    for method, pred in preds.items():
        summary, feats, wells = response_metrics(evaluated.response, pred)
        rows += [{"part": part, "method": method, "metric": name, "value": v, "n_wells": n, "n_features": k}
                 for name, v in summary.items()]
        feats.insert(0, "feature", evaluated.columns)
        feat_rows += feats.assign(part=part, method=method).to_dict("records")
        wells.insert(0, "record_id", evaluated.meta.record_id.to_numpy())
        wells = wells.assign(part=part, method=method, compound_id=evaluated.meta.compound_id.to_numpy(),
                             dose_um=evaluated.meta.dose_um.to_numpy())
        if method == "fingerprint_nn":
            wells = wells.assign(neighbour=nn_ids, tanimoto=nn_sim)
        well_rows += wells.to_dict("records")
    return rows, feat_rows, well_rows, {"nn_ids": nn_ids, "nn_sim": nn_sim}


def metrics_markdown(rows: list[dict], parts: list[str]) -> str:
    """Markdown table: method x (part, metric) for the headline metrics."""
    df = pd.DataFrame(rows)
    if df.empty:
        return "(no wells evaluated)"
    shown = ["mse", "pearson", "spearman", "feature_pearson", "well_pearson"]
    head = "| method | " + " | ".join(f"{p}: {m}" for p in parts for m in shown) + " |"
    lines = [head, "|---|" + "---|" * (len(parts) * len(shown))]
    for method in dict.fromkeys(df.method):
        cells = []
        for p in parts:
            for m in shown:
                v = df[(df.method == method) & (df.part == p) & (df.metric == m)].value
                cells.append("-" if v.empty or not np.isfinite(v.iloc[0]) else f"{v.iloc[0]:.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
