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
from typing import TYPE_CHECKING, Any

import yaml

from cgc_framework.engine.compose import compose
from cgc_framework.engine.config import CGCConfig, load_config
from cgc_framework.engine.registry import PluginRegistry, load_registry
from cgc_framework.plugin.errors import CGCError, DataError
from cgc_framework.plugin.plan import Plan

if TYPE_CHECKING:  # the heavy machinery (torch, Ray, pandas) is imported by the functions that use it
    import pandas as pd

    from cgc_framework.engine.featurize import BuiltData



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


def run_evaluations(plan: Plan, checkpoint: Path, run_dir: Path, *, extra_plugins: tuple[Any, ...] = (),
                    progress: bool = True, monitor: Any = None) -> list[str]:
    """Run the config's ``evaluations:`` on a checkpoint; tables go to
    ``run_dir/evaluations/<key>/<table>.csv``. Returns the Markdown paragraphs for the summary.
    ``monitor`` (a :class:`~cgc_framework.engine.resources.ResourceMonitor`) times each evaluation."""
    if not plan.evaluations:
        return []
    import contextlib

    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from cgc_framework.engine.checkpoint import load_model
    from cgc_framework.plugin.contracts import EvaluationContext

    model, _ = load_model(checkpoint, plan.registry)
    paragraphs = []
    bar = tqdm(plan.evaluations.items(), total=len(plan.evaluations), desc="evaluating", unit="evaluation",
               disable=not progress)
    for key, spec in bar:
        out = run_dir / "evaluations" / key
        out.mkdir(parents=True, exist_ok=True)
        evaluator = plan.registry.create("evaluator", spec.info.name, spec.params)
        ctx = EvaluationContext(output_dir=out, plan=plan, model=model, checkpoint=Path(checkpoint),
                                seed=plan.config.run.seed)
        bar.set_postfix_str(f"{key} ({spec.info.name})")
        timed = monitor.phase(f"evaluation {key}") if monitor is not None else contextlib.nullcontext()
        with timed, plan.registry.guard(spec.info, "evaluating"), torch.no_grad():
            result = evaluator.evaluate(ctx)
        for name, table in result.tables.items():
            pd.DataFrame(table).to_csv(out / f"{name}.csv", index=False)
        files = ", ".join(f"`evaluations/{key}/{n}.csv`" for n in result.tables)
        paragraphs.append(f"### {key} ({spec.info.name})\n\n{result.summary_markdown}\n\nTables: {files or '-'}\n")
    return paragraphs


def dry_run(config: str | Path | CGCConfig, *, overrides: list[str] | None = None,
            extra_plugins: tuple[Any, ...] = (), progress: bool = False) -> str:
    """Validate, compose and featurize (no training); return the plan as readable text."""
    plan = plan_run(config, overrides=overrides, extra_plugins=extra_plugins)
    from cgc_framework.engine.featurize import build_graphs  # after validation: errors answer fast

    built = build_graphs(plan, progress=progress, keep_graphs=False)  # counts and skips, bounded memory
    return describe_plan(plan, built)


SKIPS_LISTED = 10
"""Skipped records listed by ``--dry-run`` (the rest are counted)."""


