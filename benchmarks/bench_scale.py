"""Cost curves of the sharded data path (issue 20): featurize and train one epoch at growing sizes,
recording wall time, records/s and the peak memory of the whole process tree (driver, featurization
processes, Ray workers: the run's own ``resources.json``).

    CGC_SHARED_DATA=../shared/data python benchmarks/bench_scale.py molecules 10000 100000 1000000
    CGC_SHARED_DATA=../shared/data python benchmarks/bench_scale.py wells 10000 100000
    CGC_SHARED_DATA=../shared/data python benchmarks/bench_scale.py overhead 10000   # Ray vs plain loop, 1 vs 2 workers
    python benchmarks/bench_scale.py report            # scale.csv, scale.png, the Markdown table

Each size is one ``cgc-run`` in a fresh process (so each peak is its own), appended to
``benchmarks/results/scale/runs.jsonl`` as it finishes:

* ``molecules``: ``benchmarks/configs/molecule_corpus.yaml`` (GINE 5 x 128, masked atoms/bonds +
  descriptors/ECFP, batch 256) on the first N molecules of MOSES (``data.max_records``, no fraction, no
  evaluation), featurized by 2 processes, one epoch on 2 Ray Train workers of one thread each.
* ``wells``: the default ``registry.yaml`` model and objective (one epoch of mask + contrast + causal) on
  N/360 copies of the embedded real LINCS plate (384 wells, 360 treated), each copy a plate of its own
  (plate id ``SQ00015054_r<k>``) whose feature values get Gaussian jitter of 5% of each feature's
  standard deviation over the plate (seeded per copy), written one CSV file per plate, as JUMP ships
  plates; no larger real profile set is reachable from this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "scale"
WORK = Path(os.environ.get("CGC_BENCH_TMP", "/tmp/cgc-bench-scale"))
WELLS_PER_PLATE = 360
PROFILE_STEPS = 10


def _shared() -> Path:
    root = os.environ.get("CGC_SHARED_DATA")
    if not root:
        sys.exit("set CGC_SHARED_DATA to the shared data folder (molecules/moses_train.csv.gz)")
    return Path(root)


def molecule_overrides(n: int) -> tuple[Path, list[str]]:
    return REPO / "benchmarks" / "configs" / "molecule_corpus.yaml", [
        "evaluations={}", "data.dataset.params.fraction=1.0", f"data.max_records={n}", "data.featurize_workers=2",
        "stages=[{name: corpus, epochs: 1, weights: {mask: 1.0, properties: 1.0}}]",
        "trainer.num_workers=2", "trainer.cpus_per_worker=1", "trainer.checkpoint_every_steps=100000"]


def plate_files(n_wells: int) -> list[Path]:
    """Copies of the embedded plate with jitter (see the module docstring), one file per plate."""
    import pandas as pd

    from cgc_plugins.datasets.lincs import EMBEDDED_PROFILES

    plate = pd.read_csv(EMBEDDED_PROFILES)
    feats = [c for c in plate.columns if not c.startswith("Metadata_")]
    values = plate[feats].to_numpy(dtype=np.float64)
    sd = np.nanstd(values, axis=0)
    folder = WORK / "plates"
    folder.mkdir(parents=True, exist_ok=True)
    copies = -(-n_wells // WELLS_PER_PLATE)
    paths = []
    for k in range(copies):
        path = folder / f"SQ00015054_r{k:05d}.csv"
        if not path.is_file():
            rng = np.random.default_rng(k)
            out = plate.copy()
            out[feats] = values + rng.normal(0.0, 0.05, values.shape) * sd
            for col in ("Metadata_Plate", "Metadata_Assay_Plate_Barcode"):
                out[col] = f"SQ00015054_r{k:05d}"
            out.to_csv(path, index=False)
        paths.append(path)
    return paths


def well_overrides(n: int) -> tuple[Path, list[str]]:
    from cgc_plugins.datasets.lincs import EMBEDDED_COMPOUNDS

    files = plate_files(n)
    profiles = "[" + ", ".join(str(p) for p in files) + "]"
    return REPO / "registry.yaml", [
        "evaluations={}", f"data.dataset.params.profiles={profiles}",
        f"data.dataset.params.compounds={EMBEDDED_COMPOUNDS}", "data.dataset.params.include_splits=[train, val, test]",
        f"data.max_records={n}", "data.featurize_workers=2",
        "stages=[{name: all, epochs: 1, weights: {mask: 1.0, contrast: 0.5, causal: 1.0}}]",
        "trainer.num_workers=2", "trainer.cpus_per_worker=1", "trainer.checkpoint_every_steps=100000"]


def run_size(kind: str, n: int) -> dict:
    config, sets = molecule_overrides(n) if kind == "molecules" else well_overrides(n)
    run_dir = WORK / f"{kind}_{n}"
    args = [str(Path(sys.executable).parent / "cgc-run"), str(config), "--run-dir", str(run_dir), "--quiet"]
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {n}: cgc-run failed:\n{proc.stderr[-3000:]}")
    res = json.loads((run_dir / "resources.json").read_text())
    manifest = json.loads((run_dir / "data" / "shards" / "manifest.json").read_text())
    phases = res["phases"]
    stage = next(v for k, v in phases.items() if k.startswith("stage 1"))
    feat = phases["featurize"]
    graphs = manifest["graphs"]
    return {"kind": kind, "size": n, "records_read": manifest["records_read"], "graphs": graphs,
            "shards": len(manifest["shards"]), "wall_s": round(wall, 1), "featurize_s": feat,
            "train_epoch_s": stage, "pretrain_phase_s": phases["pretrain (all stages, incl. Ray start)"],
            "featurize_records_per_s": round(manifest["records_read"] / feat, 1),
            "train_graphs_per_s": round(graphs / stage, 1),
            "end_to_end_records_per_s": round(manifest["records_read"] / (feat + stage), 1),
            "peak_rss_tree_mb": res["peak_rss_tree_mb"], "peak_pss_tree_mb": res.get("peak_pss_tree_mb"),
            "peak_rss_driver_mb": res["peak_rss_driver_mb"], "max_processes": res["max_processes"],
            "shard_bytes": sum(p.stat().st_size for p in (run_dir / "data" / "shards").glob("shard-*.pt")),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%d %H:%M")}


def _corpus_plan(n: int, epochs: int):
    from cgc_framework.api import plan_run

    config, sets = molecule_overrides(n)
    sets = [s for s in sets if not s.startswith("stages=")] + [
        f"stages=[{{name: corpus, epochs: {epochs}, weights: {{mask: 1.0, properties: 1.0}}}}]"]
    return config, sets, plan_run(config, overrides=sets)


def _components(plan) -> dict:
    return {"encoder": {"name": plan.encoder.info.name, "params": plan.encoder.params_dict()},
            "tasks": {k: {"name": s.info.name, "params": s.params_dict()} for k, s in plan.tasks.items()}}


def plain_loop(n: int = 10000, epochs: int = 2) -> float:
    """Median step time (s) of a plain PyG loop (``torch_geometric.loader.DataLoader`` over the
    in-memory graphs, Adam, 1 thread) over the last epoch of the molecule-corpus stage."""
    import statistics

    import torch
    from torch_geometric.loader import DataLoader

    from cgc_framework.engine.checkpoint import build_model
    from cgc_framework.engine.shard_build import build_shards

    _, _, plan = _corpus_plan(n, epochs)
    graphs = list(build_shards(plan, WORK / f"overhead_{n}" / "shards", progress=False).graphs)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    core = build_model(_components(plan), plan.schema, plan.registry)
    opt = torch.optim.Adam(core.parameters(), lr=plan.config.optimizer.lr)
    weights = dict(plan.config.stages[0].weights)
    times = []
    for epoch in range(epochs):
        loader = iter(DataLoader(graphs, batch_size=plan.config.optimizer.batch_size, shuffle=True))
        while True:
            t = time.perf_counter()
            batch = next(loader, None)
            if batch is None:
                break
            loss, _ = core(batch, weights)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if epoch == epochs - 1:
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def overhead(n: int = 10000, epochs: int = 2) -> dict:
    """The molecule-corpus stage at batch 256 on ``n`` molecules: median step time of a plain PyG loop,
    of two plain loops running at once (separate processes: what the two cores give without Ray or
    DDP), of the framework's loop in-process on the shards, and of Ray Train with 1 and 2 workers (one
    thread each); steps of the last epoch (start-up excluded). The Ray runs also profile
    ``PROFILE_STEPS`` steps of their first epoch (``trainer.profile_steps``): milliseconds per step in
    collate / forward / backward (with DDP's gradient all-reduce) / optimizer / metric reduction, and in
    the collective operations, averaged over the workers."""
    import pandas as pd
    import torch

    from cgc_framework.engine.checkpoint import build_model
    from cgc_framework.engine.orchestrator import loop_config
    from cgc_framework.engine.shard_build import build_shards
    from cgc_framework.engine.training import run_stages

    config, sets, plan = _corpus_plan(n, epochs)
    shards = build_shards(plan, WORK / f"overhead_{n}" / "shards", progress=False).graphs
    out: dict = {"molecules": n, "batch_size": plan.config.optimizer.batch_size, "epochs": epochs,
                 "plain_pyg_loop_step_s": plain_loop(n, epochs)}
    me = [sys.executable, __file__, "plain", str(n)]
    procs = [subprocess.Popen(me, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    out["two_plain_loops_at_once_step_s"] = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]

    torch.set_num_threads(1)
    torch.manual_seed(0)
    core = build_model(_components(plan), plan.schema, plan.registry)
    rows: list = []
    run_stages(core, core, shards, loop_config(plan), device=torch.device("cpu"),
               on_step=lambda row, pos, o: rows.append(row))
    m = pd.DataFrame(rows)
    out["framework_loop_in_process_step_s"] = float(m[m.epoch == epochs - 1]["time_s"].median())

    for workers in (1, 2):
        run_dir = WORK / f"overhead_{n}_ray{workers}"
        args = [str(Path(sys.executable).parent / "cgc-run"), str(config), "--run-dir", str(run_dir), "--quiet"]
        for s in sets + [f"trainer.num_workers={workers}", f"trainer.profile_steps={PROFILE_STEPS}"]:
            args += ["--set", s]
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"overhead, {workers} workers: cgc-run failed:\n{proc.stderr[-3000:]}")
        m = pd.read_json(run_dir / "metrics.jsonl", lines=True)
        last = m[m.epoch == epochs - 1]
        step = float(last["time_s"].median())
        out[f"ray_{workers}_workers_step_s"] = step
        out[f"ray_{workers}_workers_graphs_per_s"] = float(last["graphs"].median()) / step
        ranks = [json.loads(f.read_text())["ms_per_step"] for f in sorted((run_dir / "profile").glob("rank*.json"))]
        out[f"ray_{workers}_workers_profile_ms_per_step"] = {k: round(float(np.mean([r[k] for r in ranks])), 2)
                                                             for k in ranks[0]}
    out["ray_1_worker_over_plain_pyg"] = out["ray_1_workers_step_s"] / out["plain_pyg_loop_step_s"]
    out["ray_2_over_1_worker_graphs_per_s"] = out["ray_2_workers_graphs_per_s"] / out["ray_1_workers_graphs_per_s"]
    out["two_cores_without_ray_over_one"] = 2 * out["plain_pyg_loop_step_s"] / max(out["two_plain_loops_at_once_step_s"])
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs"
    out["date"] = time.strftime("%Y-%m-%d %H:%M")
    (OUT / "overhead.json").write_text(json.dumps(out, indent=1))
    return out


def report() -> None:
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = pd.read_json(OUT / "runs.jsonl", lines=True).drop_duplicates(["kind", "size"], keep="last")
    rows = rows.sort_values(["kind", "size"])
    rows.to_csv(OUT / "scale.csv", index=False)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for (kind, part), color in zip(rows.groupby("kind"), ("C0", "C1")):
        axes[0].plot(part["size"], part["featurize_records_per_s"], "o-", color=color, label=f"{kind}: featurize")
        axes[0].plot(part["size"], part["train_graphs_per_s"], "s--", color=color, label=f"{kind}: train (1 epoch)")
        axes[1].plot(part["size"], part["wall_s"] / 60, "o-", color=color, label=kind)
        axes[2].plot(part["size"], part["peak_rss_tree_mb"] / 1024, "o-", color=color, label=f"{kind}: RSS")
        axes[2].plot(part["size"], part["peak_pss_tree_mb"] / 1024, "s--", color=color, label=f"{kind}: PSS")
    for ax, title in zip(axes, ("records (graphs) per second", "wall time of the run (min)",
                                "peak memory of the process tree (GiB)")):
        ax.set_xscale("log")
        ax.set_xlabel("records")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "scale.png", dpi=110)
    cols = ["kind", "size", "graphs", "shards", "featurize_s", "featurize_records_per_s", "train_epoch_s",
            "train_graphs_per_s", "wall_s", "peak_rss_tree_mb", "peak_pss_tree_mb", "peak_rss_driver_mb"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for _, r in rows.iterrows():
        print("| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], (int, np.integer)) else str(r[c]) for c in cols) + " |")
    for kind, part in rows.groupby("kind"):
        small, large = part.iloc[0], part.iloc[-1]
        print(f"\n{kind}: {int(small['size']):,} -> {int(large['size']):,}: featurize records/s ratio "
              f"{large['featurize_records_per_s'] / small['featurize_records_per_s']:.2f}, train graphs/s ratio "
              f"{large['train_graphs_per_s'] / small['train_graphs_per_s']:.2f}, end-to-end records/s ratio "
              f"{large['end_to_end_records_per_s'] / small['end_to_end_records_per_s']:.2f}, peak RSS ratio "
              f"{large['peak_rss_tree_mb'] / small['peak_rss_tree_mb']:.2f} (PSS "
              f"{large['peak_pss_tree_mb'] / small['peak_pss_tree_mb']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["molecules", "wells", "overhead", "plain", "report"])
    parser.add_argument("sizes", nargs="*", type=int)
    args = parser.parse_args()
    if args.kind == "report":
        report()
        return
    if args.kind in ("molecules", "overhead", "plain"):
        _shared()
    if args.kind == "plain":       # one plain loop (overhead runs two of these at once)
        print(plain_loop(*(args.sizes[:1] or [10000])))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    if args.kind == "overhead":
        print(json.dumps(overhead(*(args.sizes[:1] or [10000])), indent=1))
        return
    for n in args.sizes:
        row = run_size(args.kind, n)
        with open(OUT / "runs.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
