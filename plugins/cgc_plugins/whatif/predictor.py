"""In-silico what-if: a compound at several doses -> the predicted response of a cell (``cgc-predict``).

::

    from cgc_plugins.whatif.predict import predict_response
    pred = predict_response("runs/default-.../checkpoints/final.pt", ["CC(=O)Oc1ccccc1C(=O)O"],
                            [0.1, 1, 10])                       # context: the data's first plate
    pred.changes            # tidy: one row per (SMILES, dose, measured cell-node feature)
    pred.dose_response      # one row per (SMILES, dose): L2 / RMS of the predicted change
    pred.nearest            # per (SMILES, dose): the known compounds with the most similar response
    pred.write("whatif/")   # CSV, Parquet, JSON, PNG plots and summary.md

How a prediction is made, exactly as pretraining builds and trains on experiment graphs:

1. The run's configuration (``<run>/config.resolved.yaml`` next to ``<run>/checkpoints/``, or
   ``config=``) is composed with the installed plugins into the same :class:`~cgc_framework.plugin.Plan`
   (dataset, graph builders, edge sources). The dataset is read once (``data.max_records`` honoured)
   to list the **cell contexts** (one per ``plate`` record field, with its ``cell_line``) and the
   **known compounds** (one per ``compound_id`` with a SMILES, with ``compound_name``, ``moa``,
   ``target``).
2. The context's control state: the record fields of the plate's first record with the compound
   fields (``smiles``, ``compound_id``, ``compound_name``, ``inchikey``, ``moa``, ``target``)
   replaced by the query's and ``dose_um`` set to the query dose go through
   :meth:`~cgc_framework.plugin.Plan.build_record` (every modality's builder + every edge source,
   conformed and validated). The cell node types' control features ``x`` (and the control-state
   attributes of edges between cell nodes) are then set to the element-wise (lower) median over all
   records of the plate, which is the plate's control summary itself when the dataset gives every
   record the same control state (``control_summary: median``), and the treated features ``y`` of
   the template well are removed, so nothing of that well but its plate's control reaches the model.
   The graph attribute named by the task's ``dose_attr`` (``dose_um``) is set to the query dose.
3. The pretrained response-predicting (causal) head predicts the treated state of every cell-state
   node (:func:`cgc_framework.plugin.response_head`, ``head.predict(batch, encoder)``, eval mode, no
   gradients); the **change** is ``predicted - control`` on every *measured* value slot (a
   continuous feature's columns whose flags, a feature declared ``flags_for`` it, are 1 in the
   control state; the flags themselves are not features).

Features are named as the response evaluators name them, from what the cell builder declared in the
schema (:mod:`cgc_framework.plugin.slots`): column names of the value features, class names of the
categorical features, and the node type's ``value_name`` format. For the cell profile graph that is
``<Compartment>_<slot>`` for compartment nodes (``Nuclei_AreaShape_Area``) and
``<Compartment>_<slot>_<Channel>`` for channel nodes (``Nuclei_Intensity_MeanIntensity_DNA``),
CellProfiler's own naming. Values are in the units of the features: for the Cell Painting data,
robust z-scores relative to the plate's DMSO wells.

**Response magnitude** per (SMILES, dose): ``l2`` = the L2 norm of the change over every measured
feature, ``rms`` = ``l2 / sqrt(n_features)``, ``max_abs``, and ``l2_<label column>_<label>`` per
group (e.g. ``l2_compartment_Nuclei``, ``l2_channel_Mito``).

**Nearest known compounds** per (SMILES, dose): every known compound is predicted in the same
context at the same dose, and ranked by the cosine similarity of its predicted change vector to the
query's (``cosine_predicted``, ties broken by ``compound_id``; ``rank_by="centered"`` ranks by
``cosine_centered``, the cosine after subtracting the mean predicted change of all known compounds
at that dose, which removes the response every compound shares). ``cosine_measured`` is the cosine
to the compound's *measured* change (treated - control of its wells on the context plate, at its
measured dose closest to the query dose in log10, replicate wells averaged; ``measured_dose_um``),
NaN when the compound has no well on that plate.

**Warnings** (printed by ``cgc predict``, recorded in ``prediction.json`` and ``summary.md``): the
causal head untrained at this checkpoint; doses outside the training doses (continuous encoding) or
outside the dose anchors (anchor encoding); and, from the checkpoint's own held-out evaluation
(``<run>/evaluations/*/verdict.csv``), that the model did not beat the per-dose mean there — or that
the run recorded no such evaluation: the predictions then carry no evidence beyond the average
response at each dose (:meth:`WhatIf.evidence_warnings`).

Nothing here is random: the same checkpoint, data and inputs give identical numbers and rankings.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from cgc_framework import load_pretrained
from cgc_framework.plugin import (
    Pretrained,
    Record,
    RecordError,
    RecordRejected,
    ResponsePredictor,
    SkipLog,
    ValueSlots,
    response_head,
    value_slots,
)

from .prediction import (
    COMPOUND_FIELDS,
    RANK_BY,
    CellContext,
    Prediction,
    PredictionError,
    UnknownContextError,
)

# -- the predictor ------------------------------------------------------------------------------


class WhatIf:
    """A pretrained model with its data's contexts and known compounds, ready to answer what-ifs.

    Loading and reading the data happen once; :meth:`predict` can then be called many times
    (reference predictions are cached per (context, dose)).

    Args:
        checkpoint: a cgc-framework checkpoint, or an already loaded :class:`Pretrained`.
        config: the run's ``config.resolved.yaml`` / ``registry.yaml`` (default: the one in the
            checkpoint's run directory, ``<run>/checkpoints/<file>.pt`` -> ``<run>/config.resolved.yaml``).
        task: key of the causal task in the checkpoint (default: the one task whose component is
            ``causal``, else the one task with a ``predict`` method).
        extra_plugins: plugin objects to register besides the installed ones.
        progress: show progress bars for the longer steps.
        batch_size: experiment graphs per forward pass.
        device: where the model runs (``"cpu"``, ``"cuda"``).
    """

    def __init__(self, checkpoint: str | Path | Pretrained, *, config: str | Path | None = None,
                 task: str | None = None, extra_plugins: tuple[Any, ...] = (), progress: bool = False,
                 batch_size: int = 64, device: str | torch.device = "cpu"):
        from cgc_framework.api import plan_run

        self.pre = checkpoint if isinstance(checkpoint, Pretrained) \
            else load_pretrained(checkpoint, extra_plugins=extra_plugins, device=device)
        self.progress = progress
        self.batch_size = batch_size
        run_dir = self.pre.checkpoint.resolve().parent.parent
        cfg_path = Path(config) if config is not None else run_dir / "config.resolved.yaml"
        if not cfg_path.is_file():
            raise PredictionError(
                f"cannot find the configuration the checkpoint was trained with ({cfg_path} does not exist); "
                f"pass config=PATH (cgc-predict --config PATH) naming the run's config.resolved.yaml or "
                f"registry.yaml")
        self.config_path = cfg_path
        self.plan = plan_run(cfg_path, registry=self.pre.registry)
        self.task_key, self.task = self._causal_task(task)
        self.molecule_modality, self.cell_modality = self._modalities()
        self.warnings: list[str] = self._checkpoint_warnings() + self.evidence_warnings()
        self.training_doses: list[float] = []
        self.contexts, self.compounds = self._scan()
        self._context_cache: dict[str, dict[str, Any]] = {}
        self._reference_cache: dict[tuple[str, float], tuple[list[str], np.ndarray]] = {}

    # -- setup ---------------------------------------------------------------------------------

    def _causal_task(self, key: str | None) -> tuple[str, ResponsePredictor]:
        try:
            return response_head(self.pre.model, key)
        except ValueError as exc:
            raise PredictionError(f"{self.pre.checkpoint}: cannot choose the causal task head: {exc}") from None

    def _modalities(self) -> tuple[str, str]:
        """The names of the molecule and the cell modality: those whose builders declare the
        causal head's molecule and cell node types (by role when the head does not say)."""
        roles = self.plan.roles
        mol_types = set(getattr(self.task, "molecule_types", roles.molecule))
        cell_types = set(self.cell_types)
        mol = cell = None
        for name, mp in self.plan.modalities.items():
            types = set(mp.builder.schema().node_types)
            if mol is None and types & mol_types:
                mol = name
            if cell is None and types & cell_types:
                cell = name
        if mol is None or cell is None:
            raise PredictionError(f"{self.config_path}: the configuration needs a molecule modality (node types "
                                  f"{sorted(mol_types)}) and a cell modality (node types {sorted(cell_types)}); "
                                  f"modalities: {', '.join(self.plan.modalities)}")
        return mol, cell

    @property
    def cell_types(self) -> list[str]:
        """The cell-state node types the causal head predicts."""
        return list(getattr(self.task, "cell_types", self.pre.schema.roles.cell_state))

    @property
    def dose_attr(self) -> str:
        return self.task.dose_attr

    @property
    def dose_anchors_um(self) -> list[float] | None:
        """The anchor doses of an anchor-interpolated dose encoding; ``None`` for a continuous one."""
        params = getattr(self.task, "params", None)
        if getattr(params, "dose_encoding", "anchors") != "anchors":
            return None
        anchors = getattr(params, "dose_anchors_um", None)
        return [float(a) for a in anchors] if anchors else None

    def evidence_warnings(self) -> list[str]:
        """Warnings from the checkpoint's own held-out evaluation (``<run>/evaluations/*/verdict.csv``,
        written by ``causal_consistency`` / ``ood_response``): none when the model beat the per-dose mean
        on a held-out part (weighted MSE and well Pearson, per-compound means); a warning when it did
        not, or when the run recorded no such evaluation — its predictions then carry no evidence of
        being more than the average response at the dose."""
        run_dir = self.pre.checkpoint.resolve().parent.parent
        files = sorted((run_dir / "evaluations").glob("*/verdict.csv"))
        rows = []
        for f in files:
            try:
                df = pd.read_csv(f)
            except Exception:  # noqa: BLE001 - an unreadable table is no evidence
                continue
            if {"baseline", "metric", "model_better"} <= set(df.columns):
                rows.append(df.assign(evaluation=f.parent.name))
        table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
        base = table[table.baseline == "per_dose_mean"] if not table.empty else table
        if base.empty:
            return [f"the checkpoint's run ({run_dir}) recorded no held-out evaluation against the per-dose mean "
                    f"(no evaluations/*/verdict.csv from causal_consistency or ood_response): these predictions "
                    f"carry no evidence of being better than the average response at each dose"]
        out = []
        for (ev, part), df in base.groupby(["evaluation", "part"], sort=False):
            if not df.model_better.astype(bool).all():
                detail = "; ".join(f"{r.metric} {r.model:.3g} vs {r.baseline_value:.3g}" for r in df.itertuples())
                out.append(f"the checkpoint's own held-out evaluation '{ev}' (part {part}) did not beat the per-dose "
                           f"mean ({detail}): these predictions carry no evidence beyond the average response at "
                           f"each dose")
        return out

    def _checkpoint_warnings(self) -> list[str]:
        meta = self.pre.meta
        stage_index = meta.get("stage_index")
        if stage_index is None:
            return []
        trained = [s.name for s in self.plan.config.stages[: int(stage_index) + 1]
                   if float(s.weights.get(self.task_key, 0.0)) > 0]
        if not trained:
            return [f"the causal head '{self.task_key}' was not trained in any stage up to this checkpoint "
                    f"(stage '{meta.get('stage')}'): its predictions are those of an untrained head"]
        return []

    def _records(self) -> Iterable[Record]:
        limit = self.plan.config.data.max_records
        recs = self.plan.dataset.records(SkipLog())
        return itertools.islice(recs, limit) if limit is not None else recs

    def _scan(self) -> tuple[dict[str, CellContext], dict[str, dict[str, Any]]]:
        """One pass over the data: contexts (plate -> cell line, counts) and known compounds."""
        plates: dict[str, dict[str, Any]] = {}
        compounds: dict[str, dict[str, Any]] = {}
        doses: set[float] = set()
        mol_field = self.plan.modalities[self.molecule_modality].modality.record_field
        cell_field = self.plan.modalities[self.cell_modality].modality.record_field
        bar = tqdm(self._records(), desc="cgc-predict: reading the data", unit="rec", disable=not self.progress,
                   leave=False)
        for rec in bar:
            f = rec.fields
            if f.get(cell_field) is None:
                continue
            plate = _plate(f)
            p = plates.setdefault(plate, {"cell_line": f.get("cell_line"), "records": 0, "compounds": set()})
            p["records"] += 1
            dose = f.get("dose_um")
            if isinstance(dose, (int, float)) and math.isfinite(dose) and dose > 0 and \
                    f.get("split", "train") == "train":
                doses.add(float(dose))
            cid = f.get("compound_id")
            p["compounds"].add(cid)
            smi = f.get(mol_field)
            if cid is None or not isinstance(smi, str) or not smi.strip() or cid in compounds:
                continue
            compounds[str(cid)] = {k: f.get(k) for k in COMPOUND_FIELDS} | {mol_field: smi,
                                                                            "compound_id": str(cid)}
        if not plates:
            raise PredictionError(f"the data of {self.config_path} has no record with a '{cell_field}' value: "
                                  f"no cell context to predict in")
        contexts = {k: CellContext(k, None if v["cell_line"] is None else str(v["cell_line"]), v["records"],
                                   len(v["compounds"])) for k, v in plates.items()}
        self.training_doses = sorted(doses)
        return contexts, compounds

    def resolve_context(self, context: str | None = None) -> CellContext:
        """The context named ``context``: a plate id, or a cell line (its first plate in data order);
        ``None`` = the data's first plate. Unknown names raise :class:`UnknownContextError`."""
        if context is None:
            return next(iter(self.contexts.values()))
        name = str(context).strip()
        if name in self.contexts:
            return self.contexts[name]
        for c in self.contexts.values():
            if c.cell_line is not None and c.cell_line.lower() == name.lower():
                return c
        available = [c.label for c in self.contexts.values()]
        lines = ", ".join(available[:50]) + (f" and {len(available) - 50} more" if len(available) > 50 else "")
        raise UnknownContextError(f"unknown cell context {name!r}: the checkpoint's data has no such plate or "
                                  f"cell line. Available contexts (plate (cell line)): {lines}", available)

    # -- graphs --------------------------------------------------------------------------------

    def _context_state(self, ctx: CellContext) -> dict[str, Any]:
        """Template record, control tensors (median over the plate) and measured changes of the plate."""
        if ctx.plate in self._context_cache:
            return self._context_cache[ctx.plate]
        cell_mp = self.plan.modalities[self.cell_modality]
        cell_field = cell_mp.modality.record_field
        template: tuple[Record, HeteroData] | None = None
        xs: dict[str, list[Tensor]] = {t: [] for t in self.cell_types}
        edges: dict[tuple[str, str, str], list[Tensor]] = {}
        treated: list[tuple[str, float, HeteroData]] = []  # (compound id, dose, cell fragment with y)
        bar = tqdm(self._records(), desc=f"cgc-predict: control state of {ctx.plate}", unit="rec",
                   disable=not self.progress, leave=False)
        for rec in bar:
            f = rec.fields
            if _plate(f) != ctx.plate or f.get(cell_field) is None:
                continue
            try:
                frag = self.plan.schema.conform(cell_mp.builder.build(f[cell_field]))
            except RecordError:
                continue
            if template is None:
                template = (rec, frag)
            for t in self.cell_types:
                xs[t].append(frag[t].x)
            for k in frag.edge_types:
                if k[0] in self.cell_types and k[2] in self.cell_types and "edge_attr" in frag[k]:
                    edges.setdefault(k, []).append(frag[k].edge_attr)
            if all(frag[t].get("y") is not None for t in self.cell_types if frag[t].num_nodes) \
                    and f.get("compound_id") is not None and f.get("dose_um") is not None:
                treated.append((str(f["compound_id"]), float(f["dose_um"]), frag))
        if template is None:
            raise PredictionError(f"no record of plate {ctx.plate} builds a cell graph: no control state")
        control = {t: _lower_median(v) for t, v in xs.items()}
        edge_control = {k: _lower_median(v) for k, v in edges.items()}
        reference = copy.copy(template[1])  # the template's cell graph with the plate's control state
        for t, x in control.items():
            if reference[t].num_nodes == x.size(0):
                reference[t].x = x
        slots = self._slots(reference)
        measured = [(cid, d, self._vector(frag, slots, {t: frag[t].y for t in self.cell_types}))
                    for cid, d, frag in treated if _same_nodes(frag, reference, self.cell_types)]
        state = {"template": template[0], "control": control, "edge_control": edge_control, "slots": slots,
                 "measured": measured}
        self._context_cache[ctx.plate] = state
        return state

    def _slots(self, frag: HeteroData) -> list[ValueSlots]:
        """The measured value slots of the context's cell graph, named as the response evaluators
        name them (:func:`cgc_framework.plugin.value_slots`)."""
        return [s for s in value_slots(self.pre.schema, frag, self.cell_types) if len(s)]

    @staticmethod
    def _vector(frag: HeteroData, slots: list[ValueSlots], values: dict[str, Tensor]) -> Tensor:
        """``[F]`` = values - control state ``x`` on the measured slots, concatenated over types."""
        parts = [(values[s.node_type] - frag[s.node_type].x)[torch.from_numpy(s.rows), torch.from_numpy(s.cols)]
                 for s in slots]
        return torch.cat(parts) if parts else torch.zeros(0)

    def _graph(self, state: dict[str, Any], compound: dict[str, Any], dose_um: float, rid: str) -> HeteroData:
        """The what-if experiment graph: template record with ``compound`` fields at ``dose_um``."""
        tmpl: Record = state["template"]
        fields = dict(tmpl.fields)
        fields.update({k: None for k in COMPOUND_FIELDS})
        fields.update(compound)
        fields["dose_um"] = float(dose_um)
        g = self.plan.build_record(Record(rid, fields))
        for t, x in state["control"].items():
            if t in g.node_types and g[t].num_nodes == x.size(0):
                g[t].x = x.clone()
        for k, a in state["edge_control"].items():
            if k in g.edge_types and g[k].edge_attr.shape == a.shape:
                g[k].edge_attr = a.clone()
        for store in g.stores:
            if "y" in store:
                del store["y"]
        g[self.dose_attr] = torch.tensor([float(dose_um)], dtype=torch.float32)
        return g

    @torch.no_grad()
    def _predict_graphs(self, graphs: list[HeteroData], slots: list[ValueSlots], desc: str) -> np.ndarray:
        """``[len(graphs), F]`` predicted change (predicted - control) on the measured slots."""
        model = self.pre.model
        model.eval()
        out = []
        loader = DataLoader(graphs, batch_size=self.batch_size, shuffle=False)
        for batch in tqdm(loader, desc=desc, unit="batch", disable=not self.progress or len(loader) < 2,
                          leave=False):
            batch = batch.to(self.pre.device)
            pred = self.task.predict(batch, model.encoder)
            B = batch.num_graphs
            parts = []
            for s in slots:
                t = s.node_type
                if t not in pred:
                    raise PredictionError(f"the causal head predicted no '{t}' nodes")
                delta = (pred[t] - batch[t].x).cpu()  # [B * n_t, dim]
                n_t = delta.size(0) // B
                delta = delta.view(B, n_t, -1)
                parts.append(delta[:, torch.from_numpy(s.rows), torch.from_numpy(s.cols)])  # [B, F_t]
            out.append(torch.cat(parts, dim=1))
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros((0, 0))

    # -- the what-if ---------------------------------------------------------------------------

    def validate_smiles(self, smiles: Sequence[str]) -> None:
        """Raise :class:`PredictionError` naming every SMILES the molecule builder rejects, with its reason."""
        bad = []
        for s in smiles:
            try:
                self.pre.build([s], self.molecule_modality)
            except RecordError as exc:
                bad.append(f"{s!r}: {exc}")
        if bad:
            name = self.pre.builders.get(self.molecule_modality, {}).get("name", self.molecule_modality)
            raise PredictionError(f"{len(bad)} invalid SMILES (rejected by the molecule builder '{name}'):\n  "
                                  + "\n  ".join(bad))

    def _reference(self, ctx: CellContext, state: dict[str, Any], dose: float) -> tuple[list[str], np.ndarray]:
        """Known compounds that build in ``ctx`` and their ``[K, F]`` predicted changes at ``dose`` (cached)."""
        key = (ctx.plate, dose)
        if key not in self._reference_cache:
            graphs, kept = [], []
            for cid, comp in self.compounds.items():
                try:
                    graphs.append(self._graph(state, comp, dose, f"reference:{cid}@{dose:g}"))
                    kept.append(cid)
                except RecordRejected:
                    continue
            delta = self._predict_graphs(graphs, state["slots"],
                                         f"cgc-predict: {len(graphs)} known compounds at {dose:g} uM") \
                if graphs else np.zeros((0, sum(len(s.name) for s in state["slots"])))
            self._reference_cache[key] = (kept, delta)
        return self._reference_cache[key]

    def predict(self, smiles: str | Sequence[str], doses_um: float | Sequence[float], context: str | None = None,
                *, top_k: int = 10, rank_by: str = "predicted",
                extra_fields: dict[str, Any] | None = None) -> Prediction:
        """Predict the response of ``context`` to each SMILES at each dose (see the module docstring).

        Args:
            smiles: one SMILES or several.
            doses_um: one dose or several, in uM; each must be finite and > 0.
            context: plate id or cell line of the data (default: the data's first plate).
            top_k: nearest known compounds kept per (SMILES, dose).
            rank_by: which similarity ranks them: ``"predicted"`` (cosine of the predicted changes),
                ``"centered"`` (cosine after subtracting the known compounds' mean predicted change at
                that dose, i.e. of the compound-specific part) or ``"measured"`` (cosine to the measured
                changes on the context plate; compounds not measured there come last).
            extra_fields: record fields added to every query record, e.g. ``{"inchikey":
                "BSYNRYMUTXBXSQ-UHFFFAOYSA-N"}`` so that the ``drug_target`` edge source finds a new
                compound's annotated targets. A SMILES spelled exactly as a known compound's gets
                that compound's fields (id, InChIKey, name, MoA) automatically.
        """
        if rank_by not in RANK_BY:
            raise PredictionError(f"rank_by must be one of {', '.join(RANK_BY)}, not {rank_by!r}")
        smiles_list = _unique([smiles] if isinstance(smiles, str) else [str(s) for s in smiles])
        if not smiles_list:
            raise PredictionError("no SMILES given")
        doses = check_doses(doses_um)
        ctx = self.resolve_context(context)
        self.validate_smiles(smiles_list)
        state = self._context_state(ctx)
        slots: list[ValueSlots] = state["slots"]
        mol_field = self.plan.modalities[self.molecule_modality].modality.record_field
        by_smiles = {}
        for comp in self.compounds.values():
            by_smiles.setdefault(comp[mol_field], comp)
        queries = []
        for i, s in enumerate(smiles_list):
            comp = dict(by_smiles[s]) if s in by_smiles else {mol_field: s, "compound_id": f"query{i}"}
            comp.update(extra_fields or {})
            comp[mol_field] = s
            queries.append(comp)
        graphs, index = [], []
        for i, comp in enumerate(queries):
            for d in doses:
                try:
                    graphs.append(self._graph(state, comp, d, f"query{i}@{d:g}"))
                except RecordRejected as rej:
                    raise PredictionError(f"SMILES {smiles_list[i]!r} at {d:g} uM: the experiment graph cannot be "
                                          f"built ({rej.component}: {rej.reason})") from None
                index.append((smiles_list[i], d))
        delta = self._predict_graphs(graphs, slots, f"cgc-predict: {len(graphs)} what-if graphs")  # [Q*D, F]
        control = np.concatenate([state["control"][s.node_type][torch.from_numpy(s.rows), torch.from_numpy(s.cols)]
                                  .numpy().astype(np.float64) for s in slots])  # [F]
        changes = _changes_table(index, delta, control, slots)
        label_columns = [c for c in _label_columns(slots)]
        dose_response = _dose_response(index, delta, slots, label_columns)
        nearest = self._nearest(ctx, state, index, delta, doses, top_k, mol_field, rank_by)
        n_known = len(self._reference(ctx, state, doses[0])[0])
        anchors = self.dose_anchors_um
        warnings = list(self.warnings)
        if anchors:
            outside = [d for d in doses if d < anchors[0] or d > anchors[-1]]
            if outside:
                warnings.append(f"doses {', '.join(f'{d:g}' for d in outside)} uM are outside the causal head's "
                                f"dose anchors [{anchors[0]:g}, {anchors[-1]:g}] uM and are encoded as the "
                                f"nearest anchor: the predicted response is flat beyond them")
        elif self.training_doses:
            lo, hi = self.training_doses[0], self.training_doses[-1]
            outside = [d for d in doses if d < lo * 0.95 or d > hi * 1.05]
            if outside:
                warnings.append(f"doses {', '.join(f'{d:g}' for d in outside)} uM are outside the doses the causal "
                                f"head was trained on [{lo:g}, {hi:g}] uM: the continuous dose encoding extrapolates "
                                f"there, which no training well supports")
        new = [s for s in smiles_list if s not in by_smiles]
        units = sorted({fs.unit for s in slots for fs in self.pre.schema.node_types[s.node_type].continuous
                        if not fs.flags_for and fs.unit})
        meta = {
            "checkpoint": str(self.pre.checkpoint), "config": str(self.config_path),
            "config_matches_checkpoint": self.plan.config_hash() == self.pre.meta.get("config_hash"),
            "stage": self.pre.meta.get("stage"), "global_step": self.pre.meta.get("global_step"),
            "task": self.task_key, "dose_attr": self.dose_attr, "dose_anchors_um": anchors,
            "training_dose_range_um": [self.training_doses[0], self.training_doses[-1]] if self.training_doses
            else None,
            "context": ctx.plate, "cell_line": ctx.cell_line,
            "available_contexts": [c.label for c in self.contexts.values()],
            "n_features": int(delta.shape[1]),
            "features_per_node_type": {s.node_type: len(s.name) for s in slots},
            "units": ", ".join(units), "known_compounds": n_known,
            "new_compounds": new, "nearest_ranked_by": rank_by, "warnings": warnings,
        }
        return Prediction(smiles_list, doses, ctx, changes, dose_response, nearest, label_columns, meta)

    def _nearest(self, ctx: CellContext, state: dict[str, Any], index: list[tuple[str, float]], delta: np.ndarray,
                 doses: list[float], top_k: int, mol_field: str, rank_by: str) -> pd.DataFrame:
        if not self.compounds:
            return pd.DataFrame(columns=_NEAREST_COLUMNS)
        measured: dict[str, list[tuple[float, Tensor]]] = {}
        for cid, d, v in state["measured"]:
            measured.setdefault(cid, []).append((d, v))
        rows = []
        bar = tqdm(doses, desc="cgc-predict: known compounds", unit="dose", disable=not self.progress, leave=False)
        for d in bar:
            ids, ref = self._reference(ctx, state, d)  # K ids, [K, F]
            mean_ref = ref.mean(axis=0) if len(ids) else np.zeros(delta.shape[1])  # [F] the average compound
            meas_vec, meas_dose = [], []
            for cid in ids:
                best = _closest_measured(measured.get(cid, []), d)
                meas_dose.append(best[0] if best else float("nan"))
                meas_vec.append(best[1] if best else None)
            for q, (smi, qd) in enumerate(index):
                if qd != d:
                    continue
                cos_pred = _cosine(delta[q][None, :], ref)  # [K]
                cos_cent = _cosine((delta[q] - mean_ref)[None, :], ref - mean_ref)  # [K]
                cos_meas = np.array([_cosine(delta[q][None, :], v[None, :])[0] if v is not None else np.nan
                                     for v in meas_vec])
                score = {"predicted": cos_pred, "centered": cos_cent, "measured": cos_meas}[rank_by]
                order = sorted(range(len(ids)), key=lambda k: (-_nan_low(score[k]), ids[k]))[:top_k]
                for r, k in enumerate(order, start=1):
                    comp = self.compounds[ids[k]]
                    rows.append({"smiles": smi, "dose_um": d, "rank": r, "compound_id": ids[k],
                                 "compound_name": comp.get("compound_name"), "moa": comp.get("moa"),
                                 "target": comp.get("target"), "cosine_predicted": float(cos_pred[k]),
                                 "cosine_centered": float(cos_cent[k]),
                                 "cosine_measured": float(cos_meas[k]), "measured_dose_um": meas_dose[k],
                                 "same_smiles": comp.get(mol_field) == smi})
        return pd.DataFrame(rows, columns=_NEAREST_COLUMNS)


