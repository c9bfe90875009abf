"""Run-directory outputs a person reads: the loss-curve plot and ``summary.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cgc_framework.engine.compose import Plan
from cgc_framework.plugin.records import SkipLog

MAX_SKIPS_LISTED = 50


def plot_loss_curves(metrics: pd.DataFrame, path: Path) -> None:
    """Total loss and every per-task loss against the optimizer step; stage boundaries dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metrics.empty:  # a run whose stages train no step (epochs: 0) has no curve to draw
        return
    loss_cols = ["loss"] + sorted(c for c in metrics.columns if c.endswith("/loss"))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for col in loss_cols:
        ax.plot(metrics["step"], metrics[col], label=col, lw=1.5 if col == "loss" else 1.0)
    for _, first in metrics.groupby("stage_index")["step"].min().items():
        if first > metrics["step"].min():
            ax.axvline(first - 0.5, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_yscale("log" if (metrics[loss_cols] > 0).all().all() else "linear")
    ax.set_title("pretraining loss (dashed: stage boundaries)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: metrics columns that are bookkeeping, not a loss term or a task's log
_NOT_TERMS = {"step", "stage", "stage_index", "epoch", "graphs", "lr", "time_s"}


def stage_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per stage and logged value (the total loss, every task's loss and every term a task logs,
    e.g. masked recovery's per-type ``<type>_loss`` / ``<type>_relative``): steps, first-epoch mean,
    last-epoch mean, relative change."""
    rows: list[dict] = []
    if metrics.empty:
        return pd.DataFrame(rows)
    loss_cols = ["loss"] + sorted(c for c in metrics.columns if c not in _NOT_TERMS and c != "loss")
    for (si, stage), df in metrics.groupby(["stage_index", "stage"], sort=True):
        first_ep, last_ep = df["epoch"].min(), df["epoch"].max()
        for col in loss_cols:
            if df[col].isna().all():
                continue
            a = df.loc[df["epoch"] == first_ep, col].mean()
            b = df.loc[df["epoch"] == last_ep, col].mean()
            rows.append({"stage": f"{si + 1}. {stage}", "loss": col, "steps": len(df),
                         "first_epoch_mean": a, "last_epoch_mean": b,
                         "change_pct": 100.0 * (b - a) / abs(a) if a else float("nan")})
    return pd.DataFrame(rows)


def _md_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


VERDICT_MARK = "**Verdict**"
"""Evaluations state whether the model beat each baseline on its held-out evaluation in lines that
start with this mark; the summary repeats them at the top, in words, before any table."""


def verdict_section(evaluation_markdown: list[str]) -> list[str]:
    """``## Verdicts``: every line of the evaluations' paragraphs that starts with :data:`VERDICT_MARK`,
    under its evaluation's heading (nothing when no evaluation states a verdict)."""
    out: list[str] = []
    for paragraph in evaluation_markdown:
        lines = paragraph.splitlines()
        heading = next((ln.lstrip("# ").strip() for ln in lines if ln.startswith("### ")), "")
        found = [ln.strip() for ln in lines if ln.strip().startswith(VERDICT_MARK)]
        if found:
            out += [f"- {heading}: " + ln.replace(VERDICT_MARK, "", 1).strip() for ln in found]
    if not out:
        return []
    return ["", "## Verdicts", "",
            "Did the model beat each baseline on its held-out evaluation? (details and every number under "
            "Evaluation below)", "", *out]


def readable(value: Any) -> str:
    """A ``describe()`` value as Markdown text: mappings as ``key value, ...`` (nested ones in
    parentheses), lists comma-separated, ``[]``/``{}`` as "none"."""
    if isinstance(value, dict):
        if not value:
            return "none"
        return ", ".join(f"{k} " + (f"({readable(v)})" if isinstance(v, dict) and v else readable(v))
                         for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return ", ".join(readable(v) for v in value) if value else "none"
    return str(value)


def write_summary(path: Path, *, plan: Plan, run_dir: Path, records_read: int, graphs_built: int,
                  skips: SkipLog, omitted: SkipLog, metrics: pd.DataFrame, checkpoints: list[Path],
                  wall_seconds: float, dataset_info: dict[str, Any],
                  evaluation_markdown: list[str] | None = None, resources: dict[str, Any] | None = None,
                  shards: dict[str, int] | None = None) -> None:
    cfg = plan.config
    out = [f"# Run `{cfg.run.name}`", "",
           f"- run directory: `{run_dir}`",
           f"- config hash: `{plan.config_hash()}`, seed {cfg.run.seed}",
           f"- wall time: {wall_seconds:.1f} s; trainer: {cfg.trainer.describe()}",
           *verdict_section(evaluation_markdown or []),
           "", "## Components", "",
           _md_table(pd.DataFrame([{"kind": s.info.kind, "config key": s.key, "name": s.info.name,
                                    "distribution": f"{s.info.distribution} {s.info.version}"}
                                   for s in plan.components()])),
           "", "## Data", ""]
    for k, v in dataset_info.items():
        out.append(f"- {k}: {readable(v)}")
    for name, mp in plan.modalities.items():
        if info := mp.builder.describe():
            out.append(f"- graph builder `{mp.builder_spec.info.name}` ({name}): {readable(info)}")
    for key, (spec, source) in plan.edge_sources.items():
        if info := source.describe():
            out.append(f"- edge source `{spec.info.name}` ({key}): {readable(info)}")
    out += [f"- records read: {records_read}; experiment graphs built: {graphs_built}; "
            f"records skipped: {len(skips)}"]
    if shards:
        where = ", ".join(f"{n} {'on Ray node ' + k[:12] if k not in ('local', 'reused') else k}"
                          for k, n in sorted(shards.items()))
        out.append(f"- shards (`data/shards/`, {plan.config.data.shard_size} records each): {sum(shards.values())} "
                   f"({where})")
    out.append("")
    if len(skips):
        counts = skips.counts()
        out.append("Skipped records by component: "
                   + ", ".join(f"{c}: {n}" for c, n in counts.most_common()) + ". "
                   "All of them are listed in `skipped_records.csv`.")
        out += ["", _md_table(pd.DataFrame([e.__dict__ for e in skips.entries[:MAX_SKIPS_LISTED]])), ""]
        if len(skips) > MAX_SKIPS_LISTED:
            out.append(f"... and {len(skips) - MAX_SKIPS_LISTED} more in `skipped_records.csv`.\n")
    if len(omitted):
        out.append(f"Optional subgraphs left out of kept records: {len(omitted)} ("
                   + ", ".join(f"{c}: {n}" for c, n in omitted.counts().most_common())
                   + "), listed in `omitted_subgraphs.csv`.\n")
    out += ["## Graph schema", "",
            _md_table(pd.DataFrame([{"type": t, "features": ", ".join(f.name for f in s.features),
                                     "x dim": s.continuous_dim, "categorical": len(s.cardinalities)}
                                    for t, s in plan.schema.node_types.items()]
                                   + [{"type": "|".join(k), "features": ", ".join(f.name for f in s.features),
                                       "x dim": s.continuous_dim, "categorical": len(s.cardinalities)}
                                      for k, s in plan.schema.edge_types.items()])),
            "", "## Stages and losses", "",
            _md_table(pd.DataFrame([{"stage": f"{i + 1}. {s.name}", "epochs": s.epochs,
                                     "weights": ", ".join(f"{k}={w:g}" for k, w in s.weights.items())}
                                    for i, s in enumerate(cfg.stages)])),
            "", "Mean of every logged loss and loss term (e.g. each masked type, raw and relative) in the "
            "first and last epoch of each stage:", "",
            _md_table(stage_table(metrics)), "",
            "![loss curve](loss_curve.png)", ""]
    recovery = run_dir / "recovery.log"
    if recovery.exists():
        out += ["## Recovery", "", "Checkpoint fallbacks, resumes and worker restarts (`recovery.log`):", "",
                *[f"- {line}" for line in recovery.read_text().splitlines()], ""]
    if evaluation_markdown:
        out += ["## Evaluation", ""] + evaluation_markdown + [""]
    if resources:
        out += ["## Resources", "",
                f"Peak memory of the whole process tree (driver, Ray workers and daemons; sampled every "
                f"0.2 s): **{resources['peak_rss_tree_mb']:.0f} MB** summed RSS"
                + (f", **{resources['peak_pss_tree_mb']:.0f} MB** summed PSS (shared pages counted once)"
                   if "peak_pss_tree_mb" in resources else "")
                + f" (driver alone: {resources['peak_rss_driver_mb']:.0f} MB RSS; up to {resources['max_processes']} "
                f"processes; per process at the peak: `resources.json`). Wall time per phase:", "",
                _md_table(pd.DataFrame([{"phase": k, "seconds": f"{v:.1f}"}
                                        for k, v in resources["phases"].items()])), ""]
    out += ["## Files", "",
            "- `config.resolved.yaml`, `plugins.json` (component versions), `schema.json`",
            "- `metrics.csv` / `metrics.parquet`: one row per optimizer step (`metrics.jsonl`: the same, "
            "written while training)",
            "- `resources.json`: peak memory of the process tree and wall time per phase",
            "- `data/shards/`: the experiment graphs as fixed-size packed shards plus `manifest.json` (what the workers stream)",
            "- `skipped_records.csv`: every record left out, with the reason; "
            "`omitted_subgraphs.csv`: optional subgraphs left out of kept records",
            "- checkpoints (load with `torch.load(path, weights_only=True)`): "
            + ", ".join(f"`{p.relative_to(run_dir)}`" for p in checkpoints), ""]
    path.write_text("\n".join(out))
