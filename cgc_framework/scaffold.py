"""``cgc-plugin new NAME --kind modality``: write a ready-to-install plugin distribution.

The generated project has a ``pyproject.toml`` with the ``cgc_framework`` entry point, a package
whose ``__init__.py`` registers the components, a graph builder with its schema and params model,
and a test that loads the plugin through the real entry point and builds a graph. It installs with
``pip install -e ./NAME`` and its test passes as generated; replace the example logic with yours.
"""

from __future__ import annotations

import keyword
import re
import textwrap
from pathlib import Path

SUPPORTED_KINDS = ("modality",)

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A cgc-framework plugin adding the '{name}' modality"
requires-python = ">=3.10"
dependencies = ["cgc-framework"]

[project.optional-dependencies]
test = ["pytest"]

# cgc-framework finds plugins through this entry-point group.
[project.entry-points.cgc_framework]
{package} = "{package}"

[tool.setuptools]
packages = ["{package}"]
"""

_INIT = '''\
"""cgc-framework plugin: the '{name}' modality and its graph builder."""

from cgc_framework import hookimpl
from cgc_framework.plugin.contracts import Modality

from .builder import {cls}Builder, {cls}Params

RECORD_FIELD = "{name}_values"


def _modality(params: None) -> Modality:
    return Modality(record_field=RECORD_FIELD, description="{name}: a vector of measurements per record")


@hookimpl
def register_modalities(register):
    register("{name}", _modality, description="{name}: a vector of measurements per record")


@hookimpl
def register_graph_builders(register):
    register("{name}_builder", {cls}Builder, params={cls}Params,
             description="{name} values -> one node per measurement")
'''

_BUILDER = '''\
"""Builds the '{name}' subgraph: one ``{name}_item`` node per measured value, chained in order.

Replace ``build`` with your own parsing. Contract (see ``cgc_framework.plugin.contracts.GraphBuilder``):
``schema()`` declares node/edge types and features; ``build(value)`` returns tensors that follow
it, and raises ``RecordError`` with a reason for a bad value (the run counts and lists it).
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch_geometric.data import HeteroData

from cgc_framework.plugin.contracts import GraphBuilder
from cgc_framework.plugin.graph import EdgeTypeSpec, FeatureSpec, GraphSchema, NodeTypeSpec
from cgc_framework.plugin.records import RecordError

NODE = "{name}_item"


class {cls}Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scale: float = Field(1.0, gt=0, description="values are divided by this (units -> model scale)")


class {cls}Builder(GraphBuilder):
    modality = "{name}"
    version = "1"  # bump whenever the output for the same input changes (cache keys use it)

    def __init__(self, params: {cls}Params | None = None):
        self.params = params or {cls}Params()

    def params_key(self) -> dict:
        return self.params.model_dump()

    def schema(self) -> GraphSchema:
        node = NodeTypeSpec((FeatureSpec.continuous("value", description="scaled measurement"),),
                            name=NODE, description="one measured value")
        edge = EdgeTypeSpec((), src=NODE, rel="next", dst=NODE, description="consecutive values, both ways")
        return GraphSchema.of([node], [edge])

    def build(self, value) -> HeteroData:
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError) as exc:
            raise RecordError(f"expected a list of numbers, got {{value!r}}: {{exc}}") from None
        if not values:
            raise RecordError("no values")
        if not all(math.isfinite(v) for v in values):
            raise RecordError("NaN or infinite value")
        n = len(values)
        data = HeteroData()
        data[NODE].x = torch.tensor(values, dtype=torch.float32).unsqueeze(1) / self.params.scale
        data[NODE].x_cat = torch.zeros(n, 0, dtype=torch.long)
        data[NODE].num_nodes = n
        src = torch.arange(n - 1)
        e = data[NODE, "next", NODE]
        e.edge_index = torch.cat([torch.stack([src, src + 1]), torch.stack([src + 1, src])], dim=1)
        e.edge_attr = torch.zeros(e.edge_index.size(1), 0)
        e.edge_attr_cat = torch.zeros(e.edge_index.size(1), 0, dtype=torch.long)
        return data
'''

_TEST = '''\
"""The plugin is found through its entry point and builds schema-conformant graphs."""

import pytest

from cgc_framework.engine.registry import load_registry
from cgc_framework.plugin.records import RecordError


def test_registered_through_the_entry_point():
    reg = load_registry()
    info = reg.get("graph_builder", "{name}_builder")
    assert info.distribution == "{dist}"
    assert reg.get("modality", "{name}").name == "{name}"


def test_builds_a_graph_that_follows_its_schema():
    reg = load_registry()
    builder = reg.create("graph_builder", "{name}_builder", reg.get("graph_builder", "{name}_builder").params())
    schema = builder.schema()
    data = schema.conform(builder.build([1.0, 2.5, -0.5]))
    schema.validate(data)
    assert data["{name}_item"].x.squeeze(1).tolist() == [1.0, 2.5, -0.5]
    assert data["{name}_item", "next", "{name}_item"].edge_index.size(1) == 4


def test_bad_values_are_record_errors():
    reg = load_registry()
    builder = reg.create("graph_builder", "{name}_builder", None)
    with pytest.raises(RecordError, match="NaN"):
        builder.build([1.0, float("nan")])
'''

_README = """\
# {dist}

A [cgc-framework](https://pypi.org/project/cgc-framework/) plugin that adds the `{name}` modality.

```bash
pip install -e ".[test]"      # registers the plugin through the cgc_framework entry point
cgc-plugins                    # lists {name} and {name}_builder with this distribution
python -m pytest -q
```

Use it in `registry.yaml` (a dataset must provide the record field `{name}_values`):

```yaml
graph:
  modalities:
    {name}: {{builder: {name}_builder, params: {{scale: 1.0}}}}
```
"""


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise ValueError(f"plugin name {name!r} must be lower_snake_case (letters, digits, _), "
                         f"starting with a letter, e.g. 'l1000_expression'")


def new_plugin(name: str, kind: str, directory: Path) -> Path:
    """Write the plugin project ``directory/cgc-<name>`` and return its path."""
    _check_name(name)
    if kind not in SUPPORTED_KINDS:
        raise ValueError(f"--kind {kind!r} has no template yet; supported: {', '.join(SUPPORTED_KINDS)}")
    dist = f"cgc-{name.replace('_', '-')}"
    package = f"cgc_{name}"
    cls = "".join(part.capitalize() for part in name.split("_"))
    root = Path(directory) / dist
    if root.exists():
        raise FileExistsError(f"{root} already exists; choose another name or directory")
    fmt = {"name": name, "dist": dist, "package": package, "cls": cls}
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"{package}/__init__.py": _INIT,
        f"{package}/builder.py": _BUILDER,
        "tests/test_plugin.py": _TEST,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(template).format(**fmt))
    return root
