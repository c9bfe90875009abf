"""The staged pretraining loop, in plain PyTorch (the orchestrator runs it inside Ray Train).

``L_total = sum_t lambda_t * L_t`` over the tasks a stage weights (proposal §2.2.4); stages run in
order and each starts from the previous stage's weights (§2.3.3). A new Adam optimizer is made per
stage over the encoder and the stage's active tasks.

Batch semantics: ``optimizer.batch_size`` is the *global* number of experiment graphs per optimizer
step. With ``W`` workers and ``A`` accumulation steps each worker's micro-batch holds
``batch_size / (W * A)`` graphs; DDP averages gradients over workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader

from cgc_framework.engine.profiling import phase
from cgc_framework.engine.shards import PackedGraphs
from cgc_framework.engine.shardset import ShardedGraphs, WindowedSampler
from cgc_framework.plugin.contracts import Encoder, PretrainingTask


class PretrainModel(nn.Module):
    """The encoder and all tasks of a run; ``forward`` computes one weighted objective.

    ``state_dict`` keys: ``encoder.*`` and ``tasks.<task key>.*``.
    """

    def __init__(self, encoder: Encoder, tasks: dict[str, PretrainingTask]):
        super().__init__()
        self.encoder = encoder
        self.tasks = nn.ModuleDict(tasks)

    def forward(self, batch: HeteroData, weights: dict[str, float]) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        logs: dict[str, Tensor] = {}
        for key, weight in weights.items():
            if weight == 0:
                continue
            out = self.tasks[key](batch, self.encoder)
            total = weight * out.loss if total is None else total + weight * out.loss
            logs[f"{key}/loss"] = out.loss.detach()
            for name, value in out.logs.items():
                logs[f"{key}/{name}"] = torch.as_tensor(value).detach()
        assert total is not None, "a stage needs at least one task with a positive weight"
        logs["loss"] = total.detach()
        return total, logs

    def stage_parameters(self, weights: dict[str, float]) -> list[nn.Parameter]:
        params = list(self.encoder.parameters())
        for key, weight in weights.items():
            if weight > 0:
                params += list(self.tasks[key].parameters())
        return params


@dataclass(frozen=True)
class StageSpec:
    index: int
    name: str
    epochs: int
    weights: dict[str, float]


@dataclass(frozen=True)
class LoopConfig:
    stages: tuple[StageSpec, ...]
    lr: float
    weight_decay: float
    batch_size: int
    grad_accum_steps: int
    grad_clip_norm: float | None
    seed: int
    bf16: bool = True
    """bfloat16 autocast of forward passes on CUDA devices (ignored on CPU)."""
    shuffle_window: int = 8
    """Shards shuffled together (see :class:`~cgc_framework.engine.shardset.WindowedSampler`)."""


@dataclass(frozen=True)
class LoopPosition:
    """Where the loop is: the next micro-batch to run is ``micro_batch`` of ``epoch`` of stage
    ``stage_index``, after ``global_step`` optimizer steps. Checkpoints store it to resume exactly."""

    stage_index: int = 0
    epoch: int = 0
    micro_batch: int = 0
    global_step: int = 0


StepCallback = Callable[[dict[str, Any], LoopPosition, torch.optim.Optimizer], None]
StageCallback = Callable[[StageSpec, LoopPosition], None]


def micro_batch_size(cfg: LoopConfig, world_size: int) -> int:
    """Graphs per worker per forward pass (see module docstring)."""
    return max(1, cfg.batch_size // (world_size * cfg.grad_accum_steps))


def _normalize(pos: LoopPosition, cfg: LoopConfig, micro_batches: int) -> LoopPosition:
    """Roll a position that sits at the end of an epoch or stage over to the next start."""
    stage_index, epoch, mb = pos.stage_index, pos.epoch, pos.micro_batch
    if mb >= micro_batches:
        epoch, mb = epoch + 1, 0
    # a stage of 0 epochs is not skipped: it trains no step but still ends (and checkpoints)
    if stage_index < len(cfg.stages) and 0 < cfg.stages[stage_index].epochs <= epoch:
        stage_index, epoch, mb = stage_index + 1, 0, 0
    return LoopPosition(stage_index, epoch, mb, pos.global_step)


def _on_device(batches: Iterable[HeteroData], device: torch.device) -> Iterator[HeteroData]:
    """The batches moved to ``device``, each collated and moved inside the profiler's collate phase."""
    it = iter(batches)
    while True:
        with phase("collate"):
            batch = next(it, None)
            if batch is not None:
                batch = batch.to(device)
        if batch is None:
            return
        yield batch


