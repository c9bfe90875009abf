"""What a run cost: wall time per phase and the peak memory of the whole process tree.

``time -v`` on ``cgc-run`` sees the driver only; Ray workers, the Ray daemons and featurization
processes are children of it. :class:`ResourceMonitor` samples the resident set size (RSS) of the
driver and every descendant process (``psutil``) in a background thread and keeps the peak of their
sum; :meth:`ResourceMonitor.phase` times named phases (featurize, each stage, each evaluation).
``resources.json`` in the run directory and the "Resources" section of ``summary.md`` report both.

The sum of RSS over-counts pages shared between processes: every Ray worker maps the same torch
libraries, and a memory-mapped shard read by two workers counts twice, so it is an upper bound of
what the run needs. On Linux the monitor also sums the proportional set size (PSS: each shared page
divided among the processes that map it), which adds up to the memory the tree really occupies, and
records the processes (name, RSS, PSS) at the PSS peak, so a reader sees where the memory goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MB = 1024 * 1024


class ResourceMonitor:
    """Peak RSS of this process and all its descendants (sampled every ``interval`` s) and phase times.

    Use as a context manager around the run; ``monitor.phase("featurize")`` around each phase.
    """

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak_tree = 0
        self.peak_driver = 0
        self.peak_processes = 0
        self.peak_pss = 0
        self.at_peak: list[tuple[str, int, int]] = []
        self._pss = hasattr(__import__("psutil").Process().memory_full_info(), "pss")
        self.phases: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()

    def sample(self) -> int:
        """One sample: the summed RSS (bytes) of the tree now; updates the peaks (RSS, and PSS where
        the platform reports it)."""
        import psutil

        me = psutil.Process(os.getpid())
        try:
            procs = [me, *me.children(recursive=True)]
        except psutil.Error:
            procs = [me]
        total = total_pss = 0
        rows = []
        for p in procs:
            try:
                if self._pss:
                    info = p.memory_full_info()
                    rss, pss = info.rss, getattr(info, "pss", 0)
                else:
                    rss, pss = p.memory_info().rss, 0
                name = p.name()
            except psutil.AccessDenied:  # no smaps access here: RSS only from now on
                self._pss = False
                continue
            except psutil.Error:  # a worker that exited between listing and reading
                continue
            total += rss
            total_pss += pss
            rows.append((name, rss, pss))
            if p is me:
                self.peak_driver = max(self.peak_driver, rss)
        self.peak_tree = max(self.peak_tree, total)
        if total_pss > self.peak_pss:
            self.peak_pss = total_pss
            self.at_peak = sorted(rows, key=lambda r: -r[2])
        self.peak_processes = max(self.peak_processes, len(procs))
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> ResourceMonitor:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="cgc-resources", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time ``name`` (seconds; a repeated name adds up)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t

    def report(self, extra_phases: dict[str, float] | None = None) -> dict[str, Any]:
        """``{"wall_seconds", "peak_rss_tree_mb", "peak_pss_tree_mb", "peak_rss_driver_mb",
        "max_processes", "processes_at_peak", "phases"}`` (PSS entries only where reported)."""
        out: dict[str, Any] = {"wall_seconds": round(time.perf_counter() - self._t0, 2),
                               "peak_rss_tree_mb": round(self.peak_tree / MB, 1)}
        if self.peak_pss:
            out["peak_pss_tree_mb"] = round(self.peak_pss / MB, 1)
        out.update({"peak_rss_driver_mb": round(self.peak_driver / MB, 1), "max_processes": self.peak_processes})
        if self.at_peak:
            out["processes_at_peak"] = [{"name": n, "rss_mb": round(r / MB, 1), "pss_mb": round(q / MB, 1)}
                                        for n, r, q in self.at_peak]
        out["phases"] = {k: round(v, 2) for k, v in {**self.phases, **(extra_phases or {})}.items()}
        return out

    def write(self, path: Path, extra_phases: dict[str, float] | None = None) -> dict[str, Any]:
        data = self.report(extra_phases)
        Path(path).write_text(json.dumps(data, indent=2))
        return data


def stage_seconds(metrics: Any) -> dict[str, float]:
    """``{"stage <k> <name>": seconds}`` on rank 0: the sum of the stage's step times (``time_s``,
    which includes loading each step's batches), from a metrics table."""
    if metrics is None or len(metrics) == 0 or "time_s" not in metrics:
        return {}
    out = {}
    for (idx, name), g in metrics.groupby(["stage_index", "stage"], sort=True):
        out[f"stage {int(idx) + 1} {name}"] = float(g["time_s"].sum())
    return out


__all__ = ["ResourceMonitor", "stage_seconds"]
