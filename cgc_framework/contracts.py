"""The interfaces that components registered through :mod:`cgc_framework.hookspecs` implement.

Each class states what the framework calls, when, with which shapes, and what it may raise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from .graph import GraphSchema
from .records import Record, RecordError, SkipLog


@dataclass(frozen=True)
class Modality:
    """A kind of entity an experiment graph contains.

    Attributes:
        record_field: the :class:`Record` field that this modality's builders read
            (e.g. ``"smiles"``). A record without that field is skipped and reported.
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
        """The node/edge types this builder produces, with their feature specs."""

    @abstractmethod
    def build(self, value: Any) -> HeteroData:
        """Build the subgraph of one value, following the storage convention of
        :mod:`cgc_framework.graph` for the types of :meth:`schema`.

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


class EdgeSource(ABC):
    """Adds cross-scale edges between node types that the modalities built."""

    @abstractmethod
    def schema(self) -> GraphSchema:
        """The edge types (and the node types they connect) this source adds."""

    @abstractmethod
    def add_edges(self, record: Record, data: HeteroData) -> None:
        """Add this source's edge types to ``data`` (built from ``record``) in place.

        Raises:
            RecordError: the record cannot be linked (e.g. an unknown compound id).
        """


class Encoder(nn.Module, ABC):
    """A heterogeneous GNN. ``hidden_dim`` is the width of every output embedding."""

    hidden_dim: int

    @abstractmethod
    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        """Map a (batched) graph to ``{node_type: Tensor[N_t, hidden_dim]}`` for every node type
        of the schema the encoder was built with (an empty ``[0, hidden_dim]`` tensor for a type
        without nodes)."""


@dataclass
class TaskOutput:
    """What a pretraining task returns for one batch.

    Attributes:
        loss: scalar tensor, mean over the batch, differentiable w.r.t. the encoder and the task.
        logs: named scalars (e.g. per node type losses) written to the metrics file as
            ``<task>/<name>``; detached by the framework.
    """

    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)


class PretrainingTask(nn.Module, ABC):
    """A self-supervised objective with its own heads."""

    @abstractmethod
    def forward(self, batch: HeteroData, encoder: Encoder) -> TaskOutput:
        """Compute the loss on ``batch``; must not modify ``batch`` in place (clone what you
        corrupt). Randomness must come from ``torch``'s global generator so seeded runs repeat."""


@dataclass
class EvaluationContext:
    """What an evaluator receives after pretraining.

    Attributes:
        output_dir: this evaluation's own folder inside the run directory (write plots here).
        plan: the composed run (config, registry, builders, schema) — use its builders to turn
            new inputs (e.g. benchmark SMILES) into graphs exactly as pretraining did.
        model: the pretrained encoder and task heads (``model.encoder``, ``model.tasks[key]``),
            loaded from ``checkpoint``, in eval mode, on ``device``.
        checkpoint: path of the checkpoint the model was loaded from.
        seed: the run's seed; evaluators derive their random draws from it.
    """

    output_dir: Path
    plan: Any
    model: nn.Module
    checkpoint: Path
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass
class EvaluationResult:
    """Tidy tables (one row per observation) written as CSV, plus Markdown for ``summary.md``."""

    tables: dict[str, Any] = field(default_factory=dict)
    summary_markdown: str = ""


@dataclass
class HeldOutMolecules:
    """Molecules an evaluation scores as unseen, so the pretraining corpus must not contain them.

    Attributes:
        keys: molecule key -> where it is held out, as a phrase (e.g. ``"scaffold test split of
            bbbp"``); the leakage guard writes ``held out: in the <where> ...`` as the skip reason.
        key_of: the key of one pretraining record (e.g. the InChIKey connectivity block of its
            SMILES), ``None`` when the record has no molecule. Called once per record: cache
            inside it if it is costly.
    """

    keys: dict[str, str]
    key_of: Callable[[Record], str | None]


class Evaluator(ABC):
    @abstractmethod
    def evaluate(self, context: EvaluationContext) -> EvaluationResult:
        """Run the evaluation protocol and return its tables."""

    def held_out_molecules(self, plan: Any) -> HeldOutMolecules | None:
        """The molecules this evaluation will score as unseen (e.g. the scaffold test split of a
        benchmark), for the leakage guard (``data.exclude_evaluation_test_molecules``): records of
        the pretraining dataset whose key is among them are skipped and reported. Called on the
        driver before featurization, with the composed plan; default: none."""
        return None
