"""Cross-validated summary of a cell-response sweep: folds x seeds -> mean, 95% CI, tests.

A compound-grouped K-fold cross-validation is a sweep whose trials pretrain with one fold's compounds
held out (``data.dataset.params.split: {folds: K, fold: k}``) and evaluate on them
(``causal_consistency``, ``zero_shot``, ``cell_state``; benchmarks/sweeps/causal.yaml). This module
reads the finished trials of such a sweep (``<sweep>/trials.csv`` and each trial's
``run/evaluations/<key>/``) and writes, per grid configuration (the grid labels other than the fold):

- ``cv_counterfactual.csv``: every method x metric (all wells, active wells): mean and 95% Student-t CI
  over the folds x seeds;
- ``cv_differences.csv``: model minus each baseline / ablation per trial (signed so that > 0 means the
  model is better: Pearson model - baseline, MSE baseline - model), mean, 95% CI, one-sided paired
  t-test and Wilcoxon p over the folds x seeds;
- ``cv_retrieval.csv``: per seed, hits summed over the folds (every compound is a query exactly
  once), hit rate with a Clopper-Pearson CI, the exact chance (mean of ``k / gallery``) and a one-sided
  binomial p; then the mean over seeds;
- ``cv_ics.csv``: per seed, the ICS of the held-out compounds of every fold pooled (each compound
  predicted by the model that never saw it), with the permutation test;
- ``cv_cell_state.csv``: balanced accuracy per data set x method x k, mean and CI over trials x draws;
- ``cv_report.md``: the same as Markdown tables with the verdicts in words.

Run: ``python -m cgc_plugins.evaluators.cv_summary runs/sweeps/causal [--out DIR]``; an OOD sweep:
``... runs/sweeps/ood --evaluation ood --table ood`` (mean and CI over seeds per suite and part).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cgc_framework.plugin.metrics import mean_ci

HIGHER_BETTER = {"pearson": True, "spearman": True, "feature_pearson": True, "well_pearson": True,
                 "feature_spearman": True, "well_spearman": True, "mse": False, "wmse": False}
HEADLINE = ("pearson", "wmse", "well_pearson", "feature_pearson", "mse")


def _fold_of(run_dir: Path) -> int | None:
    import yaml

    cfg = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    split = (((cfg.get("data") or {}).get("dataset") or {}).get("params") or {}).get("split") or {}
    return split.get("fold")


def load_trials(sweep_dir: Path) -> pd.DataFrame:
    """Finished trials: ``trial, seed, <grid labels>, fold, run`` (the trial's run directory)."""
    trials = pd.read_csv(sweep_dir / "trials.csv")
    trials = trials[trials.status == "ok"].copy()
    trials["run"] = [sweep_dir / "trials" / t / "run" for t in trials.trial]
    trials["fold"] = [_fold_of(r) for r in trials.run]
    return trials


def config_columns(trials: pd.DataFrame) -> list[str]:
    skip = {"trial", "seed", "status", "error", "seconds", "run", "fold"}
    return [c for c in trials.columns if c not in skip and not c.endswith("fold")]


def read_table(trials: pd.DataFrame, evaluation: str, table: str) -> pd.DataFrame:
    frames = []
    for t in trials.itertuples():
        path = Path(t.run) / "evaluations" / evaluation / f"{table}.csv"
        if path.is_file():
            df = pd.read_csv(path)
            for col in ("trial", "seed", "fold"):
                df[col] = getattr(t, col)
            for col in config_columns(trials):
                df[col] = getattr(t, col)
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _ci_row(v: np.ndarray) -> dict[str, float]:
    m, lo, hi = mean_ci(v)
    return {"mean": m, "ci_low": lo, "ci_high": hi, "n": int(np.isfinite(v).sum())}


def summarize_counterfactual(cf: pd.DataFrame, groups: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per method x metric summary, model - baseline differences)`` over the trials."""
    from scipy import stats

    keys = groups + ["part", "wells"]
    rows = []
    for key, df in cf.groupby(keys + ["method", "metric"], dropna=False):
        rows.append(dict(zip(keys + ["method", "metric"], key), **_ci_row(df.value.to_numpy(float))))
    summary = pd.DataFrame(rows)
    diffs = []
    for key, df in cf[cf.metric.isin(HIGHER_BETTER)].groupby(keys + ["metric"], dropna=False):
        wide = df.pivot_table(index="trial", columns="method", values="value")
        if "model" not in wide:
            continue
        metric = key[-1]
        for base in [c for c in wide.columns if c != "model"]:
            d = (wide["model"] - wide[base]) if HIGHER_BETTER[metric] else (wide[base] - wide["model"])
            d = d.dropna().to_numpy(float)
            row = dict(zip(keys + ["metric"], key), baseline=base, **_ci_row(d))
            row["p_ttest"] = float(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue) if len(d) > 1 \
                and np.std(d) > 0 else float("nan")
            row["p_wilcoxon"] = float(stats.wilcoxon(d, alternative="greater").pvalue) if len(d) > 1 \
                and np.any(d != 0) else float("nan")
            row["model_better_ci"] = bool(np.isfinite(row["ci_low"]) and row["ci_low"] > 0)
            diffs.append(row)
    return summary, pd.DataFrame(diffs)


def summarize_retrieval(ret: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """Per seed, the hits of every fold summed (each compound queries once), with CI and binomial p."""
    from scipy.stats import binomtest

    from .zeroshot import _clopper_pearson

    rows = []
    ret = ret.assign(label=ret.k_label.str.replace(r" \(\d+\)", "", regex=True))
    for key, df in ret.groupby(groups + ["method", "space", "label", "seed"], dropna=False):
        hits, n = int(df.hits.sum()), int(df.queries.sum())
        chance = float((df.chance * df.queries).sum() / max(n, 1))
        lo, hi = _clopper_pearson(hits, n)
        rows.append(dict(zip(groups + ["method", "space", "k", "seed"], key), hits=hits, queries=n,
                         rate=hits / max(n, 1), ci_low=lo, ci_high=hi, chance=chance,
                         p_value=float(binomtest(hits, n, chance, alternative="greater").pvalue) if n else np.nan))
    return pd.DataFrame(rows)


def summarize_ics(trials: pd.DataFrame, evaluation: str, groups: list[str], n_permutations: int = 1000
                  ) -> pd.DataFrame:
    """Per configuration and seed: ICS over the held-out compounds of every fold pooled."""
    from .causal_consistency import intervention_consistency, target_set

    rows = []
    for key, df in trials.groupby(groups + ["seed"], dropna=False):
        frames = []
        for t in df.itertuples():
            path = Path(t.run) / "evaluations" / evaluation / "ics_vectors.parquet"
            if path.is_file():
                frames.append(pd.read_parquet(path).assign(fold=t.fold))
        if not frames:
            continue
        vec = pd.concat(frames, ignore_index=True)
        feats = [c for c in vec.columns if c not in ("source", "compound", "targets", "fold")]
        for source in ("model", "measured"):
            v = vec[vec.source == source].drop_duplicates("compound")
            if len(v) < 3:
                continue
            resp = v[feats].fillna(0.0).to_numpy(float)
            targets = [target_set(s) for s in v.targets]
            for centred in (False, True):
                r = resp - resp.mean(0, keepdims=True) if centred else resp
                res = intervention_consistency(r, targets, n_permutations=n_permutations, seed=int(key[-1]))
                rows.append(dict(zip(groups + ["seed"], key), source=source + ("_centred" if centred else ""),
                                 **res.as_row()))
    return pd.DataFrame(rows)


def summarize_cell_state(cs: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    bal = cs[cs.metric == "balanced_accuracy"]
    rows = []
    for key, df in bal.groupby(groups + ["dataset", "method", "k"], dropna=False):
        rows.append(dict(zip(groups + ["dataset", "method", "k"], key), **_ci_row(df.value.to_numpy(float))))
    return pd.DataFrame(rows)


def _fmt(r: Any) -> str:
    return f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"


def report(sweep_dir: Path, out: Path, evaluation: str = "causal", zeroshot: str = "zeroshot",
           cell_state: str = "cell_state", table: str = "counterfactual") -> str:
    """Write the ``cv_*.csv`` tables and ``cv_report.md`` into ``out``; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    trials = load_trials(sweep_dir)
    groups = config_columns(trials)
    md = [f"# Cross-validated summary of `{sweep_dir}`", "",
          f"{len(trials)} finished trials; folds {sorted(set(trials.fold.dropna().astype(int)))}, seeds "
          f"{sorted(set(trials.seed))}; configurations by {', '.join(groups) or '(one)'}. Means and 95% "
          "Student-t intervals over folds x seeds (the seeds of one fold share its compounds, so the interval "
          "is optimistic by at most the seed-to-seed correlation).", ""]
    cf = read_table(trials, evaluation, table)
    if not cf.empty:
        summary, diffs = summarize_counterfactual(cf, groups)
        summary.to_csv(out / "cv_counterfactual.csv", index=False)
        diffs.to_csv(out / "cv_differences.csv", index=False)
        for key, df in summary[summary.wells == "all"].groupby(groups + ["part"], dropna=False):
            name = ", ".join(map(str, key))
            md += [f"## Counterfactual: {name}", "", "| method | " + " | ".join(HEADLINE) + " |",
                   "|---|" + "---|" * len(HEADLINE)]
            for method in dict.fromkeys(df.method):
                cells = []
                for m in HEADLINE:
                    r = df[(df.method == method) & (df.metric == m)]
                    cells.append(_fmt(r.iloc[0]) if len(r) and np.isfinite(r.iloc[0]["mean"]) else "-")
                md.append(f"| {method} | " + " | ".join(cells) + " |")
            d = diffs[(diffs.wells == "all") & diffs.metric.isin(("pearson", "wmse"))]
            for col, val in zip(groups + ["part"], key if isinstance(key, tuple) else (key,)):
                d = d[d[col].astype(str) == str(val)]
            md += ["", "Model minus baseline (> 0: the model is better), mean [95% CI], one-sided paired t p:", "",
                   "| baseline | Pearson | weighted MSE | verdict |", "|---|---|---|---|"]
            for base in dict.fromkeys(d.baseline):
                p = d[(d.baseline == base) & (d.metric == "pearson")]
                w = d[(d.baseline == base) & (d.metric == "wmse")]
                cell = []
                for x in (p, w):
                    cell.append(f"{_fmt(x.iloc[0])}, p {x.iloc[0].p_ttest:.2g}" if len(x) else "-")
                # a constant baseline (no change) has no Pearson: judged on the weighted MSE alone
                p_ok = (not len(p) or not np.isfinite(p.iloc[0]["mean"]))
                beat = bool(len(w) and w.iloc[0].model_better_ci and (p_ok or p.iloc[0].model_better_ci))
                better = bool(len(w) and w.iloc[0]["mean"] > 0 and (p_ok or p.iloc[0]["mean"] > 0))
                verdict = "beats it (both CIs above 0)" if beat else \
                    ("better on average, CI includes 0" if better else "does not beat it")
                md.append(f"| {base} | {cell[0]} | {cell[1]} | {verdict} |")
            md.append("")
    ret = read_table(trials, zeroshot, "retrieval")
    if not ret.empty and "hits" in ret:
        rs = summarize_retrieval(ret, groups)
        rs.to_csv(out / "cv_retrieval.csv", index=False)
        md += ["## Retrieval (per compound, every fold's held-out compounds pooled per seed)", "",
               "| config | method | space | k | hits / queries (per seed) | rate (mean over seeds) | chance | "
               "binomial p (max over seeds) |", "|---|---|---|---|---|---|---|---|"]
        for key, df in rs.groupby(groups + ["method", "space", "k"], dropna=False, sort=False):
            cfg = ", ".join(map(str, key[:len(groups)])) or "-"
            md.append(f"| {cfg} | {key[-3]} | {key[-2]} | {key[-1]} | "
                      + ", ".join(f"{h}/{q}" for h, q in zip(df.hits, df.queries))
                      + f" | {df.rate.mean():.3f} | {df.chance.mean():.3f} | {df.p_value.max():.2g} |")
        md.append("")
    ics = summarize_ics(trials, evaluation, groups)
    if not ics.empty:
        ics.to_csv(out / "cv_ics.csv", index=False)
        md += ["## ICS on held-out compounds (all folds pooled per seed)", "",
               "| config | seed | source | compounds | same-target pairs | ICS same target | ICS all pairs | p |",
               "|---|---|---|---|---|---|---|---|"]
        for r in ics.itertuples():
            cfg = ", ".join(str(getattr(r, g)) for g in groups) or "-"
            md.append(f"| {cfg} | {r.seed} | {r.source} | {r.n_compounds} | {r.n_target_pairs} | {r.ics_target:.3f} | "
                      f"{r.ics_random:.3f} | {r.p_value:.3g} |")
        md.append("")
    cs = read_table(trials, cell_state, "cell_state")
    if not cs.empty:
        css = summarize_cell_state(cs, groups)
        css.to_csv(out / "cv_cell_state.csv", index=False)
        md += ["## Cell-state classification (balanced accuracy, mean [95% CI] over trials x draws)", ""]
        for key, df in css.groupby(groups + ["dataset"], dropna=False):
            ks = sorted(df.k.unique())
            md += [f"**{', '.join(map(str, key))}**", "", "| method | " + " | ".join(f"k={k}" for k in ks) + " |",
                   "|---|" + "---|" * len(ks)]
            for method in dict.fromkeys(df.method):
                md.append(f"| {method} | " + " | ".join(
                    _fmt(df[(df.method == method) & (df.k == k)].iloc[0]) if len(df[(df.method == method) & (df.k == k)])
                    else "-" for k in ks) + " |")
            emb = df[df.method == "embedding"].set_index("k")["mean"]
            raw = df[df.method == "raw"].set_index("k")["mean"]
            wins = [int(k) for k in ks if k in emb and k in raw and emb[k] >= raw[k]]
            md += ["", f"Embeddings + LR >= raw features + LR at k = {wins} of {[int(k) for k in ks]}.", ""]
    text = "\n".join(md)
    (out / "cv_report.md").write_text(text)
    (out / "cv_trials.json").write_text(json.dumps([{"trial": t.trial, "seed": int(t.seed), "fold": t.fold,
                                                      **{g: str(getattr(t, g)) for g in groups}}
                                                     for t in trials.itertuples()], indent=1))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cgc_plugins.evaluators.cv_summary", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the sweep folder)")
    parser.add_argument("--evaluation", default="causal", help="key of the causal_consistency evaluation")
    parser.add_argument("--zeroshot", default="zeroshot", help="key of the zero_shot evaluation")
    parser.add_argument("--cell-state", default="cell_state", help="key of the cell_state evaluation")
    parser.add_argument("--table", default="counterfactual",
                        help="the response table of --evaluation (counterfactual; ood for an ood_response sweep)")
    args = parser.parse_args(argv)
    if not (args.sweep_dir / "trials.csv").is_file():
        print(f"error: {args.sweep_dir} has no trials.csv (not a cgc-bench sweep folder)", file=sys.stderr)
        return 2
    print(report(args.sweep_dir, args.out or args.sweep_dir, args.evaluation, args.zeroshot, args.cell_state,
                 args.table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
