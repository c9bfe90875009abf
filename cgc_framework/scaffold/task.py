"""``--kind task``: a self-supervised pretraining task (a loss with its own heads)."""

from __future__ import annotations

from cgc_framework.scaffold.common import Component, Kind

TASK = '''\
"""The '$name' pretraining task: recover hidden node features at the graph level.

It hides the features of a random fraction of each node type's nodes, then predicts, per
experiment graph, the type's mean ORIGINAL features from the encoder's embedding of the corrupted
graph (the model has to infer what was hidden from the rest of the graph).

Replace the objective with your own. Contract (``cgc_framework.plugin.PretrainingTask``):

- the framework builds the task with the run's schema and the encoder's width,
  ``factory(params, schema=schema, hidden_dim=encoder.hidden_dim)``, once per training worker;
  a task that cannot work with the schema raises ``ValueError`` there (the run reports it as a
  ``PluginError`` naming this plugin);
- ``forward(batch, encoder)`` returns a ``TaskOutput``: a scalar loss (mean over the batch),
  differentiable w.r.t. the encoder and the task's heads, plus named scalar logs (written to the
  metrics as ``<task key>/<name>``);
- the task builds its own view of the batch and never changes ``batch`` in place; its randomness
  comes from torch's global generator, so seeded runs repeat;
- ``stages[].weights`` in registry.yaml weight its loss against the other tasks'.

Corruption: hidden nodes get ``x = 0`` and ``node_mask = True``; ``SchemaInputEmbedding`` then adds
its learned mask token, so "hidden" differs from "all-zero features".
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from cgc_framework.plugin import Encoder, GraphSchema, ParamsModel, PretrainingTask, TaskOutput, readout

NAME = "$name"


class ${cls}Params(ParamsModel):
    """``tasks.<key>.params`` in registry.yaml (unknown keys are errors)."""

    corrupt_rate: float = Field(0.3, gt=0, lt=1, description="fraction of each type's nodes whose features are hidden")
    node_types: list[str] | None = Field(
        None, description="node types to predict (default: every type with continuous features)")


class ${cls}Task(PretrainingTask):
    """See the module docstring. Logs ``<node type>_loss`` for each predicted type in the batch."""

    def __init__(self, params: ${cls}Params | None, schema: GraphSchema, hidden_dim: int):
        super().__init__()
        self.params = p = params or ${cls}Params()
        with_x = [t for t, spec in schema.node_types.items() if spec.continuous_dim]
        self.types = with_x if p.node_types is None else list(p.node_types)
        unusable = [t for t in self.types if t not in with_x]
        if unusable or not self.types:
            raise ValueError(f"'{NAME}' predicts continuous node features; node type(s) {unusable or 'none'} "
                             f"cannot be predicted. Node types of the run's schema with continuous features: {with_x}")
        self.heads = nn.ModuleDict({
            t: nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                             nn.Linear(hidden_dim, schema.node_types[t].continuous_dim))
            for t in self.types})

    def forward(self, batch: HeteroData, encoder: Encoder) -> TaskOutput:
        view = copy.copy(batch)  # new stores sharing the tensors: setting x below leaves `batch` intact
        for t in self.types:
            x = batch[t].x
            hide = torch.rand(x.size(0), device=x.device) < self.params.corrupt_rate  # [N_t]
            view[t].x = x.masked_fill(hide.unsqueeze(1), 0.0)
            view[t].node_mask = hide
        z = encoder(view)
        num_graphs = int(getattr(batch, "num_graphs", 1) or 1)
        losses: dict[str, Tensor] = {}
        for t in self.types:
            present = _graphs_with_nodes(batch, t, num_graphs)  # [B] bool
            if not present.any():
                continue
            target = readout(batch[t].x, batch, t)  # [B, F]: each graph's mean original features
            pred = self.heads[t](encoder.readout(z, view, [t]))  # [B, F]
            losses[t] = F.mse_loss(pred[present], target[present])
        if not losses:  # no predicted type in this batch: a zero loss that still depends on the model
            return TaskOutput(sum(zt.sum() for zt in z.values()) * 0.0)
        loss = torch.stack(list(losses.values())).mean()
        return TaskOutput(loss, {f"{t}_loss": value for t, value in losses.items()})


def _graphs_with_nodes(batch: HeteroData, node_type: str, num_graphs: int) -> Tensor:
    """``[num_graphs]`` bool: which graphs of the batch have nodes of ``node_type``."""
    store = batch[node_type]
    index = store.get("batch")
    if index is None:  # a single graph, not a PyG batch
        return torch.tensor([store.x.size(0) > 0], device=store.x.device)
    return torch.bincount(index, minlength=num_graphs)[:num_graphs] > 0
'''

