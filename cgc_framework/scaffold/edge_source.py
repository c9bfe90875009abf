"""``--kind edge_source``: cross-scale edges between node types that the graph builders declare."""

from __future__ import annotations

from cgc_framework.scaffold.common import Component, Kind

SOURCE = '''\
"""The '$name' edge source: cross-scale edges between node types of two builders.

It links every ``src_type`` node of an experiment graph to every ``dst_type`` node, with log10 of a
numeric record field (default: the dose in uM) as edge feature.

Defaults: ``compound`` (declared by the ``rdkit_molecule`` builder) -> ``channel`` (declared by
``cellprofiler_profile``), plus the reverse edges so that messages flow both ways.

Replace ``add_edges`` with your own linking (a compound -> target table, a similarity threshold).
Contract (``cgc_framework.plugin.EdgeSource``):

- ``schema()`` declares the edge types this source adds, with their features and roles. Their end
  node types are declared by the builders that build them (the run's merged schema must contain
  them; composing the run fails naming the type otherwise); a node type only this source adds is
  declared here too.
- ``add_edges(record, data)`` adds the edges in place, after every builder has built its subgraph,
  following ``cgc_framework.plugin.graph``: ``edge_index`` int64 ``[2, E]`` in the graph's local node
  numbering, ``edge_attr`` float32 ``[E, F]``; it must not change other components' tensors. A record it
  has nothing to link is left as it is; a record it cannot link raises ``RecordError`` (counted and
  listed by the run).

Roles (``cgc_framework.plugin.roles``): an edge with exactly one end in a ``cell_state`` type joins
the intervention to the treated cell, so it is declared ``role=TREATMENT`` and leak-free views (the
contrast and causal tasks, evaluation embeddings) drop it. Declare ``role=""`` for edges that stay
inside one side (e.g. compound -> protein target).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch_geometric.data import HeteroData

from cgc_framework.plugin import EdgeSource, EdgeTypeSpec, FeatureSpec, GraphSchema, ParamsModel, Record, RecordError
from cgc_framework.plugin.roles import TREATMENT

NAME = "$name"


class ${cls}Params(ParamsModel):
    """``params:`` of the edge source in registry.yaml (unknown keys are errors)."""

    src_type: str = Field("compound", description="source node type (declared by a builder)")
    dst_type: str = Field("channel", description="destination node type (declared by a builder)")
    value_field: str = Field("dose_um", description="record field with a positive number (edge feature: log10)")
    reverse: bool = Field(True, description="also add (dst_type, ${name}_rev, src_type)")


class ${cls}EdgeSource(EdgeSource):
    def __init__(self, params: ${cls}Params | None = None):
        self.p = params or ${cls}Params()

    def edge_types(self) -> list[tuple[str, str, str]]:
        p = self.p
        forward = (p.src_type, NAME, p.dst_type)
        return [forward, (p.dst_type, f"{NAME}_rev", p.src_type)] if p.reverse else [forward]

    def schema(self) -> GraphSchema:
        value = FeatureSpec.continuous(f"log10_{self.p.value_field}", description=f"log10 of {self.p.value_field}")
        # endpoints: declared by the builders (merging the run's schema checks that they exist)
        return GraphSchema.of([], [EdgeTypeSpec((value,), src=s, rel=r, dst=d, role=TREATMENT,
                                                description=f"every {s} -> every {d} of the experiment")
                                   for s, r, d in self.edge_types()])

    def add_edges(self, record: Record, data: HeteroData) -> None:
        raw = record.fields.get(self.p.value_field)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = float("nan")
        if not math.isfinite(value) or value <= 0:
            raise RecordError(f"'{NAME}' edges need a positive number in the record field "
                              f"'{self.p.value_field}', got {raw!r}")
        src, dst = self.p.src_type, self.p.dst_type
        if src not in data.node_types or dst not in data.node_types:
            return  # nothing to link in this record (e.g. an optional modality is missing)
        ns, nd = int(data[src].num_nodes or 0), int(data[dst].num_nodes or 0)
        s = torch.arange(ns).repeat_interleave(nd)  # [ns * nd]: 0 0 .. 1 1 ..
        d = torch.arange(nd).repeat(ns)  # [ns * nd]: 0 1 .. 0 1 ..
        attr = torch.full((ns * nd, 1), math.log10(value), dtype=torch.float32)
        for (a, rel, b), index in zip(self.edge_types(), (torch.stack([s, d]), torch.stack([d, s]))):
            data[a, rel, b].edge_index = index
            data[a, rel, b].edge_attr = attr.clone()
'''

TEST = '''\
"""The edge source is found through its entry point, links real experiment graphs as its schema
declares, and rejects a record without a usable value."""

import pytest
import torch

from cgc_framework.plugin import Record, RecordError

DIST = "$dist"
NAME = "$name"
FORWARD, REVERSE = ("compound", NAME, "channel"), ("channel", f"{NAME}_rev", "compound")


$registered_test


def test_links_real_experiment_graphs_as_declared(make_plan, experiment_graphs):
    plan = make_plan({f"graph.edge_sources.{NAME}": {"name": NAME}})  # beside the built-in cooccurrence
    assert {FORWARD, REVERSE} <= set(plan.schema.edge_types)
    assert {FORWARD, REVERSE} <= set(plan.roles.treatment)  # dropped by leak-free views
    for g in experiment_graphs(plan, 3):
        plan.schema.validate(g)
        e = g[FORWARD]
        assert e.edge_index.size(1) == g["compound"].num_nodes * g["channel"].num_nodes == 15
        assert torch.allclose(e.edge_attr, torch.log10(g.dose_um).expand(15, 1))  # the record's dose
        assert torch.equal(g[REVERSE].edge_index, e.edge_index.flip(0))


def test_a_record_without_a_positive_value_is_a_record_error(registry, make_plan, experiment_graphs):
    source = registry.create("edge_source", NAME, None)
    graph = experiment_graphs(make_plan(), 1)[0]
    with pytest.raises(RecordError, match="positive number"):
        source.add_edges(Record("well-1", {"dose_um": None}), graph)
'''

KIND = Kind(
    help="cross-scale edges between node types the graph builders declare",
    summary="the '$name' edge source",
    components=(Component("edge_source", "$name", "edges:${cls}EdgeSource", "edges:${cls}Params",
                          "every compound -> every cell channel of the experiment (and back), log10 dose"),),
    files={"$package/edges.py": SOURCE, "tests/test_plugin.py": TEST},
    about="The example links every `compound` node (from `rdkit_molecule`) to every `channel` node (from "
          "`cellprofiler_profile`) of an experiment graph, with log10 of the record's dose as edge feature, "
          "and back (`$package/edges.py`). Replace `schema()` and `add_edges()` with your own linking; keep "
          "raising `RecordError` for a record that cannot be linked.",
    usage="""\
Use it in `registry.yaml`, beside the modalities whose node types it links:

```yaml
graph:
  edge_sources:
    $name: {name: $name, params: {src_type: compound, dst_type: channel, value_field: dose_um}}
```""",
)
