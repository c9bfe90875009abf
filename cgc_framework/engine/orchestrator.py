"""The Ray Train orchestrator: runs the staged loop of :mod:`cgc_framework.engine.training` on workers.

``trainer.num_workers: 0`` runs the loop in-process (Ray Train V2's local mode, no cluster);
``N >= 1`` starts N Ray Train workers (DDP over gloo on CPU, NCCL with ``use_gpu``), on a local Ray
instance or on the cluster named by ``trainer.ray_address``. The run directory must be on storage
every worker can reach (a shared filesystem on multi-node clusters).

Files written: ``workers/rank<r>.json`` (each rank: Ray node id, host, device); rank 0 writes
``metrics.jsonl`` (one row per optimizer step) and
``checkpoints/stage<k>_<name>.pt`` at every stage boundary plus ``checkpoints/final.pt``;
checkpoints hold only tensors and plain values and load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

for _key, _value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                     "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                     "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
                     "RAY_worker_niceness": "0"}.items():  # Ray's default nice 15 slows training
    os.environ.setdefault(_key, _value)

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from cgc_framework.engine.checkpoint import build_model, init_from, load_checkpoint, resolve_checkpoint, save_checkpoint
from cgc_framework.engine.profiling import step_profiler  # noqa: E402
from cgc_framework.engine.registry import env_plugins_dirs, load_registry  # noqa: E402
from cgc_framework.engine.shardset import ShardedGraphs, clear_shards, write_manifest, write_shard  # noqa: E402
from cgc_framework.engine.training import (  # noqa: E402
    LoopConfig,
    LoopPosition,
    StageSpec,
    micro_batch_size,
    run_stages,
)
from cgc_framework.engine.versions import package_versions  # noqa: E402
from cgc_framework.plugin.errors import CGCError  # noqa: E402
from cgc_framework.plugin.plan import Plan  # noqa: E402


class TrainingError(CGCError):
    """Training failed on a worker; the message carries the worker's error."""


@dataclass
class TrainOutcome:
    checkpoints: list[Path]
    global_steps: int


class _ProgressTail:
    """Driver-side progress bar that follows ``metrics.jsonl`` while the workers train."""

    def __init__(self, path: Path, total_steps: int, enabled: bool):
        self.path, self.enabled = path, enabled
        self._stop = threading.Event()
        self._bar = tqdm(total=total_steps, desc="pretraining", unit="step", disable=not enabled,
                         mininterval=1.0)
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> _ProgressTail:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()
        self._bar.close()

    def _follow(self) -> None:
        offset = 0
        while True:
            stopping = self._stop.wait(0.5)
            if self.path.exists():
                with open(self.path) as fh:
                    fh.seek(offset)
                    lines = fh.readlines()
                    if lines and not lines[-1].endswith("\n"):
                        lines = lines[:-1]
                    offset += sum(len(x) for x in lines)
                for line in lines:
                    row = json.loads(line)
                    self._bar.update(1)
                    self._bar.set_postfix_str(f"stage={row['stage']} epoch={row['epoch'] + 1} "
                                              f"loss={row['loss']:.4f}", refresh=False)
            if stopping:
                return


def total_steps(cfg: LoopConfig, num_graphs: int, world_size: int) -> int:
    """Optimizer steps the loop will take (the sampler pads every rank to the same size)."""
    per_rank = math.ceil(num_graphs / world_size)
    micro = math.ceil(per_rank / micro_batch_size(cfg, world_size))
    return sum(s.epochs for s in cfg.stages) * math.ceil(micro / cfg.grad_accum_steps)


