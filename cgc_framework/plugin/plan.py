"""The :class:`Plan`: a run's configuration composed with the installed plugins.

``cgc_framework.engine.compose.compose`` builds it in the driver before any data is read. Plugins
meet it in two places: :meth:`~cgc_framework.plugin.contracts.Evaluator.held_out_molecules`
receives it, and :class:`~cgc_framework.plugin.contracts.EvaluationContext` carries it. Everything
an evaluator needs to turn new inputs into graphs *exactly as pretraining did* goes through it
(:meth:`Plan.build_graphs`), as does re-creating the run's dataset with other parameters
(:meth:`Plan.create_dataset`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from cgc_framework.plugin.graph import EdgeType, GraphSchema
from cgc_framework.plugin.roles import MOLECULE, Roles

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

    from cgc_framework.engine.config import CGCConfig
    from cgc_framework.engine.featurize import BuiltData
    from cgc_framework.engine.registry import ComponentInfo, PluginRegistry
    from cgc_framework.plugin.contracts import Dataset, EdgeSource, GraphBuilder, Modality
    from cgc_framework.plugin.records import Record


@dataclass
class ComponentSpec:
    """A component chosen in the config: its registry entry and validated params.

    Attributes:
        key: where the config chose it, e.g. ``"tasks.mask"`` or ``"graph.modalities.cell"``.
        info: the registry entry (kind, name, factory, params model, distribution, entry point).
        params: the validated params object (``None`` for a component without params).
    """

    key: str
    info: ComponentInfo
    params: BaseModel | None

    def params_dict(self) -> dict[str, Any]:
        """The params as plain JSON types (what checkpoints and ``config.resolved.yaml`` record)."""
        return self.params.model_dump(mode="json") if self.params is not None else {}

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.info.kind, "name": self.info.name,
                "distribution": self.info.distribution, "version": self.info.version,
                "entry_point": self.info.entry_point, "params": self.params_dict()}


@dataclass
class ModalityPlan:
    """One modality of the run and the graph builder the config chose for it.

    Attributes:
        name: the modality's name (``"molecule"``, ``"cell"``).
        modality: the registered :class:`~cgc_framework.plugin.contracts.Modality` (its
            ``record_field`` is the record field the builder reads).
        builder_spec: the builder's config entry; ``builder``: the constructed builder.
        required: ``False`` when a record may lack this modality (its omission is counted).
    """

    name: str
    modality: Modality
    builder_spec: ComponentSpec
    builder: GraphBuilder
    required: bool = True


@dataclass
class Plan:
    """Everything a run composes, resolved and constructed (driver side).

    Attributes:
        config: the validated config (``CGCConfig``; ``plan.config.run.seed``, ``.data``, ``.stages``).
        base_dir: the directory of the YAML file (relative paths in params resolve against it).
        registry: the loaded plugins (``PluginRegistry``): ``registry.create(kind, name, params)``,
            ``registry.validate_params(...)``, ``registry.get(kind, name)``.
        dataset_spec, dataset: the dataset's config entry and the dataset pretraining reads (wrapped
            by the leakage guard when ``data.exclude_evaluation_test_molecules`` is on).
        modalities: modality name -> :class:`ModalityPlan`.
        edge_sources: config key -> ``(ComponentSpec, EdgeSource)``.
        encoder, tasks, evaluations: the config entries of the encoder, pretraining tasks (by task
            key) and evaluations (by evaluation key); these are constructed on workers / later.
        schema: the merged :class:`~cgc_framework.plugin.graph.GraphSchema` of every builder and
            edge source, with roles (``plan.roles``).
        declared_by: node type or edge type -> the config key of the component that declared it
            (errors about a type name this component).
        joins: the ``data.join`` tables, loaded (``cgc_framework.engine.join``); the dataset and
            :meth:`create_dataset` attach them to every record.
        evaluation_cache: a memo shared by the evaluations of one run (e.g. graphs of held-out
            records); driver-side only, never saved.
    """

    config: CGCConfig
    base_dir: Path
    registry: PluginRegistry
    dataset_spec: ComponentSpec
    dataset: Dataset
    modalities: dict[str, ModalityPlan]
    edge_sources: dict[str, tuple[ComponentSpec, EdgeSource]]
    encoder: ComponentSpec
    tasks: dict[str, ComponentSpec]
    evaluations: dict[str, ComponentSpec]
    schema: GraphSchema = field(default_factory=GraphSchema)
    declared_by: dict[str | EdgeType, str] = field(default_factory=dict)
    joins: list[Any] = field(default_factory=list)
    evaluation_cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def roles(self) -> Roles:
        """The schema's node and edge types by role."""
        return self.schema.roles

    def modality_with_role(self, role: str) -> ModalityPlan | None:
        """The first modality whose builder declares a node type of ``role`` (e.g. the molecule
        modality for ``"molecule"``), or ``None``."""
        types = set(self.roles.node_types(role))
        for mp in self.modalities.values():
            if types & set(mp.builder.schema().node_types):
                return mp
        return None

    def molecule_value(self, record: Record) -> Any:
        """The value of ``record`` that the molecule modality reads (its SMILES), ``None`` when the
        run has no molecule modality or the record has no such value."""
        mp = self.modality_with_role(MOLECULE)
        return None if mp is None else record.fields.get(mp.modality.record_field)

    def component(self, key: str) -> ComponentSpec:
        """The component chosen at config key ``key``."""
        for spec in self.components():
            if spec.key == key:
                return spec
        raise KeyError(f"no component at config key {key!r}; keys: {', '.join(s.key for s in self.components())}")

    def builder_refs(self) -> dict[str, dict[str, Any]]:
        """``{modality: {"name", "params"}}`` of the graph builders (what checkpoints record)."""
        return {m: {"name": mp.builder_spec.info.name, "params": mp.builder_spec.params_dict()}
                for m, mp in self.modalities.items()}

    def create_dataset(self, **updates: Any) -> Dataset:
        """A new instance of the run's dataset (with the ``data.join`` tables attached, but not the
        leakage guard), with ``updates`` applied to its params (e.g. ``include_splits=["test"]``);
        ``ValueError`` naming an update the dataset's params do not have."""
        spec = self.dataset_spec
        params = spec.params
        if updates:
            fields = type(params).model_fields if params is not None else {}
            unknown = [k for k in updates if k not in fields]
            if unknown:
                raise ValueError(f"dataset '{spec.info.name}' has no parameter(s) {unknown}; "
                                 f"its parameters: {', '.join(fields) or 'none'}")
            params = params.model_copy(update=updates)  # type: ignore[union-attr]
        dataset = self.registry.create("dataset", spec.info.name, params)
        if self.joins:
            from cgc_framework.engine.join import JoinedDataset

            return JoinedDataset(dataset, self.joins)
        return dataset

    def build_graphs(self, records: Iterable[Record], *, progress: bool = False) -> BuiltData:
        """Experiment graphs of ``records`` built exactly as pretraining built them (this plan's
        builders, edge sources, featurization cache and schema; no ``max_records`` limit). Records a
        component rejects are in ``BuiltData.skips``; ``DataError`` when none can be built. Built
        in this process (the result equals a parallel build)."""
        from cgc_framework.engine.featurize import build_records

        return build_records(self, records, progress=progress, workers=0)

    def build_record(self, record: Record) -> HeteroData:
        """The experiment graph of one record (conformed and validated); raises
        :class:`~cgc_framework.plugin.records.RecordRejected` naming the component and the reason."""
        from cgc_framework.engine.featurize import build_record

        return build_record(self, record)

    def resolved(self) -> dict[str, Any]:
        """The config with defaults filled in and every component's params as validated (file
        paths absolute): ``config.resolved.yaml`` reproduces the run from any directory."""
        data = self.config.model_dump(mode="json")
        for spec in self.components():
            node = data
            for part in spec.key.split("."):
                node = node[part]
            node["params"] = spec.params_dict()
        return data

    def config_hash(self) -> str:
        """Stable hash of :meth:`resolved` minus the ``trainer`` section (how a run is executed
        does not change what it computes); stored in checkpoints, used to match resumes."""
        data = {k: v for k, v in self.resolved().items() if k != "trainer"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def components(self) -> list[ComponentSpec]:
        """Every component of the run, in config order (dataset, builders, edge sources, encoder,
        tasks, evaluations)."""
        return ([self.dataset_spec] + [m.builder_spec for m in self.modalities.values()]
                + [s for s, _ in self.edge_sources.values()] + [self.encoder]
                + list(self.tasks.values()) + list(self.evaluations.values()))


__all__ = ["ComponentSpec", "ModalityPlan", "Plan"]
