"""Composition: a validated config + the installed plugins -> a :class:`Plan` of concrete components.

Every component name is looked up and every ``params:`` mapping is validated by the component's
own schema here, in the driver, before any data is read or any worker started. All problems are
collected and raised together as one :class:`~cgc_framework.plugin.errors.ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cgc_framework.engine.config import CGCConfig
from cgc_framework.engine.join import JoinedDataset, JoinedTable
from cgc_framework.engine.leakage import HeldOutFilter
from cgc_framework.engine.registry import PluginRegistry
from cgc_framework.plugin.contracts import EdgeSource, Modality
from cgc_framework.plugin.errors import ConfigError, UnknownComponentError
from cgc_framework.plugin.graph import EdgeType, GraphSchema
from cgc_framework.plugin.plan import ComponentSpec, ModalityPlan, Plan


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
    if config.model.init is not None:
        from cgc_framework.engine.checkpoint import CheckpointError, resolve_checkpoint

        try:
            resolve_checkpoint(config.model.init.checkpoint, registry, Path(base_dir))
        except CheckpointError as exc:
            problems.append(f"model.init.checkpoint: {exc}")
    if problems:
        raise fail()

    assert ds is not None and enc is not None
    dataset = registry.create("dataset", ds.info.name, ds.params)
    try:
        joins = [JoinedTable(j, Path(base_dir), i) for i, j in enumerate(config.data.join)]
    except ConfigError as exc:
        raise ConfigError(source, exc.problems) from None
    modalities: dict[str, ModalityPlan] = {}
    schema = GraphSchema()
    declared_by: dict[str | EdgeType, str] = {}
    for mod_name, (modality, b) in builder_specs.items():
        builder = registry.create("graph_builder", b.info.name, b.params)
        if builder.modality != mod_name:
            problems.append(f"graph.modalities.{mod_name}.builder: '{b.info.name}' builds modality "
                            f"'{builder.modality}', not '{mod_name}'. Builders for '{mod_name}': "
                            + ", ".join(_builders_for(registry, mod_name)))
            continue
        with registry.guard(b.info, "publishing its schema"):
            fragment = builder.schema()
            try:
                schema = schema.merge(fragment, where=f" (builder '{b.info.name}')")
            except ValueError as exc:
                problems.append(f"graph.modalities.{mod_name}: {exc}")
                continue
        declared_by.update({t: b.key for t in [*fragment.node_types, *fragment.edge_types]
                            if t not in declared_by})
        modalities[mod_name] = ModalityPlan(mod_name, modality, b, builder,
                                            config.graph.modalities[mod_name].required)
    edge_sources: dict[str, tuple[ComponentSpec, EdgeSource]] = {}
    for k, s in edge_specs.items():
        assert s is not None
        source = registry.create("edge_source", s.info.name, s.params)
        with registry.guard(s.info, "binding to the builders' schema"):
            try:
                source.bind(schema)
            except ValueError as exc:
                problems.append(f"graph.edge_sources.{k}: {exc}")
                continue
        with registry.guard(s.info, "publishing its schema"):
            fragment = source.schema()
            try:
                schema = schema.merge(fragment, where=f" (edge source '{s.info.name}')")
            except ValueError as exc:
                problems.append(f"graph.edge_sources.{k}: {exc}")
            declared_by.update({t: s.key for t in [*fragment.node_types, *fragment.edge_types]
                                if t not in declared_by})
        edge_sources[k] = (s, source)
    if problems:
        raise fail()
    plan = Plan(config, Path(base_dir), registry, ds, dataset, modalities, edge_sources, enc,
                {k: v for k, v in tasks.items() if v is not None},
                {k: v for k, v in evals.items() if v is not None}, schema, declared_by, joins)
    if joins:
        plan.dataset = JoinedDataset(dataset, joins)
    if config.data.exclude_evaluation_test_molecules and plan.evaluations:
        plan.dataset = HeldOutFilter(plan.dataset, plan)
    return plan


def _builders_for(registry: PluginRegistry, modality: str) -> list[str]:
    names = []
    for name in registry.names("graph_builder"):
        info = registry.get("graph_builder", name)
        if getattr(info.factory, "modality", None) == modality:
            names.append(name)
    return names or ["(none installed)"]
