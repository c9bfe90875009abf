"""The interfaces that components registered through :mod:`cgc_framework.plugin.hookspecs` implement.

Components with weights (``Encoder``, ``PretrainingTask``, ``ResponsePredictor``) are defined in
:mod:`cgc_framework.plugin.trainable` and importable from here too; this module itself imports
no torch, so a plugin's registration and a config's validation stay cheap.

Each class states what the framework calls, when, with which shapes, and what it may raise. The
objects components receive (:class:`~cgc_framework.plugin.plan.Plan`, :class:`EvaluationContext`,
:class:`~cgc_framework.plugin.graph.GraphSchema` and its roles) are documented where they are
defined and, all together, in ``docs/internals.md``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from cgc_framework.plugin.graph import GraphSchema
from cgc_framework.plugin.records import Record, RecordError, SkipLog

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch_geometric.data import HeteroData

    from cgc_framework.engine.pretrained import Pretrained
    from cgc_framework.plugin.plan import Plan

#: the contracts of components with weights live in :mod:`cgc_framework.plugin.trainable` (they
#: subclass ``torch.nn.Module``, so importing them imports torch); they are re-exported here.
_TRAINABLE = ("Encoder", "PretrainingTask", "ResponsePredictor", "TaskOutput", "response_head")


def __getattr__(name: str) -> Any:
    if name in _TRAINABLE:
        from cgc_framework.plugin import trainable

        return getattr(trainable, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Modality:
    """A kind of entity an experiment graph contains.

    The node and edge types a modality contributes, and their roles, are declared by its graph
    builders' schemas (:meth:`GraphBuilder.schema`), since two builders of one modality may build
    different types (the cell profile and the cell image builders).

    Attributes:
        record_field: the :class:`Record` field that this modality's builders read
            (e.g. ``"smiles"``). A record without that field is skipped and reported, or, when the
            config marks the modality ``required: false``, kept without this subgraph (counted).
        description: one line for listings.
    """

    record_field: str
    description: str = ""


class Dataset(ABC):
    """A source of experiment records (a file, a directory, a generated data set)."""

    @abstractmethod
    def records(self, skips: SkipLog) -> Iterator[Record]:
        """Yield records one at a time (stream; never require the whole set in memory).

        Records that cannot be read are added to ``skips`` (with id and reason), not yielded.
        """

    def describe(self) -> dict[str, Any]:
        """Provenance for ``summary.md``: source path(s), checksum, licence, row counts."""
        return {}


class GraphBuilder(ABC):
    """Turns one raw value of a modality (a SMILES, a structure file, a profile) into tensors."""

    #: name of the :class:`Modality` this builder serves.
    modality: str = ""
    #: bump when the output for the same input changes (enters cache keys).
    version: str = "1"

    @abstractmethod
    def schema(self) -> GraphSchema:
        """The node/edge types this builder produces, with their feature specs and roles
        (:mod:`cgc_framework.plugin.roles`: e.g. ``role="molecule"`` for the node standing for a
        molecule, ``role="cell_state"`` for nodes with control ``x`` and treated ``y``)."""

    @abstractmethod
    def build(self, value: Any) -> HeteroData:
        """Build the subgraph of one value, following the storage convention of
        :mod:`cgc_framework.plugin.graph` for the types of :meth:`schema`.

        Raises:
            RecordError: the value is invalid (unparsable SMILES, broken file); the message is the
                reason shown to the user.
        """

    def build_many(self, values: Sequence[Any]) -> list[HeteroData | RecordError]:
        """Build the subgraphs of many values, in order; a rejected value gets its
        ``RecordError`` in its place instead of raising.

        The featurization machinery calls this on chunks of records (a few hundred values, the
        same value possibly more than once). Default: :meth:`build` for each value. Override it
        when batching is faster; the result must equal ``build`` value by value (the RDKit builder
        does its array work once per chunk). A subclass that overrides only ``build`` is built
        value by value. An unexpected exception makes the machinery retry the chunk value by
        value, so the error names the record.
        """
        out: list[HeteroData | RecordError] = []
        for value in values:
            try:
                out.append(self.build(value))
            except RecordError as exc:
                out.append(exc)
        return out

    def params_key(self) -> dict[str, Any]:
        """Parameters that change the output (enters cache keys). Default: none."""
        return {}

    def cache_inputs(self, value: Any) -> list[Path] | None:
        """The files whose bytes determine the subgraph of ``value`` (a structure file and its
        sidecars), for the featurization cache key; ``None`` (default): the value itself is the
        content (a SMILES)."""
        return None

    def describe(self) -> dict[str, Any]:
        """Counts for ``summary.md`` after featurization (e.g. how many structures used DSSP).
        Default: nothing."""
        return {}

    def state(self) -> dict[str, Any]:
        """What this instance has recorded while building that :meth:`describe` reports (e.g. the
        warning of each structure file), as JSON types. Builders also run in featurization worker
        processes and Ray tasks; the machinery hands their state to the driver's builder
        (:meth:`merge_state`) and stores it with each shard, so ``summary.md`` counts every record,
        a resumed run's too. Cumulative over the instance's builds. Default: nothing."""
        return {}

    def merge_state(self, state: dict[str, Any]) -> None:
        """Add another instance's :meth:`state` to this one's. The same state, or a later superset
        of it, may arrive more than once (each shard of a worker carries the worker's state so
        far): merge as a union, never as a sum. Default: nothing."""
        return None


class EdgeSource(ABC):
    """Adds cross-scale edges between node types that the modalities built.

    Called in the driver (or a featurization worker) once per record, after every modality's
    builder has built its subgraph into ``data``. The edge source must not change other
    components' tensors, except to add nodes of a type it declares itself.
    """

    @abstractmethod
    def schema(self) -> GraphSchema:
        """The edge types this source adds, with their feature specs and roles, plus every node
        type they connect (declared identically to the builder that also declares it; a node type
        only this source adds, such as a drug-target ``protein`` node, is declared here). An edge
        type that links an intervention to the treated cell declares ``role="treatment"``."""

    def bind(self, schema: GraphSchema) -> None:
        """Called once when the run is composed, before :meth:`schema`, with the schema the graph
        builders (and the edge sources listed before this one) declared. An edge source that links
        to nodes by an identity a builder declares reads its names here, e.g. the class names of an
        expression gene node's ``gene`` feature, so that ``x_cat`` index ``i`` means gene ``names[i]``.
        Raise ``ValueError`` (with the fix) when the schema lacks what the source needs; it is
        reported as a config problem of this edge source. Default: nothing."""
        return None

    @abstractmethod
    def add_edges(self, record: Record, data: HeteroData) -> None:
        """Add this source's edge types to ``data`` (built from ``record``) in place, following
        the storage convention of :mod:`cgc_framework.plugin.graph` (``edge_index`` int64
        ``[2, E]`` in the graph's local node numbering, ``edge_attr`` float32 ``[E, F]``,
        ``edge_attr_cat`` int64 ``[E, C]``; missing types are filled empty afterwards).
        A record it has nothing to add for is left unchanged (not an error).

        Raises:
            RecordError: the record cannot be linked (e.g. an unknown compound id).
        """

    def describe(self) -> dict[str, Any]:
        """Counts for ``summary.md`` after featurization (e.g. structures linked to a target).
        Default: nothing."""
        return {}


@dataclass
class EvaluationContext:
    """What an evaluator receives after pretraining.

    Attributes:
        output_dir: this evaluation's own folder inside the run directory (write plots here).
        plan: the composed run (:class:`~cgc_framework.plugin.plan.Plan`: config, registry,
            builders, schema with roles) — ``plan.build_graphs(records)`` turns new inputs into
            graphs exactly as pretraining did.
        model: the pretrained encoder and task heads (``model.encoder``, ``model.tasks[key]``),
            loaded from ``checkpoint``, in eval mode, on ``device``.
        checkpoint: path of the checkpoint the model was loaded from.
        seed: the run's seed; evaluators derive their random draws from it.
        device: where ``model`` is.
    """

    output_dir: Path
    plan: Plan
    model: nn.Module
    checkpoint: Path
    seed: int = 0
    device: torch.device = field(default_factory=lambda: _cpu())

    def untrained_model(self) -> nn.Module:
        """The same architecture with fresh weights drawn under ``torch.manual_seed(seed)``, in
        eval mode on ``device``: the "same encoder untrained" baseline."""
        import torch

        from cgc_framework.engine.checkpoint import load_model

        torch.manual_seed(self.seed)
        model, _ = load_model(self.checkpoint, self.plan.registry, trained=False, device=self.device)
        return model

    def pretrained(self, *, untrained: bool = False) -> Pretrained:
        """The evaluated model (or, with ``untrained``, :meth:`untrained_model`) as a
        :class:`~cgc_framework.engine.pretrained.Pretrained`: molecule- and cell-level embeddings of
        SMILES, profiles or graphs, built by the run's own graph builders."""
        from cgc_framework.engine.pretrained import Pretrained

        model = self.untrained_model() if untrained else self.model
        # a PretrainModel; typed nn.Module here so that this module does not import the engine
        return Pretrained(model, self.plan.schema,  # type: ignore[arg-type]
                          self.plan.registry, self.checkpoint, {},
                          self.plan.builder_refs(), self.device)