def describe_plan(plan: Plan, built: BuiltData | None = None) -> str:
    """Components (with distribution and version), schema, data counts, stages, trainer."""
    cfg = plan.config
    lines = [f"run '{cfg.run.name}' (seed {cfg.run.seed}, config hash {plan.config_hash()})", "", "components:"]
    for s in plan.components():
        lines.append(f"  {s.key:<32} {s.info.kind:<17} {s.info.name:<22} "
                     f"{s.info.distribution} {s.info.version}  params={json.dumps(s.params_dict())}")
    lines += ["", "graph schema:"]
    for t, spec in plan.schema.node_types.items():
        lines.append(f"  node {t:<24} x[{spec.continuous_dim}] x_cat{list(spec.cardinalities)}")
    for k, spec in plan.schema.edge_types.items():
        lines.append(f"  edge {'|'.join(k):<24} edge_attr[{spec.continuous_dim}] "
                     f"edge_attr_cat{list(spec.cardinalities)}")
    if built is not None:
        from cgc_framework.engine.report import readable

        lines += ["", f"data: {built.records_read} records read, {len(built.record_ids)} experiment graphs, "
                      f"{len(built.skips)} skipped, {len(built.omitted)} optional subgraphs omitted"]
        for component, n in built.skips.counts().most_common():
            lines.append(f"  skipped by {component}: {n}")
        for e in built.skips.entries[:SKIPS_LISTED]:
            lines.append(f"    {e.record_id}: {e.reason}")
        if len(built.skips) > SKIPS_LISTED:
            lines.append(f"    ... and {len(built.skips) - SKIPS_LISTED} more skipped records not listed here "
                         f"(a run writes every one, with its reason, to skipped_records.csv)")
        for key, value in plan.dataset.describe().items():
            lines.append(f"  dataset {key}: {readable(value)}")
    lines += ["", "stages:"]
    for i, st in enumerate(cfg.stages):
        weights = ", ".join(f"{k}={w:g} ({plan.tasks[k].info.name})" for k, w in st.weights.items())
        lines.append(f"  {i + 1}. {st.name}: {st.epochs} epochs; {weights}")
    o, t = cfg.optimizer, cfg.trainer
    lines += ["", f"optimizer: {o.name} lr={o.lr:g} batch_size={o.batch_size} (global) "
                  f"grad_accum_steps={o.grad_accum_steps}",
              f"trainer: {t.describe()}"]
    return "\n".join(lines)


