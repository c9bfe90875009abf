"""What every generated distribution shares, whatever its kind.

- :class:`Component` / :class:`Kind`: the description each kind module gives of its template;
- ``pyproject.toml`` and ``README.md`` templates;
- the package ``__init__.py``, generated from the kind's components: one ``@hookimpl`` per hook,
  every component registered as a lazy ``"module:Name"`` reference;
- ``tests/conftest.py``: fixtures that load the installed plugins and compose runs of the built-in
  components around the new one (embedded LINCS Cell Painting wells -> ``rdkit_molecule`` +
  ``cellprofiler_profile`` graphs), so every kind's tests work on real experiment graphs;
- the entry-point test every distribution starts with.

Templates are :class:`string.Template` text (``$name``, ``$dist``, ``$package``, ``$cls``, ...;
``$$`` is a dollar sign), so generated Python keeps its ``{}`` as they are.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Component:
    """One component a generated plugin registers.

    Attributes:
        kind: registry kind (a key of ``cgc_framework.plugin.hookspecs.HOOK_KINDS``).
        name: the name ``registry.yaml`` uses (template).
        factory: ``"module:Name"`` relative to the package, e.g. ``"encoder:${cls}Encoder"``.
        params: the params model, same form, or ``None``.
        description: one line for ``cgc-plugins`` (template).
    """

    kind: str
    name: str
    factory: str
    params: str | None
    description: str


@dataclass(frozen=True)
class Kind:
    """The template of one ``--kind``.

    Attributes:
        help: one line for ``cgc-plugin new --help``.
        summary: what the distribution adds, completing "A cgc-framework plugin adding ..." (template).
        components: what the package ``__init__`` registers.
        files: path (template, relative to the project) -> file template; the package ``__init__.py``,
            ``pyproject.toml``, ``README.md`` and ``tests/conftest.py`` are added from this module.
        about: README paragraph: what the example does and what to replace (template).
        usage: README section: how a run uses it (template).
        package_data: globs of data files shipped in the package (``pyproject.toml``).
    """

    help: str
    summary: str
    components: tuple[Component, ...]
    files: dict[str, str]
    about: str
    usage: str
    package_data: tuple[str, ...] = field(default=())


PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A cgc-framework plugin adding $summary"
requires-python = ">=3.10"
dependencies = ["cgc-framework"]

[project.optional-dependencies]
test = ["pytest"]

# cgc-framework finds plugins through this entry-point group.
[project.entry-points.cgc_framework]
$package = "$package"

[tool.setuptools]
packages = ["$package"]
$package_data
[tool.pytest.ini_options]
testpaths = ["tests"]
filterwarnings = ["ignore:.*torch\\\\.jit\\\\.script.*is deprecated:DeprecationWarning"]  # raised inside torch
"""

README = """\
# $dist

A [cgc-framework](https://pypi.org/project/cgc-framework/) plugin adding $summary.

$about

```bash
pip install -e ".[test]"      # registers the plugin through the cgc_framework entry point
cgc-plugins                    # lists $listed with this distribution
python -m pytest -q            # found through the entry point, real inputs, bad inputs
```

The tests (`tests/`) run the installed built-in components around this plugin on a few wells of
the embedded LINCS Cell Painting plate (`tests/conftest.py`); keep them passing as you replace the
example.

$usage
"""

INIT_DOC = '''\
"""The cgc-framework plugin ``$dist``.

It adds $summary.

Components are registered as lazy ``"module:Name"`` references: importing this package (which
``cgc-plugins`` and every run do) stays cheap; a module is imported when a run first uses its
component.
"""
'''

