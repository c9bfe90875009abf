"""Seconds per optimizer step at batch 256 for both encoders, and Ray Train (1 worker) vs a plain loop.

Run from the repository root (not part of the unit tests; takes a few minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/bench_encoders.py            # writes benchmarks/results/encoders.json

What one step is: the stage-3 objective (``masked_recovery`` + ``contrast`` + ``causal``, weights 1)
on a batch of 256 real experiment graphs (the embedded LINCS plate: RDKit molecule + 3 compartment
nodes with control/treated features + co-occurrence edges; built by ``tests/graph_fixtures.py``
until the issue-5 cell builder lands), forward + backward + Adam step. Defaults: hidden 64,
2 layers, 4 heads (HGT) / 1 head (typed attention), as in ``registry.yaml``.

Ray ratio: the same model (same seed), the same pre-collated batches and the same number of steps
run (a) in this process and (b) inside ``TorchTrainer`` with ``ScalingConfig(num_workers=1)``; both
time only steady-state steps (after ``--warmup`` steps, excluding Ray startup and the first
batches). The two are interleaved ``--repeats`` times and the median of the per-repeat medians is
reported, because other processes on a shared machine make single timings noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _k, _v in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
               "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
               # Ray starts workers at nice 15: on a machine shared with other work that alone slows
               # the Ray side; the comparison is of the same process priority (override to measure 15)
               "RAY_worker_niceness": "0"}.items():
    os.environ.setdefault(_k, _v)

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # graph_fixtures: the experiment graphs used by the tests

ENCODERS = {"hgt": {"hidden_dim": 64, "num_layers": 2, "heads": 4},
            "typed_attention": {"hidden_dim": 64, "num_layers": 2, "heads": 1}}
WEIGHTS = {"mask": 1.0, "contrast": 1.0, "causal": 1.0}


def build_model(encoder: str, schema):
    from cgc_framework.engine.registry import load_registry
    from cgc_framework.engine.training import PretrainModel

    reg = load_registry()
    torch.manual_seed(0)
    info = reg.get("encoder", encoder)
    enc = reg.create("encoder", encoder, info.params.model_validate(ENCODERS[encoder]), schema=schema)
    tasks = {}
    for key, name in (("mask", "masked_recovery"), ("contrast", "contrast"), ("causal", "causal")):
        tinfo = reg.get("pretraining_task", name)
        tasks[key] = reg.create("pretraining_task", name, tinfo.params.model_validate({}), schema=schema,
                                hidden_dim=enc.hidden_dim)
    return PretrainModel(enc, tasks)


def make_batches(batch_size: int, n_batches: int):
    from graph_fixtures import lincs_experiment_graphs
    from torch_geometric.data import Batch

    schema, graphs, _ = lincs_experiment_graphs(16)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(n_batches):
        idx = torch.randint(len(graphs), (batch_size,), generator=g).tolist()
        batches.append(Batch.from_data_list([graphs[i] for i in idx]))
    return schema, batches


def timed_steps(model, batches, steps: int, warmup: int) -> list[list[float]]:
    """``[wall seconds, process CPU seconds]`` of each of ``steps`` optimizer steps after ``warmup``
    untimed ones. CPU time of the process is far less sensitive than wall time to other processes
    competing for the cores, so both are kept."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    times = []
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        t0, c0 = time.perf_counter(), time.process_time()
        total, _ = model(batch, WEIGHTS)
        total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append([time.perf_counter() - t0, time.process_time() - c0])
    return times


def _ray_worker(cfg: dict) -> None:
    """Ray Train loop: same model, same batches, same steps; reports the step times."""
    import ray.train

    torch.set_num_threads(cfg["threads"])
    sys.path.insert(0, cfg["tests_dir"])
    schema, batches = make_batches(cfg["batch_size"], cfg["n_batches"])
    model = build_model(cfg["encoder"], schema).to(ray.train.torch.get_device())
    times = timed_steps(model, batches, cfg["steps"], cfg["warmup"])
    if ray.train.get_context().get_world_rank() == 0:  # Train V2 keeps only checkpointed metrics: use a file
        Path(cfg["times_path"]).write_text(json.dumps(times))
    ray.train.report({"steps": len(times)})