def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


@dataclass
class EvaluationResult:
    """Tidy tables (one row per observation) written as CSV, plus Markdown for ``summary.md``."""

    tables: dict[str, Any] = field(default_factory=dict)
    summary_markdown: str = ""


@dataclass(frozen=True)
class Comparison:
    """A table of an evaluation in which the evaluated model and baselines are scored side by side
    over data sets and label budgets (few-shot). ``cgc-bench`` summarises every declared comparison
    with per-``k`` overview tables, mean and 95% CI over seeds, and paired Wilcoxon tests of
    ``model`` against each baseline (Holm-adjusted); other tables get a generic summary.

    The table must be tidy with the columns ``dataset``, ``method``, ``k``, ``task``, ``metric`` and
    ``value`` (one row per draw or per task; ``draw`` optional).

    Attributes:
        table: the table's name in :attr:`EvaluationResult.tables`.
        model: the ``method`` value of the evaluated (pretrained) model.
        baselines: the ``method`` values it is tested against.
        metric: the ``metric`` value compared (e.g. ``"auroc"``).
        title: the report's section heading (default: evaluation, table and metric).
    """

    table: str
    model: str
    baselines: tuple[str, ...]
    metric: str = "auroc"
    title: str = ""


@dataclass
class HeldOutMolecules:
    """Molecules an evaluation scores as unseen, so the pretraining corpus must not contain them.

    Attributes:
        keys: molecule key -> where it is held out, as a phrase (e.g. ``"scaffold test split of
            bbbp"``); the leakage guard writes ``held out: in the <where> ...`` as the skip reason.
        key_of: the key of one molecule value — what the run's molecule modality reads from a
            record, e.g. a SMILES (the guard passes :meth:`Plan.molecule_value` of each record) —
            such as its InChIKey connectivity block; ``None`` when it has no key. Called once
            per record: cache inside it if it is costly.
    """

    keys: dict[str, str]
    key_of: Callable[[Any], str | None]


