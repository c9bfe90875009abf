"""The plugin API: everything a plugin author imports, from one place.

::

    from cgc_framework.plugin import (GraphBuilder, GraphSchema, NodeTypeSpec, FeatureSpec, Record,
                                      RecordError, hookimpl, roles)

========================  ====================================================================
module                    what it holds
========================  ====================================================================
``hookspecs``             every extension point (one hook per component kind), with its contract
``contracts``             the abstract classes components implement, ``EvaluationContext``
``trainable``             the contracts of components with weights (encoders, tasks; torch)
``graph``                 the schema of an experiment graph and the tensor storage convention
``roles``                 node/edge roles (molecule, cell state, treatment edges), views, readouts
``records``               ``Record``, ``RecordError``, ``SkipLog``: nothing is dropped silently
``errors``                the error types (every message names the input at fault and the fix)
``plan``                  ``Plan``: a run's config composed with the installed plugins
``params``                ``ExistingPath``, ``ParamsModel`` for a component's params model
``input_embedding``       ``SchemaInputEmbedding``: raw features -> vectors (and the MASK token)
``slots``                 names of the measured values of cell-state nodes (response features)
``metrics``               evaluation metrics (scikit-learn / SciPy) and confidence intervals
``provenance``            the files a component read and their sha256 (benchmark provenance)
========================  ====================================================================

``Pretrained`` (a model with its builders: embeddings of SMILES, profiles and graphs) is defined
in :mod:`cgc_framework.engine.pretrained` and re-exported here; evaluators get one from
:meth:`EvaluationContext.pretrained`.

Names are loaded on first use, so ``from cgc_framework.plugin import hookimpl`` in a plugin's
``__init__`` stays cheap (no torch import). ``docs/internals.md`` documents every object.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "hookspecs": ("hookimpl", "hookspec", "Register", "HOOK_KINDS"),
    "contracts": ("Comparison", "Dataset", "EdgeSource", "EvaluationContext", "EvaluationResult", "Evaluator",
                  "GraphBuilder", "HeldOutMolecules", "Modality"),
    "trainable": ("Encoder", "PretrainingTask", "ResponsePredictor", "TaskOutput", "response_head"),
    "graph": ("EdgeType", "EdgeTypeSpec", "FeatureSpec", "GraphSchema", "NodeTypeSpec", "SchemaViolation",
              "hetero_data", "readout"),
    "roles": ("Roles",),
    "records": ("Record", "RecordError", "RecordRejected", "SkipLog"),
    "errors": ("CGCError", "ConfigError", "DataError", "PluginError"),
    "plan": ("ComponentSpec", "ModalityPlan", "Plan"),
    "params": ("ExistingPath", "ParamsModel"),
    "input_embedding": ("SchemaInputEmbedding", "edge_key", "mask_index"),
    "slots": ("ValueSlots", "value_slots"),
    "cgc_framework.engine.pretrained": ("Pretrained",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
_MODULES = {m for m in _EXPORTS if "." not in m} | {"metrics", "provenance"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return import_module(f"{__name__}.{name}")
    if name in _WHERE:
        module = _WHERE[name]
        value = getattr(import_module(module if "." in module else f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE, *_MODULES])


__all__ = sorted(_WHERE)
