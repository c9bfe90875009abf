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
      _suite:                       # a leading "_": a bundle of dotted keys set together
        dose: {data.dataset.params.split: {by: dose}, evaluations.ood.params.suite: dose}
    evaluations:
      fewshot: {name: few_shot, params: {datasets: [bbbp], data_dir: "${CGC_SHARED_DATA}/moleculenet"}}
    quick:                          # applied with --quick: a bounded-time version
      overrides: [stages.*.epochs=1]  # "*": every item (here: every stage of every grid point)
      seeds: [0]

``${VAR}`` / ``${VAR:-default}`` are expanded in string values. Each trial (grid point x seed) is
one pretraining run plus its evaluations, executed as a Ray task (``parallel`` at a time, on a local
Ray instance or the cluster at ``ray_address``), in a directory named by the hash of its resolved
config; a trial whose ``result.parquet`` exists is not run again, so an interrupted sweep resumes.
A failing trial is recorded with its error and does not stop the sweep. Each trial also records the
sha256 of the data files it read (``data.json``: the pretraining dataset's files, the evaluators'
files). Outputs in ``<output_dir>/<name>/``: ``results.parquet`` (tidy: one row per trial x
evaluation table x data set x task x method x label budget x metric, with config hash, seed,
package versions and data checksums), ``trials.csv``, ``data_checksums.csv``, plots and
``report.md``. The standard sweeps are in ``benchmarks/sweeps/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

from cgc_framework.bench.config import SweepConfig, load_sweep, plan_trials
from cgc_framework.bench.report import write_report
from cgc_framework.engine.versions import package_versions
from cgc_framework.plugin.provenance import files_named_by, sha256_file


def run_trial(trial: dict[str, Any], trial_dir: str, base_dir: str) -> dict[str, Any]:
    """Pretrain + evaluate one trial; writes ``result.parquet`` (or ``error.txt``). Runs in a Ray task."""
    from cgc_framework.api import run
    from cgc_framework.engine.config import CGCConfig

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
        try:
            data = trial_data_checksums(cfg)
        except Exception as exc:  # noqa: BLE001 - provenance must not lose a finished trial
            data = {"pretraining": {}, "evaluations": {}, "error": f"{type(exc).__name__}: {exc}"}
        (out / "data.json").write_text(json.dumps(data, indent=1))
        (out / "comparisons.json").write_text(json.dumps(trial_comparisons(cfg), indent=1))
        table.to_parquet(out / "result.parquet", index=False)
        status = {"status": "ok", "seconds": time.time() - t0}
    except Exception as exc:  # recorded, the sweep goes on
        (out / "error.txt").write_text("".join(traceback.format_exception(exc)))
        status = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "seconds": time.time() - t0}
    finally:
        os.chdir(cwd)
    (out / "status.json").write_text(json.dumps(status))
    return status

# -- data checksums ------------------------------------------------------------------------------

def _evaluators(plan: Any) -> dict[str, Any]:
    """The plan's evaluators, constructed (by evaluation key)."""
    return {key: plan.registry.create("evaluator", spec.info.name, spec.params)
            for key, spec in plan.evaluations.items()}


def trial_data_checksums(cfg: Any) -> dict[str, Any]:
    """sha256 of the data files a trial's config reads: the pretraining dataset's files (the
    paths behind its ``describe()`` provenance, which is stored beside them) and each evaluation's
    files (:meth:`~cgc_framework.plugin.contracts.Evaluator.data_files`). Paths resolve against the
    working directory, as in :func:`run_trial`."""
    from cgc_framework.api import plan_run

    plan = plan_run(cfg)
    with plan.registry.guard(plan.dataset_spec.info, "describing itself"):
        provenance = plan.dataset.describe()
    pre = sorted(set(files_named_by(plan.dataset)))
    evals = {}
    for key, evaluator in _evaluators(plan).items():
        with plan.registry.guard(plan.evaluations[key].info, "listing its data files"):
            files = evaluator.data_files()
        evals[key] = {ds: {str(f): sha256_file(f) for f in fs} for ds, fs in files.items()}
    return {"pretraining": {str(f): sha256_file(f) for f in pre},
            "pretraining_provenance": json.loads(json.dumps(provenance, default=str)),
            "evaluations": evals}