def ray_step_times(encoder: str, args, storage: str) -> list[float]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = {"encoder": encoder, "batch_size": args.batch_size, "n_batches": args.n_batches, "steps": args.steps,
           "warmup": args.warmup, "threads": args.threads, "tests_dir": str(REPO / "tests"),
           "times_path": str(Path(storage) / f"times_{encoder}_{time.time_ns()}.json")}
    trainer = TorchTrainer(_ray_worker, train_loop_config=cfg,
                           scaling_config=ScalingConfig(num_workers=1, use_gpu=False,
                                                        resources_per_worker={"CPU": 1}),
                           run_config=RunConfig(name=f"bench_{encoder}_{time.time_ns()}", storage_path=storage))
    trainer.fit()
    return json.loads(Path(cfg["times_path"]).read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n-batches", type=int, default=4, help="distinct pre-collated batches, cycled")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="interleaved plain/Ray repeats for the ratio")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "encoders.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    schema, batches = make_batches(args.batch_size, args.n_batches)
    b = batches[0]
    result = {
        "what": "seconds per optimizer step, stage-3 objective (mask+contrast+causal), forward+backward+Adam",
        "batch_size": args.batch_size,
        "batch_nodes": {t: int(b[t].num_nodes) for t in b.node_types},
        "batch_edges": int(sum(b[k].num_edges for k in b.edge_types)),
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "torch_threads": args.threads,
        "device": "cpu", "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "ray_worker_niceness": os.environ["RAY_worker_niceness"],
        "load_average_at_start": list(os.getloadavg()), "encoders": {},
    }
    ray_started = False
    storage = tempfile.mkdtemp(prefix="cgc-bench-ray-")
    for enc in args.encoders:
        model = build_model(enc, schema)
        n_params = sum(p.numel() for p in model.parameters())
        plain_medians, ray_medians, plain_cpu, ray_cpu = [], [], [], []
        for r in range(args.repeats if not args.no_ray else 1):
            plain = timed_steps(build_model(enc, schema), batches, args.steps, args.warmup)
            plain_medians.append(statistics.median(t[0] for t in plain))
            plain_cpu.append(statistics.median(t[1] for t in plain))
            if not args.no_ray:
                import ray
                if not ray_started:
                    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                             _temp_dir=os.environ.get("RAY_TMPDIR", f"/tmp/ray-{os.getuid()}"))
                    ray_started = True
                times = ray_step_times(enc, args, storage)
                ray_medians.append(statistics.median(t[0] for t in times))
                ray_cpu.append(statistics.median(t[1] for t in times))
            print(f"{enc} repeat {r}: plain {plain_medians[-1]:.3f} s/step (cpu {plain_cpu[-1]:.3f})"
                  + (f", ray {ray_medians[-1]:.3f} s/step (cpu {ray_cpu[-1]:.3f})" if ray_medians else ""),
                  flush=True)
        med = statistics.median
        entry = {"params": n_params, "encoder_params": ENCODERS[enc],
                 "plain_s_per_step": med(plain_medians), "plain_s_per_step_repeats": plain_medians,
                 "plain_cpu_s_per_step": med(plain_cpu)}
        if ray_medians:
            entry.update({"ray_1worker_s_per_step": med(ray_medians),
                          "ray_1worker_s_per_step_repeats": ray_medians,
                          "ray_1worker_cpu_s_per_step": med(ray_cpu),
                          "ray_over_plain_wall": med(ray_medians) / med(plain_medians),
                          "ray_over_plain_wall_per_repeat": [a / b for a, b in zip(ray_medians, plain_medians)],
                          "ray_over_plain_cpu": med(ray_cpu) / med(plain_cpu)})
        result["encoders"][enc] = entry
    if ray_started:
        import ray
        ray.shutdown()
    result["load_average_at_end"] = list(os.getloadavg())  # > cpu_count: other processes competed
    result["gpu"] = "not measured: no device machine was lent to this task"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
