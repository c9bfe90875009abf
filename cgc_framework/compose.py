"""Composition: a validated config + the installed plugins -> a :class:`Plan` of concrete components.

Every component name is looked up and every ``params:`` mapping is validated by the component's
own schema here, in the driver, before any data is read or any worker started. All problems are
collected and raised together as one :class:`~cgc_framework.errors.ConfigError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel

from .config import CGCConfig
from .contracts import Dataset, EdgeSource, GraphBuilder, HeldOutMolecules, Modality
from .errors import ConfigError, UnknownComponentError
from .graph import GraphSchema
from .plugins import ComponentInfo, PluginRegistry
from .records import Record, SkipLog

LEAKAGE_GUARD = "leakage_guard"
"""The component name under which the leakage guard's skips are counted and listed."""


@dataclass
class ComponentSpec:
    """A component chosen in the config: its registry entry and validated params."""

    key: str                 # config path, e.g. "tasks.mask"
    info: ComponentInfo
    params: BaseModel | None

    def params_dict(self) -> dict[str, Any]:
        return self.params.model_dump(mode="json") if self.params is not None else {}

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.info.kind, "name": self.info.name,
                "distribution": self.info.distribution, "version": self.info.version,
                "entry_point": self.info.entry_point, "params": self.params_dict()}


@dataclass
class ModalityPlan:
    name: str
    modality: Modality
    builder_spec: ComponentSpec
    builder: GraphBuilder
    required: bool = True


@dataclass
class Plan:
    """Everything a run composes, resolved and constructed (driver side)."""

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
    #: memo shared by the evaluations of one run (e.g. graphs of held-out records, keyed by the
    #: evaluator's own key); driver-side only, never saved.
    evaluation_cache: dict[str, Any] = field(default_factory=dict, repr=False)

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
        return ([self.dataset_spec] + [m.builder_spec for m in self.modalities.values()]
                + [s for s, _ in self.edge_sources.values()] + [self.encoder]
                + list(self.tasks.values()) + list(self.evaluations.values()))


def compose(config: CGCConfig, registry: PluginRegistry, base_dir: Path, source: str = "config") -> Plan:
    """Resolve every component of ``config``; raise one ConfigError listing every problem
    (an :class:`UnknownComponentError` when a component name is among them)."""
    problems: list[str] = []
    unknown = False
    ctx = {"base_dir": Path(base_dir)}

    def fail() -> ConfigError:
        return (UnknownComponentError if unknown else ConfigError)(source, problems)

    def spec(kind: str, key: str, name: str, params: dict[str, Any]) -> ComponentSpec | None:
        try:
            info = registry.get(kind, name, key=f"{key}.name" if kind != "graph_builder" else f"{key}.builder")
            validated = registry.validate_params(kind, name, params, key=key, context=ctx)
            return ComponentSpec(key, info, validated)
        except ConfigError as exc:
            nonlocal unknown
            unknown = unknown or isinstance(exc, UnknownComponentError)
            problems.extend(exc.problems)
            return None

    ds = spec("dataset", "data.dataset", config.data.dataset.name, config.data.dataset.params)
    builder_specs: dict[str, tuple[Modality, ComponentSpec]] = {}
    for mod_name, ref in config.graph.modalities.items():
        key = f"graph.modalities.{mod_name}"
        try:
            modality = registry.create("modality", registry.get("modality", mod_name, key=key).name, None)
        except ConfigError as exc:
            unknown = unknown or isinstance(exc, UnknownComponentError)
            problems.extend(exc.problems)
            continue
        b = spec("graph_builder", key, ref.builder, ref.params)
        if b is not None:
            builder_specs[mod_name] = (modality, b)
    edge_specs = {k: spec("edge_source", f"graph.edge_sources.{k}", r.name, r.params)
                  for k, r in config.graph.edge_sources.items()}
    enc = spec("encoder", "model.encoder", config.model.encoder.name, config.model.encoder.params)
    tasks = {k: spec("pretraining_task", f"tasks.{k}", r.name, r.params) for k, r in config.tasks.items()}
    evals = {k: spec("evaluator", f"evaluations.{k}", r.name, r.params)
             for k, r in config.evaluations.items()}
    if problems:
        raise fail()

    assert ds is not None and enc is not None
    dataset = registry.create("dataset", ds.info.name, ds.params)
    modalities: dict[str, ModalityPlan] = {}
    schema = GraphSchema()
    for mod_name, (modality, b) in builder_specs.items():
        builder = registry.create("graph_builder", b.info.name, b.params)
        if builder.modality != mod_name:
            problems.append(f"graph.modalities.{mod_name}.builder: '{b.info.name}' builds modality "
                            f"'{builder.modality}', not '{mod_name}'. Builders for '{mod_name}': "
                            + ", ".join(_builders_for(registry, mod_name)))
            continue
        with registry.guard(b.info, "publishing its schema"):
            schema = schema.merge(builder.schema(), where=f" (builder '{b.info.name}')")
        modalities[mod_name] = ModalityPlan(mod_name, modality, b, builder,
                                            config.graph.modalities[mod_name].required)
    edge_sources: dict[str, tuple[ComponentSpec, EdgeSource]] = {}
    for k, s in edge_specs.items():
        assert s is not None
        source = registry.create("edge_source", s.info.name, s.params)
        with registry.guard(s.info, "publishing its schema"):
            try:
                schema = schema.merge(source.schema(), where=f" (edge source '{s.info.name}')")
            except ValueError as exc:
                problems.append(f"graph.edge_sources.{k}: {exc}")
        edge_sources[k] = (s, source)
    if problems:
        raise fail()
    plan = Plan(config, Path(base_dir), registry, ds, dataset, modalities, edge_sources, enc,
                {k: v for k, v in tasks.items() if v is not None},
                {k: v for k, v in evals.items() if v is not None}, schema)
    if config.data.exclude_evaluation_test_molecules and plan.evaluations:
        plan.dataset = HeldOutFilter(dataset, plan)
    return plan