def _checkpoint_candidates(run_dir: Path) -> list[Path]:
    """Step and stage checkpoints, newest first (by the global step in their file name order)."""
    ckpt_dir = run_dir / "checkpoints"
    files = list(ckpt_dir.glob("step*.pt")) + list(ckpt_dir.glob("stage*.pt"))
    return sorted(files, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def find_resume_checkpoint(run_dir: Path, config_hash: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of this config in ``run_dir``; a corrupted or truncated one is
    reported in ``recovery.log`` and the previous good one is used."""
    best: tuple[int, Path, dict[str, Any]] | None = None
    for path in _checkpoint_candidates(run_dir):
        try:
            ckpt = load_checkpoint(path)
        except Exception as exc:  # truncated file, bad zip, wrong format: name it, fall back
            _log_recovery(run_dir, f"checkpoint {path.name} is unreadable ({type(exc).__name__}: "
                                   f"{str(exc)[:200]}); falling back to an older checkpoint")
            continue
        if ckpt.get("config_hash") != config_hash or "position" not in ckpt:
            continue
        step = int(ckpt["position"]["global_step"])
        if best is None or step > best[0]:
            best = (step, path, ckpt)
    return None if best is None else (best[1], best[2])


def _log_recovery(run_dir: Path, message: str) -> None:
    with open(run_dir / "recovery.log", "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
    print(f"cgc-run: {message}", flush=True)


def _truncate_metrics(path: Path, global_step: int) -> None:
    """Keep the rows up to ``global_step`` (and drop a half-written last line) before resuming."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row["step"] <= global_step:
            keep.append(line)
    path.write_text("".join(f"{line}\n" for line in keep))


def _prune_step_checkpoints(ckpt_dir: Path, keep: int) -> None:
    steps = sorted(ckpt_dir.glob("step*.pt"))
    for old in steps[:-keep] if keep > 0 else steps:
        old.unlink(missing_ok=True)


def _train_worker(cfg: dict[str, Any]) -> None:
    """Ray Train ``train_loop_per_worker``: build the model from plugins, resume from the newest
    good checkpoint of this run if there is one (``--resume`` or a restart after a worker failure),
    run the stages, checkpoint every N steps and at stage boundaries."""
    import ray
    import ray.train
    import ray.train.torch


    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg["threads_per_worker"])
    torch.manual_seed(cfg["loop"].seed)  # identical initial weights on every rank
    registry = load_registry(tuple(cfg["extra_plugins"]), plugins_dirs=cfg["plugins_dirs"])
    core = build_model(cfg["components"], cfg["schema"], registry)
    device = ray.train.torch.get_device()
    run_dir = Path(cfg["run_dir"])
    metrics_path = run_dir / "metrics.jsonl"
    ckpt_dir = run_dir / "checkpoints"
    start, optimizer_state = None, None
    restarted = ray.train.get_checkpoint() is not None
    found = find_resume_checkpoint(run_dir, cfg["checkpoint_meta"]["config_hash"]) \
        if cfg["resume"] or restarted else None
    torch.manual_seed(cfg["loop"].seed + 7919 * rank)  # task randomness differs per rank
    if found is None and cfg.get("init") is not None:  # a fresh run starting from other weights
        report = init_from(core, load_checkpoint(cfg["init"]["path"]), cfg["init"]["parts"])
        if rank == 0:
            (run_dir / "init.json").write_text(json.dumps({**cfg["init"], **report}, indent=1))
    if found is not None:
        path, ckpt = found
        core.load_state_dict(ckpt["model"])
        start = LoopPosition(**ckpt["position"])
        optimizer_state = ckpt.get("optimizer")
        rng = ckpt.get("rng_states") or []
        if len(rng) == world:
            torch.set_rng_state(rng[rank])
        if rank == 0:
            _log_recovery(run_dir, f"resuming from {path.name} at step {start.global_step} "
                                   f"({'worker restart' if restarted else 'resume'})")
            _truncate_metrics(metrics_path, start.global_step)
    model = (ray.train.torch.prepare_model(core, parallel_strategy_kwargs={"find_unused_parameters": True})
             if world > 1 else core.to(device))
    (run_dir / "workers").mkdir(exist_ok=True)
    (run_dir / "workers" / f"rank{rank}.json").write_text(json.dumps(
        {"rank": rank, "world_size": world, "pid": os.getpid(), "device": str(device),
         "node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized() else None,
         "hostname": socket.gethostname()}))
    # memory-mapped shards, at most a shuffle window (+1) open: a worker pages in only the graphs of
    # the window its epoch order is in, never the whole set
    graphs = ShardedGraphs(cfg["shards_dir"], max_open=cfg["loop"].shuffle_window + 1)
    every, keep = cfg["checkpoint_every_steps"], cfg["keep_checkpoints"]

    known_keys: list[str] = []

    def reduce_logs(logs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mean of each logged value over the ranks that logged it (a rank whose batch lacks a
        node type logs no per-type loss for it). The ranks exchange key names (a pickled
        all-gather) only when some rank logs a key not seen before; otherwise one float all-reduce."""
        if world == 1:
            return logs
        unseen = torch.tensor([float(not set(logs) <= set(known_keys))], device=device)
        torch.distributed.all_reduce(unseen, op=torch.distributed.ReduceOp.MAX)
        if unseen.item():
            gathered: list[list[str] | None] = [None] * world
            torch.distributed.all_gather_object(gathered, sorted(logs))
            known_keys[:] = sorted(set(known_keys).union(*gathered))  # type: ignore[arg-type]
        values = torch.tensor([[float(logs[k]) if k in logs else 0.0 for k in known_keys],
                               [1.0 if k in logs else 0.0 for k in known_keys]], device=device)
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
        values = values.cpu()
        return {k: values[0, i] / values[1, i] for i, k in enumerate(known_keys) if values[1, i] > 0}

    def checkpoint(path: Path, position: LoopPosition, stage: StageSpec,
                   optimizer: torch.optim.Optimizer | None) -> None:
        rng_states = [torch.get_rng_state()]
        if world > 1:
            gathered: list[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, rng_states[0])
            rng_states = gathered
        metrics = {"stage": stage.name, "global_step": position.global_step}
        if rank != 0:
            ray.train.report(metrics)
            return
        meta = {**cfg["checkpoint_meta"], "stage_index": stage.index, "stage": stage.name,
                "global_step": position.global_step, "position": asdict(position),
                "rng_states": rng_states}
        if optimizer is not None:
            meta["optimizer"] = optimizer.state_dict()
        save_checkpoint(path, core, meta)
        with tempfile.TemporaryDirectory() as tmp:  # Ray keeps a pointer, not a second copy of the weights
            (Path(tmp) / "checkpoint.json").write_text(json.dumps({"path": str(path)}))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def on_step(row: dict[str, Any], position: LoopPosition, optimizer: torch.optim.Optimizer) -> None:
        profile_step()
        if rank == 0:
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        if every and position.global_step % every == 0:
            stage = cfg["loop"].stages[position.stage_index]
            checkpoint(ckpt_dir / f"step{position.global_step:09d}.pt", position, stage, optimizer)
            if rank == 0:
                _prune_step_checkpoints(ckpt_dir, keep)

    def on_stage_end(stage: StageSpec, position: LoopPosition) -> None:
        checkpoint(ckpt_dir / f"stage{stage.index + 1}_{stage.name}.pt", position, stage, None)

    with step_profiler(cfg["profile_steps"], run_dir / "profile", rank) as profile_step:
        run_stages(model, core, graphs, cfg["loop"], device=device, rank=rank, world_size=world,
                   reduce_logs=reduce_logs, on_step=on_step, on_stage_end=on_stage_end,
                   start=start, optimizer_state=optimizer_state)


@contextlib.contextmanager
def _quiet_ray_train_logs() -> Iterator[None]:
    """Ray Train logs INFO lines per report; the progress bar says the same, so raise the level."""
    logger = logging.getLogger("ray.train")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _ray_temp_dir() -> str:
    """Ray's session directory for a local instance. Its unix sockets must fit in 107 bytes, which
    a long ``TMPDIR`` (CI, pytest) breaks, so default to a short path; ``RAY_TMPDIR`` overrides."""
    return os.environ.get("RAY_TMPDIR") or os.path.join("/tmp" if os.name == "posix" else tempfile.gettempdir(),
                                                        f"ray-{os.getuid() if hasattr(os, 'getuid') else 0}")


def init_ray(address: str | None) -> bool:
    """Connect to the cluster at ``address`` (or start a local Ray instance) unless Ray is already
    initialized; returns whether this call did (the caller then shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    local = {} if address else {"_temp_dir": _ray_temp_dir()}
    ray.init(address=address, include_dashboard=False, logging_level="ERROR",
             log_to_driver=os.environ.get("CGC_RAY_WORKER_LOGS", "0") == "1", **local)
    return True


@contextlib.contextmanager
def ray_session(address: str | None, needed: bool = True) -> Iterator[None]:
    """Ray for the duration of the block when ``needed``: connected to ``address`` or a local
    instance started here (and shut down on exit), or the session already open."""
    started = init_ray(address) if needed else False
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def loop_config(plan: Plan) -> LoopConfig:
    c = plan.config
    stages = tuple(StageSpec(i, s.name, s.epochs, dict(s.weights)) for i, s in enumerate(c.stages))
    o = c.optimizer
    return LoopConfig(stages, o.lr, o.weight_decay, o.batch_size, o.grad_accum_steps, o.grad_clip_norm,
                      c.run.seed, bf16=c.trainer.bf16, shuffle_window=c.data.shuffle_window)


def pretrain(plan: Plan, graphs: Sequence[Any], run_dir: Path, *, progress: bool = True,
             extra_plugins: tuple[Any, ...] = (), resume: bool = False) -> TrainOutcome:
    """Run the plan's stages on Ray Train workers; returns the stage checkpoints written.

    ``resume``: continue from the newest good checkpoint in ``run_dir`` (same config hash);
    otherwise earlier checkpoints and metrics in ``run_dir`` are removed first.
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    tc = plan.config.trainer
    if isinstance(graphs, ShardedGraphs):
        shards_dir = graphs.directory
    else:  # graphs built in memory (the Python API): written as shards, which the workers read
        shards_dir = run_dir / "data" / "shards"
        shards_dir.mkdir(parents=True, exist_ok=True)
        clear_shards(shards_dir)
        size = plan.config.data.shard_size
        metas = [write_shard(shards_dir, i, "in-memory", ((str(j), graphs[j], None, []) for j in
                                                          range(start, min(start + size, len(graphs)))))
                 for i, start in enumerate(range(0, len(graphs), size))]
        write_manifest(shards_dir, "in-memory", size, metas, len(graphs))
    if not resume:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        for old in (run_dir / "checkpoints").glob("*.pt"):
            old.unlink()
    components = {"encoder": {"name": plan.encoder.info.name, "params": plan.encoder.params_dict()},
                  "tasks": {k: {"name": s.info.name, "params": s.params_dict()}
                            for k, s in plan.tasks.items()}}
    cfg = {
        "schema": plan.schema,
        "components": components,
        "loop": loop_config(plan),
        "shards_dir": str(shards_dir),
        "run_dir": str(run_dir),
        "extra_plugins": list(extra_plugins),
        "plugins_dirs": env_plugins_dirs(),
        "init": None if plan.config.model.init is None else {
            "path": str(resolve_checkpoint(plan.config.model.init.checkpoint, plan.registry, plan.base_dir)),
            "name": plan.config.model.init.checkpoint, "parts": list(plan.config.model.init.parts)},
        "resume": resume,
        "checkpoint_every_steps": tc.checkpoint_every_steps,
        "keep_checkpoints": tc.keep_checkpoints,
        "profile_steps": tc.profile_steps,
        # torch threads of each worker; in local mode the driver is the one worker (restored after)
        "threads_per_worker": max(1, int(tc.cpus_per_worker)),
        "checkpoint_meta": {**components, "schema": plan.schema.to_dict(),
                            "builders": plan.builder_refs(),
                            "config_hash": plan.config_hash(), "versions": package_versions(),
                            "seed": plan.config.run.seed},
    }
    resources = {"CPU": tc.cpus_per_worker, **({"GPU": 1} if tc.use_gpu else {})}
    driver_threads = torch.get_num_threads()
    try:
        with ray_session(tc.ray_address, needed=tc.num_workers > 0):
            with _quiet_ray_train_logs():
                trainer = TorchTrainer(
                    _train_worker, train_loop_config=cfg,
                    scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                                                 resources_per_worker=resources),
                    run_config=RunConfig(name="ray_train", storage_path=str(run_dir.resolve()),
                                         failure_config=FailureConfig(max_failures=tc.max_failures)))
                steps = total_steps(cfg["loop"], len(graphs), max(1, tc.num_workers))
                with _ProgressTail(run_dir / "metrics.jsonl", steps, progress):
                    try:
                        result = trainer.fit()
                    except CGCError:
                        raise
                    except Exception as exc:
                        raise TrainingError(f"training failed: {type(exc).__name__}: {exc}") from exc
            if getattr(result, "error", None):
                raise TrainingError(f"training failed: {result.error}")
    finally:
        torch.set_num_threads(driver_threads)
    ckpts = sorted((run_dir / "checkpoints").glob("stage*.pt"), key=lambda p: int(p.name[5:].split("_")[0]))
    if not ckpts:
        raise TrainingError(f"training finished but wrote no checkpoint in {run_dir / 'checkpoints'}")
    final = run_dir / "checkpoints" / "final.pt"
    shutil.copy(ckpts[-1], final)
    last = load_checkpoint(final)
    return TrainOutcome(ckpts + [final], int(last["global_step"]))


__all__ = ["pretrain", "TrainingError", "TrainOutcome"]