CONFTEST = '''\
"""Shared fixtures: the installed plugins, and small runs of the installed built-in components.

``BASE_CONFIG`` reads a few treated wells of the embedded LINCS Cell Painting plate
(``cellpainting_experiments``) and builds each well's experiment graph from the compound's SMILES
(``rdkit_molecule``: ``atom`` + ``compound`` nodes) and the well's profile (``cellprofiler_profile``:
``compartment`` + ``channel`` cell-state nodes), joined by ``cooccurrence`` (compound -> cell,
log10 dose). Tests put this plugin's component into it with ``{"dotted.key": value}`` changes.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import yaml

BASE_CONFIG = {
    "run": {"name": "plugin-test", "seed": 0},
    "data": {"dataset": {"name": "cellpainting_experiments"}, "max_records": 8},
    "graph": {"modalities": {"molecule": {"builder": "rdkit_molecule"},
                             "cell": {"builder": "cellprofiler_profile"}},
              "edge_sources": {"cooccurrence": {"name": "cooccurrence"}}},
    "model": {"encoder": {"name": "hgt", "params": {"hidden_dim": 16, "num_layers": 1, "heads": 2}}},
    "tasks": {"mask": {"name": "masked_recovery"}},
    "stages": [{"name": "mask", "epochs": 1, "weights": {"mask": 1.0}}],
    "optimizer": {"lr": 1.0e-3, "batch_size": 4},
    "trainer": {"num_workers": 0, "progress": False, "checkpoint_every_steps": None},
}


def config_with(changes: dict | None = None) -> dict:
    """``BASE_CONFIG`` with each ``"dotted.key": value`` of ``changes`` set (replacing what was there)."""
    cfg = copy.deepcopy(BASE_CONFIG)
    for key, value in (changes or {}).items():
        *parents, last = key.split(".")
        node = cfg
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return cfg


@pytest.fixture(scope="session")
def registry():
    """Every installed plugin, loaded through the ``cgc_framework`` entry points."""
    from cgc_framework.engine.registry import load_registry

    return load_registry()


@pytest.fixture(scope="session")
def config_file(tmp_path_factory):
    """``config_file(changes=None) -> Path``: ``config_with(changes)`` written as a registry.yaml."""

    def write(changes: dict | None = None):
        path = tmp_path_factory.mktemp("config") / "registry.yaml"
        path.write_text(yaml.safe_dump(config_with(changes), sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def make_plan(config_file, registry):
    """``make_plan(changes=None) -> Plan``: the run composed (validated, components built), not run."""
    from cgc_framework.api import plan_run

    return lambda changes=None: plan_run(config_file(changes), registry=registry)


@pytest.fixture(scope="session")
def experiment_graphs():
    """``experiment_graphs(plan, n=3) -> list[HeteroData]``: the graphs of the first ``n`` records of
    the plan's dataset, built exactly as a run builds them (conformed to ``plan.schema``)."""
    from cgc_framework.plugin import SkipLog

    def build(plan, n: int = 3):
        return plan.build_graphs(itertools.islice(plan.dataset.records(SkipLog()), n)).graphs

    return build


@pytest.fixture(scope="session")
def pretrain(config_file, tmp_path_factory):
    """``pretrain(changes=None) -> RunResult``: a real (tiny) pretraining run, in-process."""
    from cgc_framework.api import run

    return lambda changes=None: run(config_file(changes), run_dir=tmp_path_factory.mktemp("run"), progress=False)
'''

REGISTERED_TEST = '''\
def test_registered_through_the_entry_point(registry):
    for kind, name in $components:
        info = registry.get(kind, name)
        assert info.distribution == DIST, info.origin
        assert isinstance(info.factory_ref, str)  # lazy "module:Name": imported when a run uses it
        assert callable(info.factory)
'''


def init_py(components: tuple[Component, ...]) -> str:
    """The package ``__init__.py`` template: one ``@hookimpl`` per hook, lazy references."""
    from cgc_framework.plugin.hookspecs import HOOK_KINDS

    hooks: dict[str, list[Component]] = {}
    for c in components:
        hooks.setdefault(HOOK_KINDS[c.kind], []).append(c)
    out = [INIT_DOC, "from cgc_framework.plugin import hookimpl"]
    indent = " " * len("    register(")
    for hook, comps in hooks.items():
        out += ["", "", "@hookimpl", f"def {hook}(register):"]
        for c in comps:
            name, factory = json.dumps(c.name), json.dumps(f"$package.{c.factory}")
            args = [f"{name}, {factory}"] if len(name + factory) < 80 else [name, factory]
            if c.params:
                args.append(f"params={json.dumps(f'$package.{c.params}')}")
            lines = textwrap.wrap(c.description, 88, drop_whitespace=False) or [""]
            args.append("description=" + f"\n{indent}            ".join(json.dumps(line) for line in lines))
            out.append("    register(" + f",\n{indent}".join(args) + ")")
    return "\n".join(out) + "\n"


def registered_test(components: tuple[Component, ...]) -> str:
    """The entry-point test template (every component found, from this distribution, lazily)."""
    pairs = "[" + ",\n                       ".join(f"({json.dumps(c.kind)}, {json.dumps(c.name)})"
                                                  for c in components) + "]"
    return REGISTERED_TEST.replace("$components", pairs).rstrip("\n")


def package_data(globs: tuple[str, ...]) -> str:
    """The ``[tool.setuptools.package-data]`` table template (empty without data files)."""
    if not globs:
        return ""
    return f"\n[tool.setuptools.package-data]\n$package = [{', '.join(json.dumps(g) for g in globs)}]\n"
