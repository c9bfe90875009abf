"""Sweep report: mean and 95% CI over seeds, paired tests against the baselines, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .metrics import mean_ci

BASELINES = ("ecfp_lr", "ecfp_rf", "untrained")


def _config_label(df: pd.DataFrame, grid_keys: list[str]) -> pd.Series:
    if not grid_keys:
        return pd.Series(["base"] * len(df), index=df.index)
    return df[grid_keys].astype(str).agg(", ".join, axis=1)


def summary_table(results: pd.DataFrame, grid_keys: list[str], metric: str = "auroc") -> pd.DataFrame:
    """Per config x data set x method x k: task-macro ``metric`` per seed, mean and 95% CI over seeds."""
    df = results[results.metric == metric].copy()
    df["config"] = _config_label(df, grid_keys)
    per_seed = df.groupby(["config", "dataset", "method", "k", "seed"])["value"].mean().reset_index()
    rows = []
    for key, g in per_seed.groupby(["config", "dataset", "method", "k"]):
        m, lo, hi = mean_ci(g["value"].values)
        rows.append(dict(zip(["config", "dataset", "method", "k"], key), mean=m, ci_low=lo, ci_high=hi,
                         seeds=len(g)))
    return pd.DataFrame(rows)


def paired_tests(results: pd.DataFrame, grid_keys: list[str], metric: str = "auroc") -> pd.DataFrame:
    """Wilcoxon signed-rank test of ``pretrained`` vs each baseline, paired over seeds x tasks."""
    df = results[results.metric == metric].copy()
    df["config"] = _config_label(df, grid_keys)
    rows = []
    for (config, dataset, k), g in df.groupby(["config", "dataset", "k"]):
        wide = g.pivot_table(index=["seed", "task"], columns="method", values="value")
        if "pretrained" not in wide:
            continue
        for base in BASELINES:
            if base not in wide:
                continue
            pair = wide[["pretrained", base]].dropna()
            diff = (pair["pretrained"] - pair[base]).values
            p = float("nan")
            if len(diff) >= 2 and np.any(diff != 0):
                p = float(stats.wilcoxon(pair["pretrained"], pair[base]).pvalue)
            verdict = "no evidence"
            if p < 0.05:
                verdict = "pretraining helps" if diff.mean() > 0 else "pretraining hurts"
            rows.append({"config": config, "dataset": dataset, "k": k, "baseline": base, "pairs": len(diff),
                         "mean_diff": float(diff.mean()) if len(diff) else float("nan"), "p_value": p,
                         "verdict": verdict})
    return pd.DataFrame(rows)


def _plots(summary: pd.DataFrame, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for dataset, g in summary.groupby("dataset"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (config, method), s in g.groupby(["config", "method"]):
            if config != g["config"].iloc[0] and method != "pretrained":
                continue  # baselines are the same for every config: draw them once
            s = s.sort_values("k")
            label = method if method != "pretrained" else f"pretrained ({config})"
            ax.plot(s["k"], s["mean"], marker="o", label=label)
            ax.fill_between(s["k"], s["ci_low"], s["ci_high"], alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("labelled examples per class (k)")
        ax.set_ylabel("AUROC (task macro, mean over seeds, 95% CI)")
        ax.set_title(f"few-shot: {dataset}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"fewshot_{dataset}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)
    top = summary[(summary.method == "pretrained") & (summary.k == summary.k.max())]
    if top["config"].nunique() > 1:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        labels = [f"{r.dataset}\n{r.config}" for r in top.itertuples()]
        ax.bar(range(len(top)), top["mean"], yerr=[top["mean"] - top["ci_low"], top["ci_high"] - top["mean"]])
        ax.set_xticks(range(len(top)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(f"AUROC at k={int(top.k.max())}")
        ax.set_title("ablation: pretraining configuration")
        fig.tight_layout()
        fig.savefig(out / "ablation.png", dpi=110)
        plt.close(fig)
        files.append("ablation.png")
    return files


def _md(df: pd.DataFrame) -> str:
    if df.empty:
        return "(none)"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def write_report(sweep: Any, results: pd.DataFrame, trials: pd.DataFrame, out: Path) -> None:
    grid_keys = list(sweep.grid)
    lines = [f"# Sweep `{sweep.name}`", "", f"Base config: `{sweep.base}`; seeds {sweep.seeds}; "
             f"grid: {', '.join(grid_keys) or '(none)'}.", ""]
    counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
    lines += [f"Trials: {len(trials)} ({', '.join(f'{k}: {v}' for k, v in counts.items())}).", ""]
    failed = trials[trials["status"] != "ok"] if not trials.empty else trials
    if len(failed):
        lines += ["Failed trials (the sweep went on; see `trials/<trial>/error.txt`):", "",
                  _md(failed[[c for c in ("trial", "seed", *grid_keys, "error") if c in failed]]), ""]
    if results.empty or "method" not in results:
        lines.append("No results.")
        (out / "report.md").write_text("\n".join(lines))
        return
    summary = summary_table(results, grid_keys)
    summary.to_csv(out / "summary.csv", index=False)
    tests = paired_tests(results, grid_keys)
    tests.to_csv(out / "paired_tests.csv", index=False)
    lines += ["## Few-shot AUROC", "", "Task-macro AUROC per seed, then mean [95% CI] over seeds:", ""]
    show = summary.assign(auroc=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in
                                 zip(summary["mean"], summary["ci_low"], summary["ci_high"])])
    lines += [_md(show[["config", "dataset", "method", "k", "auroc", "seeds"]]), ""]
    lines += ["## Pretrained encoder vs baselines", "",
              "Wilcoxon signed-rank test paired over seeds x tasks (p < 0.05 for a verdict):", "",
              _md(tests), ""]
    helps = tests[tests.verdict == "pretraining helps"]
    hurts = tests[tests.verdict == "pretraining hurts"]
    lines += [f"Pretraining helps in {len(helps)} and hurts in {len(hurts)} of {len(tests)} comparisons; "
              f"the rest show no evidence either way.", ""]
    for name in _plots(summary, out):
        lines.append(f"![{name}]({name})")
    (out / "report.md").write_text("\n".join(lines) + "\n")
