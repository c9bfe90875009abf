"""Data parallelism: 1 worker x batch B and 2 workers x batch B/2 take the same optimizer steps
(streaming sharded graphs in windowed order)."""

from __future__ import annotations

import sys

import pytest
import torch

from cgc_framework import hookimpl
from cgc_framework.api import run
from cgc_framework.engine.checkpoint import load_checkpoint
from tests.support import MACHINERY, one_stage


class _GraphSizeTask:
    """Test-only task with a per-graph mean loss and no randomness: predict atoms per graph."""

    @hookimpl
    def register_pretraining_tasks(self, register):
        from cgc_framework.plugin.contracts import PretrainingTask, TaskOutput
        from cgc_framework.plugin.graph import readout

        class GraphSize(PretrainingTask):
            def __init__(self, params, schema, hidden_dim):
                super().__init__()
                self.head = torch.nn.Linear(hidden_dim, 1)

            def forward(self, batch, encoder):
                z = encoder(batch)
                pred = self.head(readout(z["atom"], batch, "atom")).squeeze(-1)
                target = torch.bincount(batch["atom"].batch, minlength=batch.num_graphs).float() / 30
                return TaskOutput(((pred - target) ** 2).mean())

        register("graph_size", GraphSize)


@pytest.mark.slow
def test_one_worker_full_batch_equals_two_workers_half_batch(registry_yaml, tmp_path):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    base = [*MACHINERY, one_stage(1), "model.encoder.params.hidden_dim=16", "optimizer.batch_size=32",
            "tasks.mask={name: graph_size}", "optimizer.lr=0.01",
            "data.shard_size=60", "data.shuffle_window=2"]    # 6 shards streamed in 3 windows
    params = {}
    for workers in (1, 2):
        res = run(registry_yaml, overrides=base + [f"trainer.num_workers={workers}"],
                  run_dir=tmp_path / f"w{workers}", progress=False, extra_plugins=(_GraphSizeTask(),))
        assert res.metrics["graphs"].tolist() == [32] * 10 + [22]  # the same global batches
        assert res.metrics["loss"].iloc[-3:].mean() < res.metrics["loss"].iloc[:3].mean()  # it trains
        params[workers] = load_checkpoint(res.run_dir / "checkpoints" / "final.pt")["model"]
    assert params[1].keys() == params[2].keys()
    worst = max((params[1][k].float() - params[2][k].float()).abs().max().item() for k in params[1])
    assert worst < 1e-4, f"parameters differ by up to {worst}"
