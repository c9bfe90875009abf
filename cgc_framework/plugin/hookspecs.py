"""Hook specifications: every extension point of cgc-framework, in one file.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` and named after one
of the hooks below. It is found through the ``cgc_framework`` entry-point group of an installed
distribution::

    # pyproject.toml of a plugin distribution
    [project.entry-points.cgc_framework]
    my_modality = "my_package.plugin"

Every hook receives a ``register`` callback rather than returning a list, so a plugin can register
zero, one or many components, and the host records which distribution registered each one (listings
and error messages name it). The callback is the same for every kind::

    register(name: str, factory: Callable, *, params: type[pydantic.BaseModel] | None = None,
             description: str = "")

``name`` is what ``registry.yaml`` uses; it must be unique within its kind. ``params`` is the
pydantic model that validates the component's ``params:`` mapping from YAML (unknown keys are
errors); ``factory`` receives the validated params object and the keyword arguments listed per hook
below, and returns the component (``params`` is ``None`` for a component without a params model).
Factories are called when a run needs the component — possibly more than once (an evaluator is
also asked for its held-out molecules before pretraining; encoders and tasks are built on every
Ray worker) — and never at import time, so importing a plugin must stay cheap: ``factory`` and
``params`` may be given as lazy references ``"package.module:Name"``, imported only when the
component is used. ``register`` checks its arguments and raises a
:class:`~cgc_framework.plugin.errors.PluginError` naming the plugin.

The objects a factory returns implement the abstract classes of :mod:`cgc_framework.plugin.contracts`.
Errors: a factory or component that raises anything but :class:`cgc_framework.plugin.records.RecordError`
is reported as a :class:`cgc_framework.plugin.errors.PluginError` that names the distribution, the entry
point and the component. ``RecordError`` means "this one input record is bad": the record is
skipped, counted and listed in the run's ``summary.md``.
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT_NAME = "cgc_framework"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[..., None]


@hookspec
def register_datasets(register: Register) -> None:
    """Register sources of experiment records.

    ``factory(params) -> contracts.Dataset``. Called once per run in the driver, before training.
    A dataset yields :class:`~cgc_framework.plugin.records.Record` objects whose ``fields`` hold the values
    the modalities read (e.g. ``"smiles"``, ``"dose_um"``, ``"cell_treated"``), and reports records
    it cannot use to the ``SkipLog`` it is given. Relative paths in params are resolved against the
    directory of ``registry.yaml`` (use :data:`cgc_framework.plugin.params.ExistingPath`).
    Example: ``register("cellpainting_experiments", CellPaintingExperiments, params=ExperimentParams)``.
    """


@hookspec
def register_modalities(register: Register) -> None:
    """Register modalities: the kinds of entity an experiment graph joins (molecule, protein, cell).

    ``factory(None) -> contracts.Modality`` (modalities take no params). A modality names the record field its graph
    builders read and the node types it contributes. ``registry.yaml`` maps each modality used to
    one graph builder of that modality: ``graph: {modalities: {molecule: {builder: rdkit_molecule}}}``.
    """


@hookspec
def register_graph_builders(register: Register) -> None:
    """Register graph builders: raw value of one modality -> typed subgraph.

    ``factory(params) -> contracts.GraphBuilder``. Called once per run in the driver. The builder
    publishes its :class:`~cgc_framework.plugin.graph.GraphSchema` fragment (node/edge types, feature
    names and dimensions) before any record is built; ``build(value)`` must return tensors that
    conform to it, and raise ``RecordError`` (with the reason) for a bad value. ``version`` enters
    featurization cache keys: bump it whenever the output for the same input changes.
    """


@hookspec
def register_edge_sources(register: Register) -> None:
    """Register cross-scale edge sources (drug-target tables, compound-in-experiment co-occurrence).

    ``factory(params) -> contracts.EdgeSource``. An edge source publishes the edge types it adds
    (with feature specs) and, per record, adds edges between node types built by the modalities.
    """


@hookspec
def register_encoders(register: Register) -> None:
    """Register graph encoders.

    ``factory(params, schema=GraphSchema) -> contracts.Encoder`` (a ``torch.nn.Module``). Called
    on every training worker. ``encoder(batch)`` maps a batched ``HeteroData`` that conforms to
    ``schema`` to ``{node_type: Tensor[num_nodes_of_type, encoder.hidden_dim]}`` for every node
    type of the schema. Encoders embed raw features with
    :class:`cgc_framework.plugin.input_embedding.SchemaInputEmbedding` so that masking tasks' mask tokens work.
    """


@hookspec
def register_pretraining_tasks(register: Register) -> None:
    """Register self-supervised pretraining tasks (losses with their own heads).

    ``factory(params, schema=GraphSchema, hidden_dim=int) -> contracts.PretrainingTask`` (a
    ``torch.nn.Module``). Called on every training worker. ``task(batch, encoder)`` returns a
    :class:`~cgc_framework.plugin.contracts.TaskOutput`: a scalar loss (mean over the batch) and named
    scalar logs. A task builds its own view of the batch (corruption, dropped edges) and must not
    modify ``batch`` in place. The stage schedule weights task losses with the YAML's lambdas.
    """


@hookspec
def register_evaluators(register: Register) -> None:
    """Register evaluators that run after pretraining.

    ``factory(params) -> contracts.Evaluator``. ``evaluator.evaluate(context)`` receives an
    :class:`~cgc_framework.plugin.contracts.EvaluationContext` (run directory, trained encoder, schema,
    builders) and returns tidy tables plus a Markdown paragraph for ``summary.md``.
    """


@hookspec
def register_commands(register: Register) -> None:
    """Register command-line commands (the way ``llm`` plugins add commands).

    ``register(name, main, description="")`` with ``main(argv: list[str] | None) -> int`` (an exit
    code; 2 for bad input, after printing ``error: <message>`` to stderr). The command runs as
    ``cgc <name> ARGS...``; a distribution may also declare a console script for it (the built-in
    what-if is ``cgc predict`` and ``cgc-predict``). ``main`` may be a ``"module:function"`` lazy
    reference, so that ``cgc --help`` does not import the command's dependencies.
    """


@hookspec
def register_pretrained_models(register: Register) -> None:
    """Register pretrained weights a distribution ships.

    ``register(name, factory, description="")`` with ``factory(None) -> pathlib.Path`` of a
    cgc-framework checkpoint (usually package data). ``load_pretrained(name)``, ``cgc-embed --model
    name`` and ``model.init.checkpoint: name`` in ``registry.yaml`` resolve the name to that file. The
    checkpoint must load with ``torch.load(..., weights_only=True)``; ship a model card beside it
    (the config and command that produced it, data checksums, compute, evaluation results).
    """


HOOK_KINDS: dict[str, str] = {
    "dataset": "register_datasets",
    "modality": "register_modalities",
    "graph_builder": "register_graph_builders",
    "edge_source": "register_edge_sources",
    "encoder": "register_encoders",
    "pretraining_task": "register_pretraining_tasks",
    "evaluator": "register_evaluators",
    "command": "register_commands",
    "pretrained_model": "register_pretrained_models",
}
"""Component kind (as used in listings and error messages) -> the hook that registers it."""
