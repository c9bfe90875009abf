"""Standardized benchmark sweeps: pretraining configs x seeds, each evaluated the same way.

A sweep file (validated like ``registry.yaml``) names a base config, a grid of dotted overrides
(their cartesian product), seeds and the evaluations every trial runs::

    name: stage_ablation
    base: ../registry.yaml          # relative to the sweep file
    seeds: [0, 1, 2]
    grid:
      model.encoder.name: [hgt, typed_attention]
      stages:                       # any config key; a value may be a whole section
        mask: [{name: mask, epochs: 20, weights: {mask: 1.0}}]
        mask+contrast: [...]        # a mapping gives each value a label
    evaluations:
      fewshot: {name: few_shot, params: {datasets: [bbbp], k: [1, 5, 10, 20], draws: 10}}
    quick:                          # applied with --quick: a bounded-time version
      overrides: [stages.0.epochs=1]
      seeds: [0]

Each trial (grid point x seed) is one pretraining run plus its evaluations, executed as a Ray task
(``parallel`` at a time, on a local Ray instance or the cluster at ``ray_address``), in a
directory named by the hash of its resolved config; a trial whose ``result.parquet`` exists is not
run again, so an interrupted sweep resumes. A failing trial is recorded with its error and does not
stop the sweep. Outputs in ``<output_dir>/<name>/``: ``results.parquet`` (tidy: one row per trial x
data set x task x method x label budget x metric), ``trials.csv``, plots and ``report.md``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import (ComponentRef, apply_overrides, format_validation_error, read_yaml, set_dotted,
                     validate_config)
from .errors import ConfigError
from .versions import package_versions


class QuickSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overrides: list[str] = Field(default_factory=list)
    seeds: list[int] | None = None
    evaluations: dict[str, ComponentRef] | None = None


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    base: Path
    output_dir: Path = Path("runs/sweeps")
    seeds: list[int] = Field([0], min_length=1)
    grid: dict[str, list[Any] | dict[str, Any]] = Field(default_factory=dict)
    overrides: list[str] = Field(default_factory=list, description="applied to every trial")
    evaluations: dict[str, ComponentRef] = Field(min_length=1)
    parallel: int = Field(1, ge=1, description="trials running at once (Ray tasks)")
    cpus_per_trial: float = Field(1.0, gt=0)
    ray_address: str | None = None
    quick: QuickSection = Field(default_factory=QuickSection)


def load_sweep(path: str | Path, *, quick: bool = False,
               overrides: list[str] | None = None) -> tuple[SweepConfig, Path]:
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides or [])
    try:
        sweep = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(str(path), format_validation_error(exc, model=SweepConfig)) from None
    base = sweep.base if sweep.base.is_absolute() else (path.parent / sweep.base)
    if not base.is_file():
        raise ConfigError(str(path), [f"base: no such file: {base}"])
    sweep.base = base.resolve()
    if quick:
        q = sweep.quick
        sweep.overrides = sweep.overrides + q.overrides
        sweep.seeds = q.seeds or sweep.seeds
        sweep.evaluations = q.evaluations or sweep.evaluations
    return sweep, path.parent.resolve()


def _grid_points(grid: dict[str, list[Any] | dict[str, Any]]) -> list[dict[str, tuple[str, Any]]]:
    """Cartesian product; each entry maps key -> (label, value)."""
    axes = []
    for key, values in grid.items():
        items = list(values.items()) if isinstance(values, dict) else [(_label(v), v) for v in values]
        axes.append([(key, label, value) for label, value in items])
    return [{k: (label, v) for k, label, v in combo} for combo in itertools.product(*axes)] or [{}]


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def plan_trials(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Every trial: resolved config (as a dict), labels, seed and hash. Validates each config."""
    trials = []
    base = read_yaml(sweep.base)
    for point in _grid_points(sweep.grid):
        for seed in sweep.seeds:
            data = json.loads(json.dumps(base))  # deep copy of plain YAML data
            data = apply_overrides(data, sweep.overrides)
            for key, (_, value) in point.items():
                set_dotted(data, key, value)
            data.setdefault("run", {})["seed"] = seed
            data["evaluations"] = {k: v.model_dump() for k, v in sweep.evaluations.items()}
            data.setdefault("trainer", {})["num_workers"] = 0  # a trial is one in-process Ray task
            data["trainer"]["progress"] = False
            cfg = validate_config(data, source=f"trial {point and {k: v[0] for k, v in point.items()}} seed {seed}")
            blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
            trial_hash = hashlib.sha256(blob.encode()).hexdigest()[:12]
            trials.append({"trial": trial_hash, "seed": seed, "config": cfg.model_dump(mode="json"),
                           "labels": {k: v[0] for k, v in point.items()}})
    return trials


