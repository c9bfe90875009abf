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
               "well", "cell_line", "split", "source", "time_h", "activity", "active", "compound_key", "fold")


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
                    batch_size: int = 64, *, molecule: str = "real", seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Predicted treated features per graph: ``[{cell node type: float [N_t, x_dim]}]``, in the
    order of ``graphs`` (model in eval mode; ``y`` is never read). ``molecule``: ``real``, or an
    ablation the head supports (``zero``: the compound embedding zeroed; ``shuffle``: permuted over
    the graphs of each batch, seeded by ``seed``)."""
    model.eval()
    head = model.tasks[task_key]
    out: list[dict[str, np.ndarray]] = []
    gen = torch.Generator().manual_seed(int(seed))
    for batch in DataLoader(graphs, batch_size=batch_size):
        batch = batch.to(device)
        preds = head.predict(batch, model.encoder) if molecule == "real" else \
            head.predict(batch, model.encoder, molecule=molecule, generator=gen)
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
    ablated: dict[str, np.ndarray] = field(default_factory=dict)

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
                             None if self.predicted is None else self.predicted[:, idx], self.skips,
                             {k: v[:, idx] for k, v in self.ablated.items()})

    def complete_columns(self) -> list[str]:
        """Columns measured (finite control and treated) in every well."""
        ok = np.isfinite(self.control).all(0) & np.isfinite(self.treated).all(0)
        return [c for c, k in zip(self.columns, ok) if k]

    def covered_columns(self) -> list[str]:
        """Columns measured (finite control and treated) in at least one well."""
        ok = (np.isfinite(self.control) & np.isfinite(self.treated)).any(0) if len(self) else \
            np.zeros(len(self.columns), bool)
        return [c for c, k in zip(self.columns, ok) if k]

    def align(self, columns: list[str]) -> ResponseTable:
        """The table on ``columns`` (NaN for a column it does not have)."""
        pos = {c: j for j, c in enumerate(self.columns)}

        def take(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            out = np.full((len(self.meta), len(columns)), np.nan)
            for k, c in enumerate(columns):
                if c in pos:
                    out[:, k] = a[:, pos[c]]
            return out

        return ResponseTable(self.meta, list(columns), take(self.control), take(self.treated),  # type: ignore[arg-type]
                             take(self.predicted), self.skips,
                             {k: take(v) for k, v in self.ablated.items()})  # type: ignore[misc]

    def subset(self, rows: np.ndarray) -> ResponseTable:
        """The wells ``rows`` (indices or a boolean mask)."""
        idx = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, int)
        return ResponseTable(self.meta.iloc[idx].reset_index(drop=True), self.columns, self.control[idx],
                             self.treated[idx], None if self.predicted is None else self.predicted[idx], self.skips,
                             {k: v[idx] for k, v in self.ablated.items()})


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
                    batch_size: int = 64, max_wells: int | None = None, salt: int = 0,
                    ablations: tuple[str, ...] = ()) -> ResponseTable:
    """Records -> graphs -> causal-head predictions -> :class:`ResponseTable` (with ``predicted``).

    ``max_wells``: keep a seeded subsample (``default_rng([ctx.seed, salt])``) of the wells whose
    graphs could be built (rejected records never count against it). ``ablations``: molecule
    ablations of the head (``zero``, ``shuffle``) predicted too, in ``table.ablated[name]``
    (``[N, K]`` predicted treated state; skipped when the head does not support them)."""
    graphs, kept, skips = build_experiment_graphs(ctx, records)
    if max_wells is not None and len(graphs) > max_wells:
        idx = np.sort(np.random.default_rng([ctx.seed, salt]).choice(len(graphs), max_wells, replace=False))
        graphs, kept = [graphs[i] for i in idx], [kept[i] for i in idx]
    preds = predict_treated(ctx.model, task_key, graphs, ctx.device, batch_size) if graphs else []
    table = response_table(ctx, graphs, kept, preds, skips=skips)
    table.ablated = {}
    head = ctx.model.tasks[task_key]
    import inspect

    if graphs and "molecule" in inspect.signature(head.predict).parameters:
        for name in ablations:
            ab = predict_treated(ctx.model, task_key, graphs, ctx.device, batch_size, molecule=name, seed=ctx.seed)
            table.ablated[name] = response_table(ctx, graphs, kept, ab).predicted
    return table


# -- baselines ---------------------------------------------------------------------------------

def _log_dose(d: Any) -> float:
    d = float(d) if d is not None and np.isfinite(float(d)) else 0.0
    return float(np.log10(max(d, 1e-6)))


def _dose_levels(doses: np.ndarray) -> np.ndarray:
    """Distinct training doses (6 significant digits)."""
    return np.unique(np.array([float(f"{d:.6g}") for d in doses]))


def _rounded(doses: Any) -> np.ndarray:
    return np.array([float(f"{float(d):.6g}") for d in doses])


def nearest_dose(levels: np.ndarray, dose: float) -> float:
    """The element of ``levels`` nearest to ``dose`` in log10 dose (ties: the lower)."""
    ld = np.array([_log_dose(x) for x in levels])
    return float(levels[int(np.argmin(np.abs(ld - _log_dose(dose))))])


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=0)


def per_dose_mean(train: ResponseTable, query_doses: np.ndarray) -> np.ndarray:
    """Baseline ``[Q, K]``: the mean training response at the training dose nearest (log10) each
    query dose (NaN-aware over wells)."""
    doses = train.meta.dose_um.astype(float).fillna(0).to_numpy()
    rounded = _rounded(doses)
    levels = _dose_levels(doses)
    means = {lv: _nanmean_rows(train.response[rounded == lv]) for lv in levels}
    return np.stack([means[nearest_dose(levels, d)] for d in np.asarray(query_doses, float)]) \
        if len(query_doses) else np.zeros((0, len(train.columns)))


def _lines(meta: pd.DataFrame) -> np.ndarray:
    if "cell_line" not in meta:
        return np.array([""] * len(meta), dtype=object)
    return meta.cell_line.fillna("").astype(str).to_numpy()


def per_dose_mean_by_line(train: ResponseTable, query: pd.DataFrame) -> np.ndarray:
    """Baseline ``[Q, K]``: per cell line, the mean training response at the training dose nearest
    (log10) the query dose (:func:`per_dose_mean` within the query's cell line; all lines when the
    line has no training well)."""
    t_lines, q_lines = _lines(train.meta), _lines(query)
    doses = query.dose_um.astype(float).fillna(0).to_numpy()
    out = np.zeros((len(query), len(train.columns)))
    for line in dict.fromkeys(q_lines):
        rows = np.flatnonzero(q_lines == line)
        sub = train.subset(t_lines == line) if (t_lines == line).any() else train
        out[rows] = per_dose_mean(sub, doses[rows])
    return out


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


def molecule_key(meta: pd.DataFrame) -> np.ndarray:
    """Per row, the molecule identity: InChIKey14 of the SMILES (else the compound id)."""
    from .common import inchikey14

    ids = meta.compound_id.astype(str).to_numpy()
    smiles = meta.smiles.to_numpy() if "smiles" in meta else [None] * len(meta)
    return np.array([inchikey14(s) or c for s, c in zip(smiles, ids)], dtype=object)


def fingerprint_nn(train: ResponseTable, query: pd.DataFrame, *, exclude_same: bool = False,
                   by_line: bool = False) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Baseline: for each query well (``smiles``, ``dose_um``), the training compound with the most
    similar ECFP4 (Tanimoto; ties: the smallest compound id) and its mean training response at its
    dose nearest (log10) to the query dose. Returns ``(responses [Q, K], neighbour ids, similarity [Q])``.

    ``exclude_same``: training wells of the query's own molecule (same InChIKey14) are never its
    neighbour (held-out doses: the nearest *other* compound). ``by_line``: neighbours are searched
    among the compounds measured in the query's cell line (all compounds when none is)."""
    tm = train.meta.assign(dose_um=train.meta.dose_um.astype(float).fillna(0))
    cid = tm.compound_id.astype(str).to_numpy()
    comps = sorted(set(cid))
    smiles_of = tm.groupby(tm.compound_id.astype(str))["smiles"].first()
    fps_train = ecfp4([smiles_of[c] for c in comps])
    fps_query = ecfp4(list(query.smiles))
    sim = tanimoto(fps_query, fps_train) if len(query) else np.zeros((0, len(comps)))
    if exclude_same:
        tkey = dict(zip(cid, molecule_key(tm)))
        qkey = molecule_key(query)
        same = np.array([[tkey[c] == q for c in comps] for q in qkey], dtype=bool).reshape(len(query), len(comps))
        sim = np.where(same, -1.0, sim)
    t_lines, q_lines = _lines(tm), _lines(query)
    line_comps = {line: {c for c, ln in zip(cid, t_lines) if ln == line} for line in set(t_lines)}
    resp = train.response
    out = np.zeros((len(query), len(train.columns)))
    nn_ids, nn_sim = [], np.zeros(len(query))
    doses_t = tm.dose_um.to_numpy()
    for i, dose in enumerate(query.dose_um.astype(float).fillna(0).to_numpy()):
        s = sim[i]
        allowed = line_comps.get(q_lines[i]) if by_line else None
        if allowed:
            s = np.where([c in allowed for c in comps], s, -2.0)
        j = int(np.argmax(s))  # first maximum = smallest id among ties (comps is sorted)
        rows = np.flatnonzero(cid == comps[j])
        if allowed and (t_lines[rows] == q_lines[i]).any():
            rows = rows[t_lines[rows] == q_lines[i]]
        d = doses_t[rows]
        best = nearest_dose(_dose_levels(d), dose)
        rows = rows[np.isclose(_rounded(d), best)]
        out[i] = _nanmean_rows(resp[rows])
        nn_ids.append(comps[j])
        nn_sim[i] = max(sim[i, j], 0.0) if exclude_same else sim[i, j]
    return out, nn_ids, nn_sim