_NEAREST_COLUMNS = ["smiles", "dose_um", "rank", "compound_id", "compound_name", "moa", "target",
                    "cosine_predicted", "cosine_centered", "cosine_measured", "measured_dose_um", "same_smiles"]


def predict_response(checkpoint: str | Path | Pretrained, smiles: str | Sequence[str],
                     doses_um: float | Sequence[float], context: str | None = None, *,
                     config: str | Path | None = None, task: str | None = None, top_k: int = 10,
                     rank_by: str = "predicted", extra_plugins: tuple[Any, ...] = (),
                     progress: bool = False) -> Prediction:
    """One what-if: :class:`WhatIf` (``checkpoint``, ``config``, ``task``) then :meth:`WhatIf.predict`.

    Raises :class:`PredictionError` for an invalid SMILES (naming it and the builder's/RDKit's reason),
    a dose that is not a finite positive number, and :class:`UnknownContextError` (listing the
    available contexts) for a context not in the data.
    """
    doses = check_doses(doses_um)  # fail before loading anything
    return WhatIf(checkpoint, config=config, task=task, extra_plugins=extra_plugins,
                  progress=progress).predict(smiles, doses, context, top_k=top_k, rank_by=rank_by)


def list_contexts(checkpoint: str | Path | Pretrained, *, config: str | Path | None = None) -> list[CellContext]:
    """The cell contexts (plates) of a checkpoint's data."""
    return list(WhatIf(checkpoint, config=config).contexts.values())


