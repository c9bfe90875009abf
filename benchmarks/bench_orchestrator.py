"""Orchestrator benchmark: throughput for 1 and 2 Ray workers and on a two-node local cluster,
checkpoint write/read time and size, and Ray Train's overhead over the plain training loop.

    python benchmarks/bench_orchestrator.py [--epochs 3] [--out benchmarks/results/orchestrator.json]

Every configuration trains the same model (default registry.yaml: molecule + cell experiment graphs,
HGT hidden 64, the three stages) on the same embedded experiment graphs with the same global batch. Steady-state step
time = median of the per-step ``time_s`` after the first epoch (startup excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _epochs(epochs: int) -> list[str]:
    """Every stage of the default config at ``epochs`` epochs."""
    import yaml

    n = len(yaml.safe_load((REPO / "registry.yaml").read_text())["stages"])
    return [f"stages.{i}.epochs={epochs}" for i in range(n)]


def steady_step_s(metrics) -> float:
    later = metrics[metrics.epoch > 0]
    return float(statistics.median(later["time_s"]))


def bench_ray(workers: int, epochs: int, tmp: Path, cluster: bool = False) -> dict:
    from cgc_framework.api import run

    overrides = [f"trainer.num_workers={workers}", *_epochs(epochs), "trainer.checkpoint_every_steps=1000000"]
    t0 = time.perf_counter()
    if cluster:
        import ray
        from ray.cluster_utils import Cluster

        (Path(tempfile.gettempdir()) / "ray").mkdir(exist_ok=True)  # Ray writes the address file here
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "temp_dir": "/tmp/ray-cgc-bench"})
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        ray.init(address=c.address)
        try:
            res = run(REPO / "registry.yaml", overrides=overrides, run_dir=tmp / "cluster", progress=False)
        finally:
            ray.shutdown()
            c.shutdown()
    else:
        res = run(REPO / "registry.yaml", overrides=overrides, run_dir=tmp / f"w{workers}", progress=False)
    wall = time.perf_counter() - t0
    step = steady_step_s(res.metrics)
    graphs = float(res.metrics[res.metrics.epoch > 0]["graphs"].median())
    return {"workers": workers, "cluster_nodes": 2 if cluster else 1, "steady_step_s": step,
            "graphs_per_s": graphs / step, "wall_s": wall, "steps": int(len(res.metrics))}


def bench_plain_loop(epochs: int, tmp: Path) -> dict:
    """The same loop without Ray: run_stages in this process."""
    from cgc_framework.api import plan_run
    from cgc_framework.engine.featurize import build_graphs
    from cgc_framework.engine.orchestrator import build_model, loop_config
    from cgc_framework.engine.training import run_stages

    plan = plan_run(REPO / "registry.yaml", overrides=_epochs(epochs))
    graphs = build_graphs(plan, progress=False).graphs
    threads = torch.get_num_threads()
    torch.set_num_threads(int(plan.config.trainer.cpus_per_worker))  # as a Ray worker gets
    torch.manual_seed(0)
    comps = {"encoder": {"name": plan.encoder.info.name, "params": plan.encoder.params_dict()},
             "tasks": {k: {"name": s.info.name, "params": s.params_dict()} for k, s in plan.tasks.items()}}
    core = build_model(comps, plan.schema, plan.registry)
    rows = []
    t0 = time.perf_counter()
    run_stages(core, core, graphs, loop_config(plan), device=torch.device("cpu"),
               on_step=lambda row, pos, opt: rows.append(row))
    torch.set_num_threads(threads)
    import pandas as pd

    m = pd.DataFrame(rows)
    return {"steady_step_s": steady_step_s(m), "wall_s": time.perf_counter() - t0, "steps": len(m)}


def bench_checkpoint(tmp: Path) -> dict:
    from cgc_framework.api import plan_run
    from cgc_framework.engine.orchestrator import build_model, load_checkpoint, save_checkpoint

    plan = plan_run(REPO / "registry.yaml")
    comps = {"encoder": {"name": plan.encoder.info.name, "params": plan.encoder.params_dict()},
             "tasks": {k: {"name": s.info.name, "params": s.params_dict()} for k, s in plan.tasks.items()}}
    core = build_model(comps, plan.schema, plan.registry)
    opt = torch.optim.Adam(core.parameters())
    core(next(iter(_one_batch(plan))), plan.config.stages[-1].weights)[0].backward()
    opt.step()
    meta = {**comps, "schema": plan.schema.to_dict(), "config_hash": "x", "position": {}, "optimizer": opt.state_dict(),
            "rng_states": [torch.get_rng_state()]}
    path = tmp / "ckpt.pt"
    writes, reads = [], []
    for _ in range(10):
        t = time.perf_counter()
        save_checkpoint(path, core, meta)
        writes.append(time.perf_counter() - t)
        t = time.perf_counter()
        load_checkpoint(path)
        reads.append(time.perf_counter() - t)
    return {"parameters": sum(p.numel() for p in core.parameters()), "bytes": path.stat().st_size,
            "write_ms_median": 1000 * statistics.median(writes), "read_ms_median": 1000 * statistics.median(reads)}


def _one_batch(plan):
    from torch_geometric.loader import DataLoader

    from cgc_framework.engine.featurize import build_graphs

    return DataLoader(build_graphs(plan, progress=False).graphs[:32], batch_size=32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "orchestrator.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cgc-bench-") as d:
        tmp = Path(d)
        plain = bench_plain_loop(args.epochs, tmp)
        one = bench_ray(1, args.epochs, tmp)
        two = bench_ray(2, args.epochs, tmp)
        cluster = bench_ray(2, args.epochs, tmp, cluster=True)
        ckpt = bench_checkpoint(tmp)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "config": "registry.yaml defaults (molecule + cell graphs, HGT hidden 64, 2 layers, stages mask -> "
                  f"+contrast -> +causal, global batch 32), {args.epochs} epochs per stage",
        "plain_loop": plain, "ray_1_worker": one, "ray_2_workers": two, "ray_2_nodes_1_worker_each": cluster,
        "ray_over_plain_step_ratio": one["steady_step_s"] / plain["steady_step_s"],
        "scaling_2_workers_over_1": two["graphs_per_s"] / one["graphs_per_s"],
        "scaling_2_nodes_over_1_worker": cluster["graphs_per_s"] / one["graphs_per_s"],
        "checkpoint": ckpt,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