def run_trial(trial: dict[str, Any], trial_dir: str, base_dir: str) -> dict[str, Any]:
    """Pretrain + evaluate one trial; writes ``result.parquet`` (or ``error.txt``). Runs in a Ray task."""
    from .api import run
    from .config import CGCConfig

    out = Path(trial_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    cwd = os.getcwd()
    try:
        os.chdir(base_dir)  # relative data paths in the base config resolve as in a normal run
        cfg = CGCConfig.model_validate(trial["config"])
        result = run(cfg, run_dir=out / "run", progress=False)
        rows = []
        for key in cfg.evaluations:
            table_path = result.run_dir / "evaluations" / key
            for csv in sorted(table_path.glob("*.csv")):
                if csv.stem == "leakage":
                    continue
                df = pd.read_csv(csv)
                df.insert(0, "evaluation", key)
                df.insert(1, "table", csv.stem)
                rows.append(df)
        table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
        table.to_parquet(out / "result.parquet", index=False)
        status = {"status": "ok", "seconds": time.time() - t0}
    except Exception as exc:  # recorded, the sweep goes on
        (out / "error.txt").write_text("".join(traceback.format_exception(exc)))
        status = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "seconds": time.time() - t0}
    finally:
        os.chdir(cwd)
    (out / "status.json").write_text(json.dumps(status))
    return status


def run_sweep(path: str | Path, *, quick: bool = False, progress: bool = True,
              overrides: list[str] | None = None) -> Path:
    """Run (or resume) a sweep; returns its output directory. ``overrides`` (``key=value``)
    change the sweep file, e.g. ``evaluations.fewshot.params.data_dir=/data/moleculenet``."""
    import ray
    from tqdm.auto import tqdm

    sweep, base_dir = load_sweep(path, quick=quick, overrides=overrides)
    trials = plan_trials(sweep)
    out = (base_dir / sweep.output_dir if not sweep.output_dir.is_absolute() else sweep.output_dir)
    out = out / (sweep.name + ("-quick" if quick else ""))
    (out / "trials").mkdir(parents=True, exist_ok=True)
    todo = [t for t in trials if not (out / "trials" / t["trial"] / "result.parquet").exists()]
    if progress:
        print(f"cgc-bench: {len(trials)} trials, {len(trials) - len(todo)} cached, {len(todo)} to run -> {out}",
              flush=True)
    if todo:
        started = not ray.is_initialized()
        if started:
            from .orchestrator import _ray_temp_dir

            local = {} if sweep.ray_address else {"_temp_dir": _ray_temp_dir()}
            ray.init(address=sweep.ray_address, include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False, **local)
        try:
            remote = ray.remote(num_cpus=sweep.cpus_per_trial, max_retries=0)(run_trial)
            pending = {}
            queue = list(todo)
            bar = tqdm(total=len(todo), desc="trials", disable=not progress)
            while queue or pending:
                while queue and len(pending) < sweep.parallel:
                    t = queue.pop(0)
                    ref = remote.remote(t, str(out / "trials" / t["trial"]), str(base_dir))
                    pending[ref] = t
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    t = pending.pop(ref)
                    try:
                        status = ray.get(ref)
                    except Exception as exc:  # the task itself died (e.g. a killed worker)
                        status = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                        (out / "trials" / t["trial"]).mkdir(parents=True, exist_ok=True)
                        (out / "trials" / t["trial"] / "status.json").write_text(json.dumps(status))
                    bar.update(1)
                    bar.set_postfix_str(f"last={status['status']}")
            bar.close()
        finally:
            if started:
                ray.shutdown()
    collect(sweep, trials, out)
    return out


def collect(sweep: SweepConfig, trials: list[dict[str, Any]], out: Path) -> pd.DataFrame:
    """Join trial results into ``results.parquet`` + ``trials.csv``, then plots and report."""
    from .sweep_report import write_report

    versions = package_versions()
    frames, rows = [], []
    for t in trials:
        tdir = out / "trials" / t["trial"]
        status = json.loads((tdir / "status.json").read_text()) if (tdir / "status.json").exists() else \
            {"status": "not run"}
        if (tdir / "result.parquet").exists():
            status["status"] = "ok"
        rows.append({"trial": t["trial"], "seed": t["seed"], **t["labels"], **status})
        if status["status"] != "ok":
            continue
        df = pd.read_parquet(tdir / "result.parquet")
        if df.empty:
            continue
        df.insert(0, "trial", t["trial"])
        df.insert(1, "seed", t["seed"])
        for k, v in t["labels"].items():
            df[k] = v
        df["config_hash"] = t["trial"]
        df["versions"] = json.dumps(versions, sort_keys=True)
        frames.append(df)
    trials_table = pd.DataFrame(rows)
    trials_table.to_csv(out / "trials.csv", index=False)
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not results.empty:
        per_trial = (results.groupby([c for c in results.columns if c not in ("draw", "value", "n_test")],
                                     dropna=False)["value"].mean().reset_index())
        results = per_trial
    results.to_parquet(out / "results.parquet", index=False)
    write_report(sweep, results, trials_table, out)
    return results