# -- helpers ------------------------------------------------------------------------------------


def check_doses(doses_um: float | Sequence[float]) -> list[float]:
    scalar = isinstance(doses_um, str) or np.ndim(doses_um) == 0
    raw = [doses_um] if scalar else list(doses_um)  # type: ignore[arg-type]
    if not raw:
        raise PredictionError("no dose given: pass one or more doses in uM (e.g. 0.1 1 10)")
    out = []
    for i, d in enumerate(raw):
        try:
            v = float(d)
        except (TypeError, ValueError):
            raise PredictionError(f"dose #{i + 1} ({d!r}) is not a number: doses are positive numbers "
                                  f"in uM") from None
        if not math.isfinite(v) or v <= 0:
            raise PredictionError(f"dose #{i + 1} is {d!r}: doses must be finite numbers > 0, in uM")
        out.append(v)
    return sorted(set(out))


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(s.strip() for s in items))


def _label_columns(slots: list[ValueSlots]) -> list[str]:
    """Label columns that tell features apart (a label with one value over every feature, such as the
    cell line of the context, is not a grouping)."""
    cols = list(dict.fromkeys(c for s in slots for c in s.labels))
    return [c for c in cols if len({v for s in slots for v in s.labels.get(c, []) if v is not None}) > 1]


def _plate(fields: dict[str, Any]) -> str:
    """A record's context: its ``plate`` field (``"all"`` when the data has no plates)."""
    return str(fields["plate"]) if fields.get("plate") is not None else "all"


