"""Per-step profile of the training loop (``trainer.profile_steps``).

The loop marks its phases with :func:`phase` (``torch.profiler.record_function`` ranges named
``cgc::<phase>``: collate, forward, backward, optimizer, reduce_logs). :func:`step_profiler` runs
``torch.profiler`` over ``steps`` optimizer steps after 2 warm-up steps and writes, per worker rank,

- ``profile/rank<k>.txt``: torch's operator table (self CPU time, top 40);
- ``profile/rank<k>.json``: milliseconds per step in each phase and in the collective operations
  (``gloo``/``nccl`` all-reduce, all-gather, broadcast; DDP's gradient all-reduce runs inside
  ``backward``), which is what the data-parallel benchmark reports.

Outside an active profile the phase ranges cost a few microseconds per step.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable, Iterator

import torch

PHASES = ("collate", "forward", "backward", "optimizer", "reduce_logs")
_COLLECTIVE_WORDS = ("all_reduce", "allreduce", "all_gather", "allgather", "broadcast", "barrier")
_WARMUP = 2


def phase(name: str) -> contextlib.AbstractContextManager:
    """A named range (``cgc::<name>``) of one training step for the profiler."""
    return torch.profiler.record_function(f"cgc::{name}")


def summarize(events, steps: int) -> dict[str, float]:
    """Milliseconds per step: each phase's wall time (its range's CPU total) and the collectives'
    (``collective_ms``: every gloo/nccl collective op, summed; they overlap the phases)."""
    out: dict[str, float] = {}
    collective = 0.0
    for ev in events:
        key = ev.key
        if key.startswith("cgc::") and key[5:] in PHASES:
            out[f"{key[5:]}_ms"] = ev.cpu_time_total / 1000.0 / steps
        elif any(w in key.lower() for w in _COLLECTIVE_WORDS) and ("gloo" in key or "nccl" in key or "c10d" in key):
            collective += ev.cpu_time_total / 1000.0 / steps
    out["collective_ms"] = collective
    out["step_ms"] = sum(out.get(f"{p}_ms", 0.0) for p in PHASES)
    return out


@contextlib.contextmanager
def step_profiler(steps: int, out_dir: Path, rank: int) -> Iterator[Callable[[], None]]:
    """Yield a ``step()`` to call after every optimizer step. With ``steps`` 0 it does nothing;
    otherwise it profiles ``steps`` steps after the warm-up and writes ``out_dir/rank<rank>.*``."""
    if steps <= 0:
        yield lambda: None
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    calls = 0

    def write(prof: torch.profiler.profile) -> None:
        active = min(steps, calls - _WARMUP)  # a run shorter than the window profiles what it has
        if active <= 0:
            return
        events = prof.key_averages()
        (out_dir / f"rank{rank}.txt").write_text(events.table(sort_by="self_cpu_time_total", row_limit=40))
        (out_dir / f"rank{rank}.json").write_text(json.dumps(
            {"rank": rank, "steps": active, "ms_per_step": summarize(events, active)}, indent=1))

    schedule = torch.profiler.schedule(wait=0, warmup=_WARMUP, active=steps, repeat=1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], schedule=schedule,
                                on_trace_ready=write) as prof:

        def step() -> None:
            nonlocal calls
            calls += 1
            prof.step()

        yield step