def _ridge_features(meta: pd.DataFrame, lines: list[str], n_bits: int = 1024) -> np.ndarray:
    fp = ecfp4(list(meta.smiles), n_bits).astype(np.float32)
    ld = np.array([_log_dose(d) for d in meta.dose_um.astype(float).fillna(0)], dtype=np.float32)[:, None]
    q_lines = _lines(meta)
    onehot = np.stack([(q_lines == ln).astype(np.float32) for ln in lines], axis=1) if lines else \
        np.zeros((len(meta), 0), np.float32)
    return np.concatenate([fp, fp * ld, ld, ld ** 2, onehot, onehot * ld], axis=1)


def ecfp_ridge(train: ResponseTable, query: pd.DataFrame, *, alphas: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0),
               inner_folds: int = 3) -> tuple[np.ndarray, float]:
    """Baseline: multi-output ridge regression of the response on ECFP4 (1024 bits), ECFP4 x log10 dose,
    log10 dose and its square, and the cell line (one-hot, and x log10 dose). Missing training
    responses are filled with the column's training mean. The penalty is chosen from ``alphas`` by
    an inner cross-validation over *training* compounds (GroupKFold on the molecule), never on the
    query. Returns ``(responses [Q, K], alpha)``."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold

    y = train.response.copy()
    col_mean = np.where(np.isfinite(_nanmean_rows(y)), _nanmean_rows(y), 0.0)
    y = np.where(np.isfinite(y), y, col_mean)
    lines = sorted(set(_lines(train.meta)) | set(_lines(query)))
    x = _ridge_features(train.meta, lines)
    groups = molecule_key(train.meta)
    n_groups = len(set(groups))
    best, alpha = np.inf, alphas[len(alphas) // 2]
    if n_groups >= inner_folds:
        for a in alphas:
            err = 0.0
            for tr, va in GroupKFold(inner_folds).split(x, y, groups):
                m = Ridge(alpha=a).fit(x[tr], y[tr])
                err += float(np.mean((m.predict(x[va]) - y[va]) ** 2))
            if err < best:
                best, alpha = err, a
    model = Ridge(alpha=alpha).fit(x, y)
    return (model.predict(_ridge_features(query, lines)) if len(query) else np.zeros((0, y.shape[1]))), alpha


def same_compound_interpolation(train: ResponseTable, query: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Baseline for held-out doses: the same molecule's (same cell line's) mean training responses at
    its nearest lower and higher training doses, linearly interpolated in log10 dose; only one side
    measured: that side's response. Returns ``(responses [Q, K], covered [Q] bool)``; a query whose
    molecule has no training well is not covered (its row is 0: no change)."""
    tm = train.meta.assign(dose_um=train.meta.dose_um.astype(float).fillna(0))
    tkey, qkey = molecule_key(tm), molecule_key(query)
    t_lines, q_lines = _lines(tm), _lines(query)
    doses_t = _rounded(tm.dose_um)
    resp = train.response
    out = np.zeros((len(query), len(train.columns)))
    covered = np.zeros(len(query), bool)
    for i, dose in enumerate(query.dose_um.astype(float).fillna(0).to_numpy()):
        rows = np.flatnonzero(tkey == qkey[i])
        if (t_lines[rows] == q_lines[i]).any():
            rows = rows[t_lines[rows] == q_lines[i]]
        if not rows.size:
            continue
        levels = np.unique(doses_t[rows])
        ld, lq = np.log10(np.maximum(levels, 1e-6)), _log_dose(dose)
        lower, upper = levels[ld <= lq], levels[ld >= lq]

        def mean_at(level: float, rows: np.ndarray = rows) -> np.ndarray:
            return _nanmean_rows(resp[rows[np.isclose(doses_t[rows], level)]])

        if lower.size and upper.size:
            lo, hi = lower.max(), upper.min()
            if np.isclose(lo, hi):
                out[i] = mean_at(lo)
            else:
                w = (lq - np.log10(lo)) / (np.log10(hi) - np.log10(lo))
                out[i] = (1 - w) * mean_at(lo) + w * mean_at(hi)
        else:
            out[i] = mean_at(lower.max() if lower.size else upper.min())
        covered[i] = True
    return out, covered


