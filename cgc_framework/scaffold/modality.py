"""``--kind modality``: a modality (the record field it reads) and a graph builder for it."""

from __future__ import annotations

from cgc_framework.scaffold.common import Component, Kind

BUILDER = '''\
"""The '$name' modality and its graph builder.

The builder turns a list of numbers (the record field ``RECORD_FIELD``) into one ``NODE`` node per
value, chained in order by ``next`` edges.

Replace ``build`` with your own parsing. Contract (``cgc_framework.plugin.GraphBuilder``):
``schema()`` declares node/edge types, their features and roles (``cgc_framework.plugin.roles``);
``build(value)`` returns tensors that follow it (storage rules: ``cgc_framework.plugin.graph``), and
raises ``RecordError`` with a reason for a bad value (the run counts and lists it).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch_geometric.data import HeteroData

from cgc_framework.plugin import (
    EdgeTypeSpec,
    FeatureSpec,
    GraphBuilder,
    GraphSchema,
    Modality,
    NodeTypeSpec,
    ParamsModel,
    RecordError,
)

RECORD_FIELD = "${name}_values"
NODE = "${name}_item"


def modality(params: None) -> Modality:
    """The '$name' modality: its builders read the record field ``RECORD_FIELD``."""
    return Modality(record_field=RECORD_FIELD, description="a vector of measurements per record")


class ${cls}Params(ParamsModel):
    """``params:`` of the builder in registry.yaml (unknown keys are errors)."""

    scale: float = Field(1.0, gt=0, description="values are divided by this (units -> model scale)")


class ${cls}Builder(GraphBuilder):
    modality = "$name"
    version = "1"  # bump whenever the output for the same input changes (cache keys use it)

    def __init__(self, params: ${cls}Params | None = None):
        self.params = params or ${cls}Params()

    def params_key(self) -> dict:
        return self.params.model_dump()

    def schema(self) -> GraphSchema:
        # role="" : these nodes are neither a molecule nor a cell state; see cgc_framework.plugin.roles
        node = NodeTypeSpec((FeatureSpec.continuous("value", description="scaled measurement"),),
                            name=NODE, description="one measured value")
        edge = EdgeTypeSpec((), src=NODE, rel="next", dst=NODE, description="consecutive values, both ways")
        return GraphSchema.of([node], [edge])

    def build(self, value) -> HeteroData:
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError) as exc:
            raise RecordError(f"expected a list of numbers, got {value!r}: {exc}") from None
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

TEST = '''\
"""The plugin is found through its entry point and builds schema-conformant graphs."""

import pytest

from cgc_framework.plugin import RecordError

DIST = "$dist"
BUILDER = "${name}_builder"
NODE = "${name}_item"


$registered_test


def test_builds_a_graph_that_follows_its_schema(registry):
    builder = registry.create("graph_builder", BUILDER, registry.get("graph_builder", BUILDER).params())
    schema = builder.schema()
    data = schema.conform(builder.build([1.0, 2.5, -0.5]))
    schema.validate(data)
    assert data[NODE].x.squeeze(1).tolist() == [1.0, 2.5, -0.5]
    assert data[NODE, "next", NODE].edge_index.size(1) == 4


def test_bad_values_are_record_errors(registry):
    builder = registry.create("graph_builder", BUILDER, None)
    with pytest.raises(RecordError, match="NaN"):
        builder.build([1.0, float("nan")])
'''

KIND = Kind(
    help="a modality (the record field it reads) and its graph builder",
    summary="the '$name' modality and its graph builder",
    components=(
        Component("modality", "$name", "builder:modality", None,
                  "$name: a vector of measurements per record"),
        Component("graph_builder", "${name}_builder", "builder:${cls}Builder", "builder:${cls}Params",
                  "$name values -> one node per measurement"),
    ),
    files={"$package/builder.py": BUILDER, "tests/test_plugin.py": TEST},
    about="The example reads a list of numbers from the record field `${name}_values` and builds one "
          "`${name}_item` node per value, chained by `next` edges (`$package/builder.py`). Replace "
          "`schema()` and `build()` with your own parsing; keep raising `RecordError` for bad values.",
    usage="""\
Use it in `registry.yaml` (a dataset must provide the record field `${name}_values`):

```yaml
graph:
  modalities:
    $name: {builder: ${name}_builder, params: {scale: 1.0}}
```""",
)