def _new_run_dir(cfg: CGCConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.run.output_dir) / f"{cfg.run.name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def resume(run_dir: str | Path, *, progress: bool | None = None, extra_plugins: tuple[Any, ...] = ()) -> RunResult:
    """Continue an interrupted run from its newest good checkpoint (``cgc-run --resume RUN_DIR``)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.resolved.yaml"
    if not cfg_path.is_file():
        raise CGCError(f"{run_dir} is not a run directory (no config.resolved.yaml); "
                       f"give the directory that `cgc-run` printed")
    return run(cfg_path, run_dir=run_dir, progress=progress, extra_plugins=extra_plugins, resume_run=True)


def run(config: str | Path | CGCConfig, *, overrides: list[str] | None = None,
        run_dir: str | Path | None = None, progress: bool | None = None,
        extra_plugins: tuple[Any, ...] = (), resume_run: bool = False) -> RunResult:
    """Pretrain as the config says and write a run directory; returns where and what."""
    from cgc_framework.engine.resources import ResourceMonitor

    with ResourceMonitor() as monitor:
        return _run(config, monitor, overrides=overrides, run_dir=run_dir, progress=progress,
                    extra_plugins=extra_plugins, resume_run=resume_run)


def _featurize_and_pretrain(plan: Plan, out: Path, monitor: Any, show: bool, extra_plugins: tuple[Any, ...],
                            resume_run: bool) -> tuple[BuiltData, Any]:
    """Build the run's shards (a fresh run afresh, ``--resume`` keeping intact ones), write the skip
    lists, then pretrain; returns the built data and the ``TrainOutcome``."""
    from cgc_framework.engine.orchestrator import pretrain
    from cgc_framework.engine.shard_build import build_shards
    from cgc_framework.engine.shardset import clear_shards

    with monitor.phase("featurize"):
        try:
            shards = out / "data" / "shards"
            if not resume_run:  # a fresh run featurizes afresh; --resume keeps the intact shards
                clear_shards(shards)
            built = build_shards(plan, shards, progress=show, extra_plugins=extra_plugins)
        except DataError as exc:  # nothing usable: still leave the full list of reasons behind
            if exc.skips is None:
                raise
            exc.skips.write_csv(out / "skipped_records.csv")
            raise DataError(f"{exc} Every skipped record, with its reason: {out / 'skipped_records.csv'}",
                            skips=exc.skips) from None
    built.skips.write_csv(out / "skipped_records.csv")
    built.omitted.write_csv(out / "omitted_subgraphs.csv")
    if show:
        print(f"cgc-run: {len(built.graphs)} experiment graphs from {built.records_read} records "
              f"({len(built.skips)} skipped, see skipped_records.csv)", flush=True)
    with monitor.phase("pretrain (all stages, incl. Ray start)"):
        outcome = pretrain(plan, built.graphs, out, progress=show, extra_plugins=extra_plugins, resume=resume_run)
    return built, outcome


def _run(config: str | Path | CGCConfig, monitor: Any, *, overrides: list[str] | None, run_dir: str | Path | None,
         progress: bool | None, extra_plugins: tuple[Any, ...], resume_run: bool) -> RunResult:
    t0 = time.perf_counter()
    with monitor.phase("compose"):
        plan = plan_run(config, overrides=overrides, extra_plugins=extra_plugins)
    import pandas as pd  # the machinery is imported once the config is known to be valid

    from cgc_framework.engine.orchestrator import ray_session
    from cgc_framework.engine.report import plot_loss_curves, write_summary
    from cgc_framework.engine.resources import stage_seconds
    from cgc_framework.engine.shard_build import backend_of
    from cgc_framework.engine.versions import package_versions
    cfg = plan.config
    show = cfg.trainer.progress if progress is None else progress
    out = Path(run_dir) if run_dir is not None else _new_run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(plan.resolved(), sort_keys=False))
    (out / "plugins.json").write_text(json.dumps(
        {"packages": package_versions(), "components": [s.describe() for s in plan.components()]}, indent=2))
    (out / "schema.json").write_text(json.dumps(plan.schema.to_dict(), indent=2))
    if show:
        print(f"cgc-run: writing {out}", flush=True)

    # one Ray session for featurization and training when both use Ray (not two start-ups)
    both_on_ray = backend_of(plan) == "ray" and cfg.trainer.num_workers > 0
    with ray_session(cfg.trainer.ray_address, needed=both_on_ray):
        built, outcome = _featurize_and_pretrain(plan, out, monitor, show, extra_plugins, resume_run)
    evaluation_md = run_evaluations(plan, outcome.checkpoints[-1], out, extra_plugins=extra_plugins,
                                    progress=show, monitor=monitor)
    with monitor.phase("report"):
        jsonl = out / "metrics.jsonl"
        metrics = pd.read_json(jsonl, lines=True) if jsonl.is_file() and jsonl.stat().st_size else \
            pd.DataFrame(columns=["step", "stage", "stage_index", "epoch", "loss"])
        metrics.to_csv(out / "metrics.csv", index=False)
        metrics.to_parquet(out / "metrics.parquet", index=False)
        plot_loss_curves(metrics, out / "loss_curve.png")
        with plan.registry.guard(plan.dataset_spec.info, "describing itself"):
            dataset_info = plan.dataset.describe()
    monitor.sample()
    resources = monitor.write(out / "resources.json", stage_seconds(metrics))
    summary = out / "summary.md"
    write_summary(summary, plan=plan, run_dir=out, records_read=built.records_read,
                  graphs_built=len(built.graphs), skips=built.skips, omitted=built.omitted,
                  metrics=metrics,
                  checkpoints=outcome.checkpoints, wall_seconds=time.perf_counter() - t0,
                  dataset_info=dataset_info, evaluation_markdown=evaluation_md, resources=resources,
                  shards=built.shards_by_node)
    if show:
        print(f"cgc-run: done in {time.perf_counter() - t0:.0f} s (peak memory of the process tree "
              f"{resources['peak_rss_tree_mb']:.0f} MB); summary: {summary}", flush=True)
    return RunResult(out, metrics, summary, outcome.checkpoints, built)