def _same_nodes(a: HeteroData, b: HeteroData, types: list[str]) -> bool:
    return all(int(a[t].num_nodes or 0) == int(b[t].num_nodes or 0) for t in types)


def _lower_median(tensors: list[Tensor]) -> Tensor:
    """Element-wise lower median of same-shaped tensors (the first one when shapes differ)."""
    if len(tensors) == 1 or any(t.shape != tensors[0].shape for t in tensors):
        return tensors[0].clone()
    return torch.stack(tensors).median(dim=0).values


def _changes_table(index: list[tuple[str, float]], delta: np.ndarray, control: np.ndarray,
                   slots: list[ValueSlots]) -> pd.DataFrame:
    F = delta.shape[1]
    node_type = np.concatenate([[s.node_type] * len(s.name) for s in slots])
    labels = {c: np.concatenate([np.array(s.labels.get(c, [None] * len(s.name)), dtype=object) for s in slots])
              for c in _label_columns(slots)}
    base = pd.DataFrame({"node_type": node_type, "node": np.concatenate([s.rows for s in slots]), **labels,
                         "slot": np.concatenate([s.slot for s in slots]),
                         "feature": np.concatenate([s.name for s in slots]), "control": control})
    frames = []
    for q, (smi, d) in enumerate(index):
        f = base.copy()
        f.insert(0, "dose_um", d)
        f.insert(0, "smiles", smi)
        f["predicted"] = control + delta[q]
        f["change"] = delta[q]
        frames.append(f)
    out = pd.concat(frames, ignore_index=True)
    assert len(out) == len(index) * F
    return out