class HeldOutFilter(Dataset):
    """The leakage guard: the run's dataset without the records whose molecule an evaluation of
    the plan holds out (:meth:`~cgc_framework.contracts.Evaluator.held_out_molecules`).

    The held-out sets are collected lazily, on the first :meth:`records` call (evaluators may read
    benchmark files to list them), so composing a plan stays cheap. Each dropped record is added
    to the :class:`SkipLog` under the component ``leakage_guard`` with the reason
    ``held out: in the <where> of evaluation '<key>' (<evaluator>)``; nothing is dropped silently.
    Every other attribute is the wrapped dataset's.
    """

    def __init__(self, inner: Dataset, plan: Plan):
        self.inner = inner
        self._plan = plan
        self._held: list[tuple[str, str, HeldOutMolecules]] | None = None
        self.dropped = 0
        self.dropped_molecules: set[str] = set()

    def __getattr__(self, name: str) -> Any:  # only reached for attributes not set here
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def held_out(self) -> list[tuple[str, str, HeldOutMolecules]]:
        """``[(evaluation key, evaluator name, HeldOutMolecules)]`` of the evaluations that hold
        molecules out (computed once)."""
        if self._held is None:
            held = []
            plan = self._plan
            for key, spec in plan.evaluations.items():
                evaluator = plan.registry.create("evaluator", spec.info.name, spec.params)
                listing = getattr(evaluator, "held_out_molecules", None)  # duck-typed evaluators: none
                if listing is None:
                    continue
                with plan.registry.guard(spec.info, "listing its held-out molecules"):
                    h = listing(plan)
                if h is not None and h.keys:
                    held.append((key, spec.info.name, h))
            self._held = held
        return self._held

    def records(self, skips: SkipLog) -> Iterator[Record]:
        held = self.held_out()
        self.dropped, self.dropped_molecules = 0, set()
        if not held:
            yield from self.inner.records(skips)
            return
        for record in self.inner.records(skips):
            reason = None
            for key, name, h in held:
                mol = h.key_of(record)
                if mol is not None and mol in h.keys:
                    reason = f"held out: in the {h.keys[mol]} of evaluation '{key}' ({name})"
                    break
            if reason is None:
                yield record
                continue
            self.dropped += 1
            self.dropped_molecules.add(mol)  # type: ignore[arg-type]
            skips.add(record.id, LEAKAGE_GUARD, "smiles", record.fields.get("smiles"), reason)

    def describe(self) -> dict[str, Any]:
        info = dict(self.inner.describe())
        if self._held:
            sets = "; ".join(f"'{k}' ({n}): {len(h.keys)} molecules" for k, n, h in self._held)
            info["leakage guard (data.exclude_evaluation_test_molecules)"] = (
                f"evaluation molecules held out of pretraining: {sets}; {self.dropped} records of "
                f"{len(self.dropped_molecules)} such molecules left out (listed in skipped_records.csv)")
        return info


def _builders_for(registry: PluginRegistry, modality: str) -> list[str]:
    names = []
    for name in registry.names("graph_builder"):
        info = registry.get("graph_builder", name)
        if getattr(info.factory, "modality", None) == modality:
            names.append(name)
    return names or ["(none installed)"]
