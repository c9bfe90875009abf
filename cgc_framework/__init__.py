"""cgc-framework: Causal Graph-Contrast pretraining on heterogeneous molecule-protein-cell graphs.

Layers: :mod:`.hookspecs` (extension points) and :mod:`.contracts` (component interfaces),
:mod:`.plugins` (entry-point loading), :mod:`.config` / :mod:`.compose` (YAML -> plan),
:mod:`.graph` / :mod:`.embedding` (graph conventions), :mod:`.featurize` (records -> graphs),
:mod:`.training` / :mod:`.orchestrator` (staged loop on Ray Train), :mod:`.report`, :mod:`.api`,
:mod:`.cli`.
"""

from importlib import metadata as _metadata

from .hookspecs import hookimpl

try:
    __version__ = _metadata.version("cgc-framework")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"


def run(*args, **kwargs):  # noqa: D103 - documented in api.run
    from .api import run as _run

    return _run(*args, **kwargs)


run.__doc__ = "Pretrain as a config says and write a run directory (see :func:`cgc_framework.api.run`)."

__all__ = ["hookimpl", "run", "__version__"]
