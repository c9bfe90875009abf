"""The Python API behind ``cgc-run``: validate, compose, featurize, pretrain, report.

Notebook use::

    from cgc_framework import run
    result = run("registry.yaml", overrides=["trainer.num_workers=0"])
    result.metrics.plot(x="step", y="loss")
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .compose import Plan, compose
from .config import CGCConfig, load_config
from .featurize import BuiltData, build_graphs
from .orchestrator import pretrain
from .plugins import PluginRegistry, load_registry
from .report import plot_loss_curves, write_summary
from .versions import package_versions


@dataclass
class RunResult:
    run_dir: Path
    metrics: pd.DataFrame
    summary_path: Path
    checkpoints: list[Path]
    built: BuiltData


def plan_run(config: str | Path | CGCConfig, *, overrides: list[str] | None = None,
             extra_plugins: tuple[Any, ...] = (), registry: PluginRegistry | None = None,
             base_dir: Path | None = None) -> Plan:
    """Validate the config and resolve every component (no data read, nothing trained)."""
    if isinstance(config, CGCConfig):
        cfg, base, source = config, Path(base_dir or Path.cwd()), "<CGCConfig>"
    else:
        cfg, base, source = load_config(config, overrides), Path(config).resolve().parent, str(config)
    return compose(cfg, registry or load_registry(extra_plugins), base, source)


def _new_run_dir(cfg: CGCConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.run.output_dir) / f"{cfg.run.name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def run(config: str | Path | CGCConfig, *, overrides: list[str] | None = None,
        run_dir: str | Path | None = None, progress: bool | None = None,
        extra_plugins: tuple[Any, ...] = ()) -> RunResult:
    """Pretrain as the config says and write a run directory; returns where and what."""
    t0 = time.perf_counter()
    plan = plan_run(config, overrides=overrides, extra_plugins=extra_plugins)
    cfg = plan.config
    show = cfg.trainer.progress if progress is None else progress
    out = Path(run_dir) if run_dir is not None else _new_run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    (out / "plugins.json").write_text(json.dumps(
        {"packages": package_versions(), "components": [s.describe() for s in plan.components()]}, indent=2))
    (out / "schema.json").write_text(json.dumps(plan.schema.to_dict(), indent=2))
    if show:
        print(f"cgc-run: writing {out}", flush=True)

    built = build_graphs(plan, progress=show)
    built.skips.write_csv(out / "skipped_records.csv")
    if show:
        print(f"cgc-run: {len(built.graphs)} experiment graphs from {built.records_read} records "
              f"({len(built.skips)} skipped, see skipped_records.csv)", flush=True)

    outcome = pretrain(plan, built.graphs, out, progress=show, extra_plugins=extra_plugins)
    metrics = pd.read_json(out / "metrics.jsonl", lines=True)
    metrics.to_csv(out / "metrics.csv", index=False)
    metrics.to_parquet(out / "metrics.parquet", index=False)
    plot_loss_curves(metrics, out / "loss_curve.png")
    summary = out / "summary.md"
    with plan.registry.guard(plan.dataset_spec.info, "describing itself"):
        dataset_info = plan.dataset.describe()
    write_summary(summary, plan=plan, run_dir=out, records_read=built.records_read,
                  graphs_built=len(built.graphs), skips=built.skips, metrics=metrics,
                  checkpoints=outcome.checkpoints, wall_seconds=time.perf_counter() - t0,
                  dataset_info=dataset_info)
    if show:
        print(f"cgc-run: done in {time.perf_counter() - t0:.0f} s; summary: {summary}", flush=True)
    return RunResult(out, metrics, summary, outcome.checkpoints, built)