def _dose_response(index: list[tuple[str, float]], delta: np.ndarray, slots: list[ValueSlots],
                   label_columns: list[str]) -> pd.DataFrame:
    groups: dict[str, np.ndarray] = {}
    for c in label_columns:
        vals = np.concatenate([np.array(s.labels.get(c, [None] * len(s.name)), dtype=object) for s in slots])
        for v in dict.fromkeys(v for v in vals if v is not None):
            groups[f"l2_{c}_{v}"] = vals == v
    rows = []
    for q, (smi, d) in enumerate(index):
        v = delta[q]
        row = {"smiles": smi, "dose_um": d, "log10_dose": math.log10(d), "n_features": int(v.size),
               "l2": float(np.linalg.norm(v)), "rms": float(np.sqrt(np.mean(v ** 2))) if v.size else 0.0,
               "mean_abs": float(np.mean(np.abs(v))) if v.size else 0.0,
               "max_abs": float(np.max(np.abs(v))) if v.size else 0.0}
        for name, mask in groups.items():
            row[name] = float(np.linalg.norm(v[mask]))
        rows.append(row)
    return pd.DataFrame(rows)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``b`` ``[K, F]`` with ``a`` ``[1, F]`` (NaN for a zero vector)."""
    b = np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((nb > 0) & (na > 0), (b @ a[0]) / (nb * na), np.nan)


def _nan_low(x: float) -> float:
    return -math.inf if x != x else float(x)


def _closest_measured(items: list[tuple[float, Tensor]], dose: float) -> tuple[float, np.ndarray] | None:
    """Measured change at the measured dose closest to ``dose`` in log10 (replicates averaged)."""
    items = [(d, v) for d, v in items if d > 0]
    if not items:
        return None
    best = min({d for d, _ in items}, key=lambda d: (abs(math.log10(d) - math.log10(dose)), d))
    vs = [v.numpy().astype(np.float64) for d, v in items if d == best]
    return best, np.mean(vs, axis=0)


__all__ = ["WhatIf", "check_doses", "list_contexts", "predict_response"]