TEST = '''\
"""The task is found through its entry point, computes a trainable loss on real batched experiment
graphs without touching the batch, pretrains in a run, and refuses node types it cannot predict."""

import pytest
import torch
from torch_geometric.data import Batch

DIST = "$dist"
NAME = "$name"
TASK = {"tasks": {"t": {"name": NAME, "params": {"corrupt_rate": 0.5}}},
        "stages": [{"name": "pretrain", "epochs": 1, "weights": {"t": 1.0}}]}


$registered_test


def test_loss_on_a_real_batch_trains_heads_and_encoder(registry, make_plan, experiment_graphs):
    plan = make_plan(TASK)
    torch.manual_seed(0)
    encoder = registry.create("encoder", "hgt", plan.encoder.params, schema=plan.schema)
    task = registry.create("pretraining_task", NAME, plan.tasks["t"].params, schema=plan.schema,
                           hidden_dim=encoder.hidden_dim)
    batch = Batch.from_data_list(experiment_graphs(plan, 3))
    before = {t: batch[t].x.clone() for t in batch.node_types}
    out = task(batch, encoder)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert set(out.logs) == {"atom_loss", "compartment_loss", "channel_loss"}  # compound has no x
    out.loss.backward()
    assert all(p.grad is not None for p in task.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    assert all(torch.equal(batch[t].x, x) for t, x in before.items())  # batch left intact
    assert "node_mask" not in batch["atom"]


def test_pretrains_in_a_run(pretrain):
    metrics = pretrain(TASK).metrics
    assert {"t/loss", "t/atom_loss", "t/channel_loss"} <= set(metrics.columns)
    assert metrics["t/loss"].notna().all()


def test_node_types_it_cannot_predict_are_refused(registry, make_plan):
    plan = make_plan(TASK)
    info = registry.get("pretraining_task", NAME)
    for wrong in (["nope"], ["compound"]):  # not in the schema; no continuous features
        with pytest.raises(ValueError, match="cannot be predicted"):
            info.factory(info.params(node_types=wrong), schema=plan.schema, hidden_dim=16)
'''

KIND = Kind(
    help="a self-supervised pretraining task (a loss with its own heads)",
    summary="the '$name' pretraining task",
    components=(Component("pretraining_task", "$name", "task:${cls}Task", "task:${cls}Params",
                          "hide a fraction of each node type's features; predict each graph's mean "
                          "original features per type (MSE)"),),
    files={"$package/task.py": TASK, "tests/test_plugin.py": TEST},
    about="The example hides the features of a random fraction of each node type's nodes and trains a "
          "head to predict, per experiment graph, the type's mean original features from the encoder's "
          "embedding of the corrupted graph, returning a `TaskOutput` (loss + per-type logs) "
          "(`$package/task.py`). Replace `forward()` with your objective; never modify the batch in place.",
    usage="""\
Use it in `registry.yaml` (its key in `tasks:` is what the stages weight):

```yaml
tasks:
  mask: {name: masked_recovery}
  $name: {name: $name, params: {corrupt_rate: 0.3}}
stages:
  - {name: pretrain, epochs: 8, weights: {mask: 1.0, $name: 0.5}}
```""",
)
