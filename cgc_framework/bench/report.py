"""Sweep report: mean and 95% CI over seeds, paired tests against the baselines, plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cgc_framework.bench.summary import config_label, generic_summary, grid_label
from cgc_framework.plugin.metrics import mean_ci


def summary_table(results: pd.DataFrame, grid_keys: list[str], metric: str = "auroc") -> pd.DataFrame:
    """Per config x data set x method x k: task-macro ``metric`` per seed, mean and 95% CI over seeds."""
    df = results[results.metric == metric].copy()
    df["config"] = config_label(df, grid_keys)
    per_seed = df.groupby(["config", "dataset", "method", "k", "seed"])["value"].mean().reset_index()
    rows = []
    for key, g in per_seed.groupby(["config", "dataset", "method", "k"]):
        m, lo, hi = mean_ci(g["value"].values)
        rows.append(dict(zip(["config", "dataset", "method", "k"], key), mean=m, ci_low=lo, ci_high=hi,
                         seeds=len(g)))
    return pd.DataFrame(rows)


def paired_tests(results: pd.DataFrame, grid_keys: list[str], *, model: str, baselines: Sequence[str],
                 metric: str = "auroc") -> pd.DataFrame:
    """Wilcoxon signed-rank test of method ``model`` vs each of ``baselines``, paired over seeds x
    tasks, per config x data set x k; plus, where a config has several data sets, a pooled row
    (``dataset`` ``(all)``) paired over seeds x data sets x tasks (data sets with more tasks weigh more)."""
    df = results[results.metric == metric].copy()
    df["config"] = config_label(df, grid_keys)
    groups = [((config, dataset, k), g) for (config, dataset, k), g in df.groupby(["config", "dataset", "k"])]
    groups += [((config, "(all)", k), g) for (config, k), g in df.groupby(["config", "k"])
               if g["dataset"].nunique() > 1]
    rows = []
    for (config, dataset, k), g in groups:
        wide = g.pivot_table(index=["seed", "dataset", "task"], columns="method", values="value")
        if model not in wide:
            continue
        for base in baselines:
            if base not in wide:
                continue
            pair = wide[[model, base]].dropna()
            diff = (pair[model] - pair[base]).values
            p = float("nan")
            if len(diff) >= 2 and np.any(diff != 0):
                p = float(stats.wilcoxon(pair[model], pair[base]).pvalue)
            verdict = "no evidence"
            if p < 0.05:
                verdict = "pretraining helps" if diff.mean() > 0 else "pretraining hurts"
            rows.append({"config": config, "dataset": dataset, "k": k, "baseline": base, "pairs": len(diff),
                         "mean_diff": float(diff.mean()) if len(diff) else float("nan"), "p_value": p,
                         "verdict": verdict})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["p_holm"] = holm(out["p_value"].values)
    return out


def verdict_counts(tests: pd.DataFrame) -> pd.DataFrame:
    """Per comparison kind (per data set, or pooled over data sets), baseline and k: how many
    comparisons found pretraining helping, no evidence, or hurting (unadjusted p < 0.05), how many
    of the verdicts survive Holm's adjustment, and the mean paired difference."""
    if tests.empty:
        return tests
    t = tests.assign(comparison=np.where(tests["dataset"] == "(all)", "pooled", "per data set"))
    rows = []
    for (kind, base, k), g in t.groupby(["comparison", "baseline", "k"], sort=True):
        holm_sig = g["p_holm"] < 0.05
        rows.append({"comparison": kind, "baseline": base, "k": k, "n": len(g),
                     "helps": int((g["verdict"] == "pretraining helps").sum()),
                     "no evidence": int((g["verdict"] == "no evidence").sum()),
                     "hurts": int((g["verdict"] == "pretraining hurts").sum()),
                     "helps (Holm)": int((holm_sig & (g["mean_diff"] > 0)).sum()),
                     "hurts (Holm)": int((holm_sig & (g["mean_diff"] < 0)).sum()),
                     "mean_diff": float(g["mean_diff"].mean())})
    return pd.DataFrame(rows)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values over all (non-NaN) comparisons of a table."""
    p = np.asarray(p, dtype=float)
    adj = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok])]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def _plots(summary: pd.DataFrame, out: Path, model: str, title: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for dataset, g in summary.groupby("dataset"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (config, method), s in g.groupby(["config", "method"]):
            if config != g["config"].iloc[0] and method != model:
                continue  # baselines are the same for every config: draw them once
            s = s.sort_values("k")
            label = method if method != model else f"{model} ({config})"
            ax.plot(s["k"], s["mean"], marker="o", label=label)
            ax.fill_between(s["k"], s["ci_low"], s["ci_high"], alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("labelled examples per class (k)")
        ax.set_ylabel("AUROC (task macro, mean over seeds, 95% CI)")
        ax.set_title(f"{title}: {dataset}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"fewshot_{dataset}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)
    top = summary[(summary.method == model) & (summary.k == summary.k.max())]
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


def data_section(checksums: pd.DataFrame | None) -> list[str]:
    """Markdown lines: every data file the trials read, with its sha256 and how many trials read it;
    a file name seen with more than one checksum (the data changed between trials) is flagged."""
    if checksums is None or checksums.empty:
        return ["## Data", "", "No data checksums recorded.", ""]
    df = checksums.assign(name=checksums["file"].map(lambda f: Path(f).name),
                          what=[r if r == "pretraining" else f"{e}: {d}" for r, e, d in
                                zip(checksums["role"], checksums["evaluation"].fillna(""),
                                    checksums["dataset"].fillna(""))])
    rows = (df.groupby(["what", "name", "sha256"], dropna=False)["trial"].nunique().reset_index()
            .rename(columns={"what": "read by", "name": "file", "trial": "trials"}))
    lines = ["## Data", "", "sha256 of every file the trials read (pretraining dataset files behind its "
             "`describe()` provenance; evaluation data files); per row in `results.parquet` as "
             "`pretrain_data_sha256` / `eval_data_sha256`, full paths in `data_checksums.csv`:", "",
             _md(rows), ""]
    changed = rows.groupby("file")["sha256"].nunique()
    changed = sorted(changed[changed > 1].index)
    if changed:
        lines += [f"**Warning:** {', '.join(changed)} had different checksums in different trials: "
                  "the data changed while the sweep ran; results are not comparable across those trials.", ""]
    return lines


def write_report(sweep: Any, results: pd.DataFrame, trials: pd.DataFrame, out: Path,
                 checksums: pd.DataFrame | None = None, comparisons: list[dict[str, Any]] | None = None) -> None:
    """``report.md`` (+ ``summary.csv``, ``paired_tests.csv``, plots) in ``out``.

    ``comparisons``: the comparison tables the evaluators declared
    (:class:`~cgc_framework.plugin.contracts.Comparison` as dicts with their ``evaluation`` key): each
    gets overview tables and paired tests of its model against its baselines; every other table
    gets the generic summary."""
    grid_keys = [grid_label(k) for k in sweep.grid]
    lines = [f"# Sweep `{sweep.name}`", "", f"Base config: `{sweep.base}`; seeds {sweep.seeds}; "
             f"grid: {', '.join(grid_keys) or '(none)'}.", ""]
    counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
    lines += [f"Trials: {len(trials)} ({', '.join(f'{k}: {v}' for k, v in counts.items())}).", ""]
    failed = trials[trials["status"] == "failed"] if not trials.empty else trials
    if not trials.empty and (trials["status"] == "not run").any():
        lines += [f"{int((trials['status'] == 'not run').sum())} trial(s) not run yet: this report covers the "
                  "finished ones; run the same command again to continue the sweep.", ""]
    if len(failed):
        lines += ["Failed trials (the sweep went on; see `trials/<trial>/error.txt`):", "",
                  _md(failed[[c for c in ("trial", "seed", *grid_keys, "error") if c in failed]]), ""]
    if results.empty:
        lines += ["No results.", ""] + data_section(checksums)
        (out / "report.md").write_text("\n".join(lines))
        return
    declared = {(c["evaluation"], c["table"]): c for c in comparisons or []}
    keys = list(zip(results["evaluation"], results["table"])) if {"evaluation", "table"} <= set(results) else []
    is_cmp = pd.Series([k in declared for k in keys] if keys else False, index=results.index, dtype=bool)
    plots: list[str] = []
    for key, c in declared.items():
        rows = results[is_cmp & pd.Series([k == key for k in keys], index=results.index, dtype=bool)]
        if rows.empty:
            continue
        section, files = _comparison_section(rows.dropna(axis=1, how="all"), c, grid_keys, trials, out)
        lines += section
        plots += files
    other = results[~is_cmp]
    generic = generic_summary(other, grid_keys) if not other.empty else pd.DataFrame()
    if not generic.empty:  # empty too when every other table is a per-item listing
        generic.to_csv(out / "other_summary.csv", index=False)
        lines += ["## Other evaluations", "", "Each table's values, mean [95% CI] over seeds "
                  "(all rows: `other_summary.csv`):", ""]
        for (ev, table), g in generic.groupby(["evaluation", "table"], sort=False):
            g = g.dropna(axis=1, how="all")
            cols = [c for c in g.columns if c not in ("evaluation", "table", "mean", "ci_low", "ci_high")]
            lines += [f"### `{ev}` / `{table}`", "", _md(_with_ci(g, "value")[[*cols, "value"]]), ""]
        plots += _ood_plot(generic, out)
    for name in plots:
        lines.append(f"![{name}]({name})")
    lines += [""] + data_section(checksums)
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _comparison_section(rows: pd.DataFrame, c: dict[str, Any], grid_keys: list[str], trials: pd.DataFrame,
                        out: Path) -> tuple[list[str], list[str]]:
    """The report section of one declared comparison table (Markdown lines, plot file names); writes
    ``summary.csv``, ``paired_tests.csv`` and ``average.csv``."""
    model, baselines, metric = c["model"], tuple(c["baselines"]), c.get("metric", "auroc")
    title = c.get("title") or f"`{c['evaluation']}` / `{c['table']}`: {metric}"
    summary = summary_table(rows, grid_keys, metric)
    summary.to_csv(out / "summary.csv", index=False)
    tests = paired_tests(rows, grid_keys, model=model, baselines=baselines, metric=metric)
    tests.to_csv(out / "paired_tests.csv", index=False)
    average = average_table(rows, grid_keys, metric)
    average.to_csv(out / "average.csv", index=False)
    M = metric.upper() if metric in ("auroc", "auprc", "mse") else metric
    lines = [f"## {title}", "", "### Overview", "",
             f"{M} x 100 on the test splits: per seed the task-macro {M} (averaged over support "
             "draws), then mean ± half-width of the 95% CI over seeds; \"average\": per seed the mean "
             "over the data sets, then over seeds. Baselines that do not change with the configuration "
             "have one row.", ""]
    planned = trials if set(grid_keys) <= set(trials.columns) else rows  # the grid's order
    lines += overview_tables(summary, average, list(dict.fromkeys(config_label(planned, grid_keys))),
                             model=model, baselines=baselines)
    lines += ["### Per configuration, data set, method and k", "",
              f"Task-macro {M} per seed, then mean [95% CI] over seeds:", ""]
    lines += [_md(_with_ci(summary, metric)[["config", "dataset", "method", "k", metric, "seeds"]]), ""]
    lines += [f"Average over the data sets (per seed the mean of the data sets' task-macro {M}, then "
              "mean [95% CI] over seeds):", "",
              _md(_with_ci(average, metric)[["config", "method", "k", "datasets", metric, "seeds"]]), ""]
    lines += [f"## `{model}` vs baselines ({', '.join(baselines)})", "",
              "Wilcoxon signed-rank test paired over seeds x tasks per configuration x data set x k, and "
              "pooled over the data sets (data set `(all)`; pairs: seeds x data sets x tasks). Verdict at "
              "unadjusted p < 0.05; `p_holm`: Holm-adjusted over all comparisons of the table.", "",
              f"Verdicts per baseline and k (`mean_diff`: mean paired {M} difference {model} - "
              "baseline over the comparisons):", "", _md(verdict_counts(tests)), "",
              "Every comparison:", "", _md(tests), ""]
    helps = tests[tests.verdict == "pretraining helps"] if len(tests) else tests
    hurts = tests[tests.verdict == "pretraining hurts"] if len(tests) else tests
    lines += [f"Pretraining helps in {len(helps)} and hurts in {len(hurts)} of {len(tests)} comparisons; "
              f"the rest show no evidence either way.", ""]
    return lines, _plots(summary, out, model, c.get("title") or c["table"])


def overview_tables(summary: pd.DataFrame, average: pd.DataFrame, order: list[str] | None = None, *,
                    model: str, baselines: Sequence[str]) -> list[str]:
    """Markdown lines: per k, one row per method x configuration and one column per data set plus
    the average; cells are AUROC x 100 as mean ± half-width of the 95% CI over seeds (the mean
    alone from one seed). A baseline with the same numbers under several configurations (ECFP4
    under all; the untrained encoder under every stage setting of one encoder) gets one row,
    labelled by what those configurations share.
    ``order``: the configurations' order (default: sorted)."""
    datasets = sorted(summary["dataset"].unique())
    both = pd.concat([summary, average.assign(dataset="average")], ignore_index=True)
    lines = []
    for k in sorted(summary["k"].unique()):
        at_k = both[both["k"] == k]
        cells: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
        seeds: dict[tuple[str, str], int] = {}
        for (method, config), g in at_k.groupby(["method", "config"]):
            cells[(method, config)] = {r.dataset: (r.mean, r.ci_high - r.mean) for r in g.itertuples()}
            seeds[(method, config)] = int(g["seeds"].max())
        rows = []
        for method in [*baselines, model, *sorted(set(at_k["method"]) - {*baselines, model})]:
            configs = sorted((c for m, c in cells if m == method),
                             key=lambda c: (order.index(c) if order and c in order else len(order or []), c))
            groups: dict[tuple, list[str]] = {}
            for c in configs:
                same = tuple(sorted((d, round(v[0], 12), round(v[1], 12)) for d, v in cells[(method, c)].items()))
                groups.setdefault(same if method != model else (c,), []).append(c)
            for members in groups.values():
                values, n_seeds = cells[(method, members[0])], seeds[(method, members[0])]
                row = [method, _shared_label(members), str(n_seeds)]
                one_seed = n_seeds < 2  # no interval
                row += ["–" if d not in values else f"{100 * values[d][0]:.1f}" if one_seed
                        else f"{100 * values[d][0]:.1f} ± {100 * values[d][1]:.1f}" for d in [*datasets, "average"]]
                rows.append(row)
        header = ["method", "configuration", "seeds", *datasets, "average"]
        lines += [f"#### k = {k}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    return lines


def _shared_label(configs: list[str]) -> str:
    """``configs`` itself for one; else the parts (", "-separated grid values) they all share, or
    "(all)" when they share none."""
    if len(configs) == 1:
        return configs[0]
    parts = [c.split(", ") for c in configs]
    if len({len(p) for p in parts}) != 1:
        return f"({len(configs)} configurations)"
    shared = [a for a, *rest in zip(*parts) if all(a == b for b in rest)]
    return ", ".join(shared) or "(all)"


def _with_ci(df: pd.DataFrame, column: str = "auroc") -> pd.DataFrame:
    return df.assign(**{column: [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in
                                 zip(df["mean"], df["ci_low"], df["ci_high"])]})


def average_table(results: pd.DataFrame, grid_keys: list[str], metric: str = "auroc") -> pd.DataFrame:
    """Per config x method x k: per seed the mean over data sets of the task-macro ``metric``, then
    mean and 95% CI over seeds (the "average over the eight sets" of Hu et al. 2020)."""
    df = results[results.metric == metric].copy()
    df["config"] = config_label(df, grid_keys)
    per_set = df.groupby(["config", "method", "k", "seed", "dataset"])["value"].mean().reset_index()
    per_seed = per_set.groupby(["config", "method", "k", "seed"]).agg(
        value=("value", "mean"), datasets=("dataset", "nunique")).reset_index()
    rows = []
    for key, g in per_seed.groupby(["config", "method", "k"]):
        m, lo, hi = mean_ci(g["value"].values)
        rows.append(dict(zip(["config", "method", "k"], key), datasets=int(g["datasets"].min()), mean=m,
                         ci_low=lo, ci_high=hi, seeds=len(g)))
    return pd.DataFrame(rows)


def _ood_plot(generic: pd.DataFrame, out: Path) -> list[str]:
    """``ood_vs_id.png``: in-distribution vs out-of-distribution value per config x method, one panel
    per metric, when a table has a ``part`` column with both ``id`` and ``ood`` rows."""
    if generic.empty or "part" not in generic or not {"id", "ood"} <= set(generic["part"].dropna()):
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = generic[generic["part"].isin(["id", "ood"])]
    if "wells" in df and (df["wells"] == "all").any():  # every well, not a subset beside it
        df = df[df["wells"] == "all"]
    by = [c for c in ("config", "suite", "method") if c in df]
    scores = [m for m in df["metric"].dropna().unique() if not str(m).endswith("_defined")] if "metric" in df else []
    metrics = ([m for m in ("pearson", "wmse", "mse") if m in scores] or scores)[:4] or [None]  # scores, not counts
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        d = df[df["metric"] == metric] if metric is not None else df
        wide = d.pivot_table(index=by, columns="part", values="mean", aggfunc="mean").dropna()
        x = np.arange(len(wide))
        ax.bar(x - 0.2, wide["id"], 0.4, label="in-distribution")
        ax.bar(x + 0.2, wide["ood"], 0.4, label="out-of-distribution")
        ax.set_xticks(x, [", ".join(map(str, i if isinstance(i, tuple) else (i,))) for i in wide.index],
                      rotation=60, ha="right", fontsize=6)
        ax.set_title(str(metric or "value"))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "ood_vs_id.png", dpi=110)
    plt.close(fig)
    return ["ood_vs_id.png"]