class Evaluator(ABC):
    """An evaluation protocol run after pretraining on the final checkpoint."""

    @abstractmethod
    def evaluate(self, context: EvaluationContext) -> EvaluationResult:
        """Run the evaluation protocol and return its tables."""

    def comparisons(self) -> list[Comparison]:
        """The tables of :meth:`evaluate` that compare the model with baselines (for ``cgc-bench``'s
        paired tests and overview tables). Default: none."""
        return []

    def data_files(self) -> dict[str, list[Path]]:
        """The files this evaluation reads, by data set name (``"*"``: not tied to one set), for the
        checksums ``cgc-bench`` records. Default: ``{"*": every existing file named by this
        evaluator's attributes}`` (e.g. paths in its params); override when files are implied
        (a data set name resolved inside a data directory)."""
        from cgc_framework.plugin.provenance import files_named_by

        files = sorted(set(files_named_by(self)))
        return {"*": files} if files else {}

    def held_out_molecules(self, plan: Plan) -> HeldOutMolecules | None:
        """The molecules this evaluation will score as unseen (e.g. the scaffold test split of a
        benchmark), for the leakage guard (``data.exclude_evaluation_test_molecules``): records of
        the pretraining dataset whose key is among them are skipped and reported. Called on the
        driver before featurization, with the composed plan; default: none."""
        return None
