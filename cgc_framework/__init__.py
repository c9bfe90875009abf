"""cgc-framework: Causal Graph-Contrast pretraining on heterogeneous molecule-protein-cell graphs.

Layers (``docs/architecture.md``):

- :mod:`cgc_framework.plugin` — the plugin API: hook specs, contracts, graph conventions and roles,
  records, errors, the :class:`~cgc_framework.plugin.plan.Plan`. What a plugin author imports.
- :mod:`cgc_framework.engine` — the machinery: plugin registry, config schema, composition,
  featurization and its cache, training shards, the staged loop, the Ray Train orchestrator,
  checkpoints, reports.
- :mod:`cgc_framework.api` (this package's top level re-exports it), :mod:`cgc_framework.cli`,
  :mod:`cgc_framework.bench` (standardized sweeps), :mod:`cgc_framework.scaffold` — the tools.

Importing this package is cheap: the names below load their modules on first use.
"""

from __future__ import annotations

from importlib import import_module
from importlib import metadata as _metadata
from typing import Any

try:
    __version__ = _metadata.version("cgc-framework")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

_LAZY = {
    "hookimpl": "cgc_framework.plugin.hookspecs",
    "run": "cgc_framework.api",
    "resume": "cgc_framework.api",
    "dry_run": "cgc_framework.api",
    "plan_run": "cgc_framework.api",
    "load_pretrained": "cgc_framework.engine.pretrained",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cgc_framework' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
