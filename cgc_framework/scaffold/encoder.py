"""``--kind encoder``: a heterogeneous GNN encoder."""

from __future__ import annotations

from cgc_framework.scaffold.common import Component, Kind

ENCODER = '''\
"""The '$name' encoder: a heterogeneous GraphSAGE.

Per-type input embeddings, then message passing over every edge type of the schema (PyG
``HeteroConv`` of one ``SAGEConv`` per edge type), with residuals and LayerNorm.

Replace the layers with your own. Contract (``cgc_framework.plugin.Encoder``):

- the framework builds the encoder with the run's merged schema, ``factory(params, schema=schema)``,
  once per training worker (and again when a checkpoint is loaded);
- ``forward(batch)`` maps a (batched) experiment graph that conforms to the schema to
  ``{node_type: Tensor[N_t, hidden_dim]}`` for EVERY node type of the schema (a type without nodes
  in the batch: an empty ``[0, hidden_dim]`` tensor);
- raw features go through ``SchemaInputEmbedding``, so the masking tasks' mask tokens
  (``node_mask`` / ``edge_mask`` set on the batch) reach the model;
- ``readout(z, batch, node_types)`` (molecule- and cell-level embeddings for tasks and evaluators)
  defaults to a per-graph mean; override it for your own pooling.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv, SAGEConv

from cgc_framework.plugin import Encoder, GraphSchema, ParamsModel, SchemaInputEmbedding


class ${cls}Params(ParamsModel):
    """``model.encoder.params`` in registry.yaml (unknown keys are errors)."""

    hidden_dim: int = Field(64, gt=0, description="width of every node embedding")
    num_layers: int = Field(2, gt=0, description="message-passing layers")
    aggr: Literal["mean", "sum", "max"] = Field("mean", description="neighbour aggregation within an edge type")
    dropout: float = Field(0.0, ge=0, lt=1)
    edge_features: bool = Field(
        True, description="add the mean embedding of each node's incoming edge features to its input embedding")


class ${cls}Encoder(Encoder):
    """Input embedding -> ``num_layers`` x (HeteroConv(SAGEConv per edge type) -> ReLU -> residual ->
    LayerNorm per node type). A node type without incoming edge types keeps its input embedding."""

    def __init__(self, params: ${cls}Params | None, schema: GraphSchema):
        super().__init__()
        p = params or ${cls}Params()
        d = self.hidden_dim = p.hidden_dim
        self.node_types, self.edge_types = schema.metadata()
        self.embed = SchemaInputEmbedding(schema, d, edge_features=p.edge_features)
        layers = p.num_layers if self.edge_types else 0
        self.convs = nn.ModuleList(
            HeteroConv({key: SAGEConv((d, d), d, aggr=p.aggr) for key in self.edge_types}, aggr="sum")
            for _ in range(layers))
        self.norms = nn.ModuleList(nn.ModuleDict({t: nn.LayerNorm(d) for t in self.node_types})
                                   for _ in range(layers))
        self.dropout = nn.Dropout(p.dropout)

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        missing = [t for t in self.node_types if t not in data.node_types]
        if missing:
            raise ValueError(f"the graph lacks the node type(s) {missing} of the encoder's schema; the run "
                             f"conforms every graph to it (schema.conform(graph) adds empty tensors)")
        h = self.embed(data)  # {node_type: [N_t, hidden_dim]}
        edges = {k: data[k].edge_index for k in self.edge_types if k in data.edge_types}
        for conv, norms in zip(self.convs, self.norms):
            out = conv(h, edges)  # only node types that receive messages
            h = {t: norms[t](h[t] + self.dropout(out[t].relu())) if t in out else h[t] for t in h}
        return h
'''

TEST = '''\
"""The encoder is found through its entry point, embeds every node type of real batched
experiment graphs, pretrains in a run, and refuses a graph that does not follow its schema."""

import pytest
import torch
from torch_geometric.data import Batch

DIST = "$dist"
NAME = "$name"
ENCODER = {"model.encoder": {"name": NAME, "params": {"hidden_dim": 16, "num_layers": 2}}}


$registered_test


def test_embeds_every_node_type_of_a_real_batch(registry, make_plan, experiment_graphs):
    plan = make_plan(ENCODER)
    torch.manual_seed(0)
    encoder = registry.create("encoder", NAME, plan.encoder.params, schema=plan.schema)
    batch = Batch.from_data_list(experiment_graphs(plan, 3))
    z = encoder(batch)
    assert set(z) == set(plan.schema.node_types) == {"atom", "compound", "compartment", "channel"}
    for t, zt in z.items():
        assert zt.shape == (batch[t].num_nodes, 16) and torch.isfinite(zt).all()
    molecules = encoder.readout(z, batch, plan.roles.molecule)  # [3 graphs, 16]
    cells = encoder.readout(z, batch, plan.roles.cell_state)
    assert molecules.shape == cells.shape == (3, 16)
    molecules.sum().backward()
    # atoms reach the molecule-level embedding (the compound node) only through message passing
    assert encoder.embed.node["atom"].embeddings[0].weight.grad.abs().sum() > 0


def test_pretrains_in_a_run(pretrain):
    result = pretrain(ENCODER)
    assert len(result.metrics) > 0 and result.metrics["loss"].notna().all()
    assert result.checkpoints[-1].name == "final.pt"


def test_a_graph_that_does_not_follow_the_schema_is_refused(registry, make_plan):
    plan = make_plan(ENCODER)
    encoder = registry.create("encoder", NAME, plan.encoder.params, schema=plan.schema)
    molecule_only = registry.create("graph_builder", "rdkit_molecule", None).build("CCO")  # no cell types
    with pytest.raises(ValueError, match="conform"):
        encoder(molecule_only)
'''

KIND = Kind(
    help="a heterogeneous GNN encoder (node embeddings for every node type)",
    summary="the '$name' encoder",
    components=(Component("encoder", "$name", "encoder:${cls}Encoder", "encoder:${cls}Params",
                          "per-type input embeddings + GraphSAGE over every edge type (HeteroConv), "
                          "residuals and LayerNorm"),),
    files={"$package/encoder.py": ENCODER, "tests/test_plugin.py": TEST},
    about="The example embeds each node type's raw features with `SchemaInputEmbedding` and passes "
          "messages over every edge type of the run's schema with PyG's `HeteroConv` of `SAGEConv`, "
          "returning `{node_type: [N, hidden_dim]}` for every schema node type (`$package/encoder.py`). "
          "Replace the layers with your architecture; keep the input embedding and the output contract.",
    usage="""\
Use it in `registry.yaml`:

```yaml
model:
  encoder: {name: $name, params: {hidden_dim: 64, num_layers: 2, aggr: mean}}
```""",
)