def run_stages(model: nn.Module, core: PretrainModel, graphs: Sequence[HeteroData], cfg: LoopConfig, *,
               device: torch.device, rank: int = 0, world_size: int = 1,
               reduce_logs: Callable[[dict[str, Tensor]], dict[str, Tensor]] = lambda d: d,
               on_step: StepCallback | None = None, on_stage_end: StageCallback | None = None,
               start: LoopPosition | None = None, optimizer_state: dict[str, Any] | None = None) -> int:
    """Run the stages from ``start`` (default: the beginning); returns the global step count.

    ``model`` is what is called (``core`` itself, or ``core`` wrapped in DDP); ``core`` gives
    parameters per stage. ``on_step`` receives one metrics row per optimizer step (on every rank;
    values already reduced over ranks by ``reduce_logs``), the position after that step and the
    optimizer. ``optimizer_state`` restores Adam's moments when resuming inside a stage.
    """
    # pads with repeats: equal steps per rank; one shard (or a list): DistributedSampler's order
    sampler = WindowedSampler(getattr(graphs, "shard_counts", [len(graphs)]), num_replicas=world_size,
                              rank=rank, seed=cfg.seed, window=cfg.shuffle_window)
    mbs = micro_batch_size(cfg, world_size)
    micro_batches = math.ceil(len(sampler) / mbs)
    pos = _normalize(start or LoopPosition(), cfg, micro_batches)
    global_step = pos.global_step
    for stage in cfg.stages[pos.stage_index:]:
        optimizer = torch.optim.Adam(core.stage_parameters(stage.weights), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        resuming_here = stage.index == pos.stage_index
        if resuming_here and optimizer_state is not None and (pos.epoch or pos.micro_batch):
            optimizer.load_state_dict(optimizer_state)
        model.train()
        for epoch in range(pos.epoch if resuming_here else 0, stage.epochs):
            sampler.set_epoch(1000 * stage.index + epoch)
            first = pos.micro_batch if resuming_here and epoch == pos.epoch else 0
            order = list(sampler)[first * mbs:]  # the epoch's fixed order, minus batches already done
            # own generator: creating a loader iterator draws a seed, which must not move the global
            # RNG that tasks use, or a resumed run would mask differently from an uninterrupted one
            if isinstance(graphs, (PackedGraphs, ShardedGraphs)):  # batches sliced from packed tensors
                loader = (graphs.collate(order[j:j + mbs]) for j in range(0, len(order), mbs))
            else:
                loader = DataLoader(graphs, batch_size=mbs, sampler=order, generator=torch.Generator())
            t0 = time.perf_counter()
            accum: list[dict[str, Tensor]] = []
            n_graphs = 0
            for i, batch in enumerate(_on_device(loader, device), start=first):
                with phase("forward"), torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                                                      enabled=cfg.bf16 and device.type == "cuda"):
                    total, logs = model(batch, stage.weights)
                with phase("backward"):  # includes DDP's gradient all-reduce
                    (total / cfg.grad_accum_steps).backward()
                accum.append(logs)
                n_graphs += batch.num_graphs
                if len(accum) == cfg.grad_accum_steps or i == micro_batches - 1:
                    with phase("optimizer"):
                        if cfg.grad_clip_norm is not None:
                            torch.nn.utils.clip_grad_norm_(core.parameters(), cfg.grad_clip_norm)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    global_step += 1
                    keys = sorted(set().union(*accum))
                    with phase("reduce_logs"):
                        means = reduce_logs({k: torch.stack([a[k] for a in accum if k in a]).mean()
                                             for k in keys})
                    row: dict[str, Any] = {"step": global_step, "stage": stage.name,
                                           "stage_index": stage.index, "epoch": epoch,
                                           "graphs": n_graphs * world_size, "lr": cfg.lr,
                                           "time_s": time.perf_counter() - t0}
                    row.update({k: float(v) for k, v in means.items()})
                    if not all(math.isfinite(row[k]) for k in means):
                        raise FloatingPointError(
                            f"non-finite loss at stage '{stage.name}', epoch {epoch}, step {global_step}: "
                            f"{ {k: row[k] for k in means} }. Lower optimizer.lr or set "
                            f"optimizer.grad_clip_norm.")
                    if on_step is not None:
                        on_step(row, LoopPosition(stage.index, epoch, i + 1, global_step), optimizer)
                    accum, n_graphs, t0 = [], 0, time.perf_counter()
        if on_stage_end is not None:
            on_stage_end(stage, LoopPosition(stage.index + 1, 0, 0, global_step))
    return global_step