def trial_comparisons(cfg: Any) -> list[dict[str, Any]]:
    """The comparison tables the trial's evaluators declare
    (:meth:`~cgc_framework.plugin.contracts.Evaluator.comparisons`), as plain dicts with their
    evaluation key."""
    from cgc_framework.api import plan_run

    plan = plan_run(cfg)
    return [{"evaluation": key, **dataclasses.asdict(c)}
            for key, evaluator in _evaluators(plan).items() for c in evaluator.comparisons()]


def _row_files(per_set: dict[str, dict[str, str]], dataset: Any) -> dict[str, str]:
    """Files behind one result row: its data set's (plus the evaluation's shared ``"*"`` files), or
    every file of the evaluation when the row names no data set of it."""
    if isinstance(dataset, str) and dataset in per_set:
        return {**per_set[dataset], **per_set.get("*", {})}
    return {f: h for fs in per_set.values() for f, h in fs.items()}


def _by_name(files: dict[str, str]) -> str:
    return json.dumps({Path(f).name: h for f, h in sorted(files.items())}, sort_keys=True)


def _validate_components(sweep: SweepConfig, trials: list[dict[str, Any]], base_dir: Path) -> None:
    """Compose every distinct trial config: every component name must exist and every ``params:``
    mapping validate (raises one ConfigError naming the trial and the problems)."""
    from cgc_framework.engine.compose import compose
    from cgc_framework.engine.config import CGCConfig
    from cgc_framework.engine.registry import load_registry

    registry = load_registry()
    seen = set()
    for t in trials:
        cfg = dict(t["config"], run={**t["config"]["run"], "seed": 0})
        key = json.dumps(cfg, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        compose(CGCConfig.model_validate(cfg), registry, base_dir, source=f"sweep {sweep.name}, trial {t['labels']}")


def validate_sweep(path: str | Path, *, quick: bool = False,
                   overrides: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse a sweep file, plan its trials and compose each (component names and params checked,
    no data read beyond what constructors read); returns the planned trials."""
    sweep, base_dir = load_sweep(path, quick=quick, overrides=overrides)
    trials = plan_trials(sweep)
    cwd = os.getcwd()
    try:
        os.chdir(base_dir)
        _validate_components(sweep, trials, base_dir)
    finally:
        os.chdir(cwd)
    return trials


def run_sweep(path: str | Path, *, quick: bool = False, progress: bool = True,
              overrides: list[str] | None = None, report_only: bool = False) -> Path:
    """Run (or resume) a sweep; returns its output directory. ``overrides`` (``key=value``)
    change the sweep file, e.g. ``evaluations.fewshot.params.data_dir=/data/moleculenet``.
    ``report_only``: run nothing; rewrite table, plots and report from the trials finished so far."""
    import ray
    from tqdm.auto import tqdm

    sweep, base_dir = load_sweep(path, quick=quick, overrides=overrides)
    trials = plan_trials(sweep)
    out = (base_dir / sweep.output_dir if not sweep.output_dir.is_absolute() else sweep.output_dir)
    out = (out / (sweep.name + ("-quick" if quick else ""))).resolve()
    (out / "trials").mkdir(parents=True, exist_ok=True)
    todo = [t for t in trials if not (out / "trials" / t["trial"] / "result.parquet").exists()]
    # seed-major order: a sweep stopped part-way has every configuration for its first seeds
    todo.sort(key=lambda t: sweep.seeds.index(t["seed"]))
    if progress:
        print(f"cgc-bench: {len(trials)} trials, {len(trials) - len(todo)} cached, "
              f"{0 if report_only else len(todo)} to run -> {out}", flush=True)
    if todo and not report_only:
        started = not ray.is_initialized()
        if started:
            from cgc_framework.engine.orchestrator import _ray_temp_dir

            local = {} if sweep.ray_address else {"_temp_dir": _ray_temp_dir()}
            ray.init(address=sweep.ray_address, include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False, **local)
        try:
            remote = ray.remote(num_cpus=sweep.cpus_per_trial, num_gpus=sweep.gpus_per_trial,
                                max_retries=0)(run_trial)
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
    collect(sweep, trials, out, base_dir)
    return out


def _trial_data(t: dict[str, Any], tdir: Path, base_dir: Path | None) -> dict[str, Any] | None:
    """The trial's ``data.json``; for a trial run before checksums were recorded, computed now
    (and marked so)."""
    if (tdir / "data.json").exists():
        return json.loads((tdir / "data.json").read_text())
    if base_dir is None:
        return None
    from cgc_framework.engine.config import CGCConfig

    cwd = os.getcwd()
    try:
        os.chdir(base_dir)
        data = trial_data_checksums(CGCConfig.model_validate(t["config"]))
    except Exception:  # noqa: BLE001 - checksums are provenance; a missing file must not lose results
        return None
    finally:
        os.chdir(cwd)
    data["computed_at_collection"] = True
    (tdir / "data.json").write_text(json.dumps(data, indent=1))
    return data


def collect(sweep: SweepConfig, trials: list[dict[str, Any]], out: Path,
            base_dir: Path | None = None) -> pd.DataFrame:
    """Join trial results into ``results.parquet`` (with the sha256 of the data each row used:
    ``pretrain_data_sha256`` and ``eval_data_sha256``, JSON ``{file name: sha256}``), ``trials.csv`` and
    ``data_checksums.csv`` (one row per trial x file, full paths), then plots and report."""
    versions = package_versions()
    frames, rows, checksums = [], [], []
    comparisons: dict[tuple[str, str], dict[str, Any]] = {}
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
        if (tdir / "comparisons.json").exists():
            for c in json.loads((tdir / "comparisons.json").read_text()):
                comparisons.setdefault((c["evaluation"], c["table"]), c)
        data = _trial_data(t, tdir, base_dir)
        if data is not None:
            checksums += [{"trial": t["trial"], "role": "pretraining", "evaluation": "", "dataset": "",
                           "file": f, "sha256": h} for f, h in data["pretraining"].items()]
            checksums += [{"trial": t["trial"], "role": "evaluation", "evaluation": key, "dataset": ds,
                           "file": f, "sha256": h}
                          for key, per in data["evaluations"].items() for ds, fs in per.items()
                          for f, h in fs.items()]
        if df.empty:
            continue
        df.insert(0, "trial", t["trial"])
        df.insert(1, "seed", t["seed"])
        for k, v in t["labels"].items():
            df[k] = v
        df["config_hash"] = t["trial"]
        df["versions"] = json.dumps(versions, sort_keys=True)
        df["pretrain_data_sha256"] = _by_name(data["pretraining"]) if data else None
        df["eval_data_sha256"] = None
        if data:
            ev = data["evaluations"]
            keys = df["evaluation"] if "evaluation" in df else pd.Series([""] * len(df), index=df.index)
            sets = df["dataset"] if "dataset" in df else pd.Series([None] * len(df), index=df.index)
            df["eval_data_sha256"] = [_by_name(_row_files(ev.get(k, {}), d)) for k, d in zip(keys, sets)]
        frames.append(df)
    trials_table = pd.DataFrame(rows)
    trials_table.to_csv(out / "trials.csv", index=False)
    checksum_table = pd.DataFrame(checksums, columns=["trial", "role", "evaluation", "dataset", "file", "sha256"])
    checksum_table.to_csv(out / "data_checksums.csv", index=False)
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if "value" in results:  # tidy tables: draws averaged; wide tables (no ``value``) as they are
        per_trial = (results.groupby([c for c in results.columns if c not in ("draw", "value", "n_test")],
                                     dropna=False)["value"].mean().reset_index())
        results = per_trial
    results.to_parquet(out / "results.parquet", index=False)
    write_report(sweep, results, trials_table, out, checksums=checksum_table, comparisons=list(comparisons.values()))
    return results