# -- metrics -----------------------------------------------------------------------------------

def _masked_pearson(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per column, Pearson r of ``a`` and ``b`` over the rows of ``mask``; NaN where fewer than two
    rows or either side is constant there."""
    n = mask.sum(0).astype(float)
    a0, b0 = np.where(mask, a, 0.0), np.where(mask, b, 0.0)
    with np.errstate(all="ignore"):
        ma, mb = a0.sum(0) / n, b0.sum(0) / n
        da, db = np.where(mask, a - ma, 0.0), np.where(mask, b - mb, 0.0)
        saa, sbb = (da * da).sum(0), (db * db).sum(0)
        r = (da * db).sum(0) / np.sqrt(saa * sbb)
    spread_a = np.where(mask, a, np.nan)
    spread_b = np.where(mask, b, np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            const = (np.nanmax(spread_a, 0) - np.nanmin(spread_a, 0) <= 0) | \
                (np.nanmax(spread_b, 0) - np.nanmin(spread_b, 0) <= 0)
    r = np.clip(r, -1.0, 1.0)
    r[(n < 2) | const | ~np.isfinite(r)] = np.nan
    return r


def columnwise_metrics(measured: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """MSE, Pearson and Spearman (SciPy's definition: Pearson of the average ranks) of every column of
    ``[N, K]`` arrays over the rows where both are finite; NaN where a column of either is constant
    there or fewer than two rows are."""
    from scipy import stats

    m, p = np.asarray(measured, float), np.asarray(predicted, float)
    n, k = m.shape
    mask = np.isfinite(m) & np.isfinite(p)
    cnt = mask.sum(0)
    with np.errstate(all="ignore"):
        mse = np.where(cnt > 0, np.where(mask, (m - p) ** 2, 0.0).sum(0) / cnt, np.nan)
    out = pd.DataFrame({"mse": mse if n and k else np.full(k, np.nan)})
    out["pearson"] = _masked_pearson(m, p, mask) if n else np.full(k, np.nan)
    if mask.all():
        rm, rp = stats.rankdata(m, axis=0), stats.rankdata(p, axis=0)
    else:
        rm, rp = np.full_like(m, np.nan), np.full_like(p, np.nan)
        for j in range(k):
            rows = mask[:, j]
            if rows.any():
                rm[rows, j] = stats.rankdata(m[rows, j])
                rp[rows, j] = stats.rankdata(p[rows, j])
    out["spearman"] = _masked_pearson(rm, rp, mask) if n else np.full(k, np.nan)
    return out


def feature_weights(train: ResponseTable, columns: list[str] | None = None) -> np.ndarray:
    """``[K]`` weights toward the features that respond: each column's variance of the training
    response across wells, normalised to mean 1 (a column without training spread weighs 0)."""
    t = train if columns is None else train.align(columns)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            v = np.nanvar(t.response, axis=0)
    v = np.where(np.isfinite(v), v, 0.0)
    return v / v.mean() if v.mean() > 0 else np.ones_like(v)


def response_metrics(measured: np.ndarray, predicted: np.ndarray, weights: np.ndarray | None = None
                     ) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """Agreement of predicted and measured responses, ``[N wells, K features]`` each (entries where
    the measurement is NaN are left out; a NaN prediction of a measured entry counts as no change).

    Returns ``(summary, per_feature, per_well)``: ``summary`` has the flattened ``mse``/``pearson``/
    ``spearman`` over all entries, ``wmse`` (``weights`` given: the MSE with each feature weighted by
    ``weights``, e.g. :func:`feature_weights`, so that a prediction of no change cannot win by
    averaging over features that never respond) and the means over features (``feature_pearson``,
    ...: each feature's correlation across wells) and over wells (``well_pearson``, ...: each well's
    correlation across features), NaN-skipping correlations that are undefined (a constant
    prediction, e.g. the zero-change baseline); ``per_feature``/``per_well`` hold the parts.
    """
    m, p = np.asarray(measured, float), np.asarray(predicted, float)
    ok = np.isfinite(m)
    p = np.where(ok & ~np.isfinite(p), 0.0, p)
    summary = regression_metrics(m[ok], p[ok]) if ok.any() else \
        {"mse": float("nan"), "pearson": float("nan"), "spearman": float("nan")}
    if weights is not None:
        w = np.broadcast_to(np.asarray(weights, float)[None, :], m.shape)
        wsum = float(w[ok].sum())
        summary["wmse"] = float((w[ok] * (m[ok] - p[ok]) ** 2).sum() / wsum) if wsum > 0 else float("nan")
    feats, wells = columnwise_metrics(m, p), columnwise_metrics(m.T, p.T)
    for prefix, df in (("feature", feats), ("well", wells)):
        for col in ("pearson", "spearman"):
            v = df[col].to_numpy(float)
            summary[f"{prefix}_{col}"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        summary[f"{prefix}_defined"] = int(np.isfinite(df["pearson"].to_numpy(float)).sum())
    return summary, feats, wells


def well_errors(measured: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per well: the weighted squared error (``weights`` per feature) and the Pearson r across features."""
    m, p = np.asarray(measured, float), np.asarray(predicted, float)
    ok = np.isfinite(m)
    p = np.where(ok & ~np.isfinite(p), 0.0, p)
    w = np.where(ok, np.asarray(weights, float)[None, :], 0.0)
    with np.errstate(all="ignore"):
        wse = (w * np.where(ok, (m - p) ** 2, 0.0)).sum(1) / w.sum(1)
    r = _masked_pearson(m.T, p.T, ok.T)
    return wse, r


BASELINES = ("control", "per_dose_mean", "fingerprint_nn", "ecfp_ridge")
"""Baselines every response evaluation scores beside the model (``evaluate_methods``)."""

ABLATIONS = {"zero": "model_no_compound", "shuffle": "model_shuffled_compound"}
"""Molecule ablations of the model: the head with the compound embedding zeroed / shuffled."""


def evaluate_methods(evaluated: ResponseTable, train: ResponseTable, *, part: str,
                     methods: dict[str, np.ndarray] | None = None,
                     baselines: tuple[str, ...] = BASELINES, weights: np.ndarray | None = None,
                     exclude_same: bool = True) -> tuple[list[dict], list[dict], list[dict], dict]:
    """The model (and its molecule ablations) and the baselines on ``evaluated`` (columns already
    aligned with ``train``).

    Baselines: ``control`` (no change), ``per_dose_mean`` (per cell line), ``fingerprint_nn`` (the
    most Tanimoto-similar *other* training compound, ``exclude_same``, in the same cell line),
    ``ecfp_ridge`` (:func:`ecfp_ridge`) and, when asked, ``same_compound_interpolation``.
    Metrics on every well (``wells: all``) and on the active ones (``wells: active``: response above
    the 95th percentile of the plate's DMSO wells, when the records say). Returns ``(metric rows,
    per-feature rows, per-well rows, extras)``; ``extras`` holds the fingerprint neighbours, the
    ridge penalty, the interpolation coverage and the per-well errors of every method.
    """
    n, k = evaluated.response.shape
    w = feature_weights(train) if weights is None else weights
    preds: dict[str, np.ndarray] = {}
    if evaluated.predicted is not None:
        preds["model"] = evaluated.predicted_response
        for ab, name in ABLATIONS.items():
            if ab in evaluated.ablated:
                preds[name] = evaluated.ablated[ab] - evaluated.control
    extras: dict[str, Any] = {}
    nn_ids: list[str] = []
    nn_sim = np.zeros(n)
    for b in baselines:
        if b == "control":
            preds["control"] = np.zeros((n, k))
        elif b == "per_dose_mean":
            preds["per_dose_mean"] = per_dose_mean_by_line(train, evaluated.meta)
        elif b == "fingerprint_nn":
            fp, nn_ids, nn_sim = fingerprint_nn(train, evaluated.meta, exclude_same=exclude_same, by_line=True)
            preds["fingerprint_nn"] = fp
            extras.update(nn_ids=nn_ids, nn_sim=nn_sim)
        elif b == "ecfp_ridge":
            preds["ecfp_ridge"], extras["ridge_alpha"] = ecfp_ridge(train, evaluated.meta)
        elif b == "same_compound_interpolation":
            preds[b], extras["interpolation_covered"] = same_compound_interpolation(train, evaluated.meta)
        else:
            raise ValueError(f"unknown baseline {b!r}")
    preds.update(methods or {})
    active = evaluated.meta.get("active")
    active_rows = np.asarray(active.fillna(False).astype(bool)) if active is not None else np.zeros(n, bool)
    rows, feat_rows, well_rows = [], [], []
    extras["well_errors"] = {}
    for method, pred in preds.items():
        summary, feats, wells = response_metrics(evaluated.response, pred, w)
        rows += [{"part": part, "wells": "all", "method": method, "metric": name, "value": v, "n_wells": n,
                  "n_features": k} for name, v in summary.items()]
        if active_rows.any():
            sub, _, _ = response_metrics(evaluated.response[active_rows], pred[active_rows], w)
            rows += [{"part": part, "wells": "active", "method": method, "metric": name, "value": v,
                      "n_wells": int(active_rows.sum()), "n_features": k} for name, v in sub.items()]
        feats.insert(0, "feature", evaluated.columns)
        feat_rows += feats.assign(part=part, method=method).to_dict("records")
        wse, _ = well_errors(evaluated.response, pred, w)
        extras["well_errors"][method] = (wse, wells["pearson"].to_numpy(float))
        wells.insert(0, "record_id", evaluated.meta.record_id.to_numpy())
        wells = wells.assign(part=part, method=method, wmse=wse, compound_id=evaluated.meta.compound_id.to_numpy(),
                             dose_um=evaluated.meta.dose_um.to_numpy(), active=active_rows)
        if method == "fingerprint_nn":
            wells = wells.assign(neighbour=nn_ids, tanimoto=nn_sim)
        well_rows += wells.to_dict("records")
    return rows, feat_rows, well_rows, extras


def paired_verdicts(evaluated: ResponseTable, extras: dict, *, part: str, model: str = "model") -> list[dict]:
    """Per baseline: does ``model`` beat it on the evaluated wells? Per-compound means of the per-well
    weighted squared error and the per-well Pearson r, compared by a one-sided Wilcoxon signed-rank test
    over compounds (model better), beside the flattened metrics' point difference."""
    from scipy import stats

    errors = extras.get("well_errors", {})
    if model not in errors:
        return []
    keys = molecule_key(evaluated.meta)
    comps = list(dict.fromkeys(keys))

    def per_compound(v: np.ndarray) -> np.ndarray:
        return np.array([np.nanmean(v[keys == c]) if np.isfinite(v[keys == c]).any() else np.nan for c in comps])

    m_wse, m_r = (per_compound(a) for a in errors[model])
    out = []
    for base, (b_wse, b_r) in errors.items():
        if base == model:
            continue
        for metric, mv, bv, sign in (("wmse", m_wse, per_compound(b_wse), -1.0),
                                     ("well_pearson", m_r, per_compound(b_r), 1.0)):
            ok = np.isfinite(mv) & np.isfinite(bv)
            diff = sign * (mv[ok] - bv[ok])  # > 0: the model is better
            p = float("nan")
            if ok.sum() >= 3 and np.any(diff != 0):
                p = float(stats.wilcoxon(diff, alternative="greater").pvalue)
            out.append({"part": part, "baseline": base, "metric": metric, "model": float(np.nanmean(mv[ok])) if ok.any()
                        else float("nan"), "baseline_value": float(np.nanmean(bv[ok])) if ok.any() else float("nan"),
                        "n_compounds": int(ok.sum()), "model_better": bool(ok.any() and np.mean(diff) > 0),
                        "p_value": p})
    return out


def verdict_sentences(verdicts: list[dict], metrics: pd.DataFrame, part: str) -> list[str]:
    """One line per baseline: whether the model beat it on ``part`` (flattened Pearson, weighted MSE,
    per-compound paired test). Lines start with ``**Verdict**`` (collected at the top of ``summary.md``)."""
    if not verdicts:
        return []
    m = metrics[(metrics.part == part) & (metrics.wells == "all")] if "wells" in metrics else metrics
    val = m.set_index(["method", "metric"]).value if not m.empty else pd.Series(dtype=float)

    def get(method: str, metric: str) -> float:
        return float(val.get((method, metric), np.nan))

    lines = []
    v = pd.DataFrame(verdicts)
    v = v[v.part == part]
    for base in dict.fromkeys(v.baseline):
        rows = v[v.baseline == base].set_index("metric")
        pr_m, pr_b = get("model", "pearson"), get(base, "pearson")
        w_m, w_b = get("model", "wmse"), get(base, "wmse")
        beat_p = np.isfinite(pr_m) and (not np.isfinite(pr_b) or pr_m > pr_b)
        beat_w = np.isfinite(w_m) and np.isfinite(w_b) and w_m < w_b
        p_w = rows.p_value.get("wmse", np.nan)
        both = beat_p and beat_w
        word = "beat" if both else "did not beat"
        lines.append(f"**Verdict** ({part}): the model {word} `{base}` — Pearson {pr_m:.3f} vs "
                     f"{'-' if not np.isfinite(pr_b) else f'{pr_b:.3f}'}, weighted MSE {w_m:.3f} vs {w_b:.3f}"
                     f" (paired over {int(rows.n_compounds.get('wmse', 0))} compounds, one-sided Wilcoxon "
                     f"p = {p_w:.3g} for the weighted MSE)"
                     + ("" if both else f"; it is {'better' if beat_p else 'not better'} on Pearson and "
                        f"{'better' if beat_w else 'not better'} on weighted MSE") + ".")
    return lines


def metrics_markdown(rows: list[dict], parts: list[str], wells: str = "all") -> str:
    """Markdown table: method x (part, metric) for the headline metrics."""
    df = pd.DataFrame(rows)
    if df.empty:
        return "(no wells evaluated)"
    if "wells" in df:
        df = df[df.wells == wells]
    shown = ["mse", "wmse", "pearson", "feature_pearson", "well_pearson"]
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
