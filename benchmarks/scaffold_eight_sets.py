"""Eight-set averages and paired tests of the scaffold-benchmark sweep (``benchmarks/sweeps/scaffold.yaml``).

Reads the ``scaffold`` table of ``results.parquet`` (one row per seed x data set x protocol x init: the
task-macro test ROC-AUC on the scaffold split) and writes, beside it:

- ``scaffold_per_set.csv``: per method x data set, the mean and 95% Student-t half-width over seeds (x 100);
- ``scaffold_average.csv``: per method, the average over the data sets of each seed, then mean and
  half-width over seeds, with the number of sets it covers (those scored at every seed);
- ``scaffold_paired.csv``: each fine-tuning of the pretrained weights (``finetune``, ``finetune_lp``)
  minus each other method, paired over seeds x data sets, mean difference, two-sided Wilcoxon
  signed-rank p, Holm-adjusted over the rows;
- ``scaffold_report.md``: the tables as Markdown, beside Hu et al. (2020).

    python benchmarks/scaffold_eight_sets.py runs/sweeps/scaffold

Several sweep folders are combined (the same seeds; other data sets, or a re-run of some rows, whose
rows replace the earlier folders'), written to ``--out``:

    python benchmarks/scaffold_eight_sets.py runs/sweeps/scaffold runs/sweeps/scaffold_hiv runs/sweeps/scaffold_muv \
        --out benchmarks/results/scaffold_combined
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from cgc_framework.bench.report import holm
from cgc_plugins.evaluators.scaffold import LITERATURE

MODELS = ("finetune / pretrained", "finetune_lp / pretrained")


def _mean_half(v: np.ndarray) -> tuple[float, float]:
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return round(100 * v.mean(), 1), round(100 * half, 1)


def tables(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    df = results[(results.evaluation == "scaffold") & (results.table == "scaffold")].copy()
    if df.empty:
        raise SystemExit("results.parquet has no `scaffold` table of a `scaffold` evaluation")
    df["method"] = df.protocol + np.where(df["init"] == "-", "", " / " + df["init"])
    per_set = pd.DataFrame([{"method": m, "dataset": d, **dict(zip(("mean", "ci_half"), _mean_half(g.test_auroc.to_numpy()))),
                             "seeds": len(g)} for (m, d), g in df.groupby(["method", "dataset"])])
    # the averages cover the sets scored at every seed (a set run with fewer seeds is in the per-set table)
    seeds_of = df.groupby("dataset").seed.nunique()
    full = df[df.dataset.isin(seeds_of[seeds_of == df.seed.nunique()].index)]
    by_seed = full.groupby(["method", "seed"]).agg(value=("test_auroc", "mean"), sets=("dataset", "nunique")).reset_index()
    average = pd.DataFrame([{"method": m, **dict(zip(("mean", "ci_half"), _mean_half(g.value.to_numpy()))),
                             "seeds": len(g), "sets": int(g.sets.min())} for m, g in by_seed.groupby("method")])
    wide = df.pivot_table(index=["seed", "dataset"], columns="method", values="test_auroc")
    rows = []
    for model in [m for m in MODELS if m in wide.columns]:
        for other in [m for m in wide.columns if m != model]:
            d = (wide[model] - wide[other]).dropna()
            rows.append({"model": model, "baseline": other, "pairs": len(d), "difference": round(100 * d.mean(), 2),
                         "p": stats.wilcoxon(d).pvalue if len(d) > 1 and d.abs().sum() > 0 else float("nan")})
    paired = pd.DataFrame(rows)
    paired["p_holm"] = holm(paired.p.to_numpy())
    return per_set, average.sort_values("mean", ascending=False), paired


def combined(folders: list[Path]) -> tuple[pd.DataFrame, list[str]]:
    """The ``scaffold`` rows of ``folders`` and notes. Where two folders score the same (seed, data
    set, protocol, init), the later folder's row is kept (a re-run of some rows), and a note says so."""
    results = pd.concat([pd.read_parquet(f / "results.parquet").assign(sweep=i) for i, f in enumerate(folders)],
                        ignore_index=True)
    df = results[(results.evaluation == "scaffold") & (results.table == "scaffold")]
    replaced = df.duplicated(["seed", "dataset", "protocol", "init"], keep="last")   # rows are in folder order
    notes = [f"{n} rows of `{folders[i]}` ({', '.join(sorted(set(g.protocol + ' / ' + g['init'])))}: "
             f"{', '.join(sorted(set(g.dataset)))}) are replaced by the same seeds' rows of a later sweep"
             for i, g in df[replaced].groupby("sweep") if (n := len(g))]
    return df[~replaced], notes


def main(folders: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows, notes = combined(folders)
    per_set, average, paired = tables(rows)
    per_set.to_csv(folder / "scaffold_per_set.csv", index=False)
    average.to_csv(folder / "scaffold_average.csv", index=False)
    paired.to_csv(folder / "scaffold_paired.csv", index=False)
    wide = per_set.assign(cell=per_set["mean"].map("{:.1f}".format)
                          + per_set.ci_half.map(lambda h: "" if np.isnan(h) else f" ± {h:.1f}")) \
        .pivot(index="method", columns="dataset", values="cell")
    wide["average"] = average.set_index("method").apply(lambda r: f"**{r['mean']:.1f} ± {r.ci_half:.1f}**", axis=1)
    lines = ["Scaffold-split test ROC-AUC x 100 (task macro), mean ± 95% half-width over "
             f"{int(per_set.seeds.max())} seeds:", "", "| method | " + " | ".join(wide.columns) + " |",
             "|---|" + "---|" * len(wide.columns)]
    lines += [f"| {m} | " + " | ".join(str(v) for v in row.values) + " |" for m, row in wide.loc[average.method].iterrows()]
    fewer = sorted(set(per_set.dataset[per_set.seeds < per_set.seeds.max()]))
    if fewer:
        lines += ["", f"The average leaves out {', '.join(fewer)}, scored at fewer seeds (cells without ± are one seed); "
                      f"it covers {int(average.sets.min())} sets."]
        for seed, g in rows.assign(method=rows.protocol + np.where(rows["init"] == "-", "", " / " + rows["init"])) \
                .groupby("seed"):
            if g.dataset.nunique() == per_set.dataset.nunique():
                means = g.groupby("method").test_auroc.mean().sort_values(ascending=False)
                lines += ["", f"Seed {seed}, the average over all {g.dataset.nunique()} sets: "
                          + "; ".join(f"{m} {100 * v:.1f}" for m, v in means.items()) + "."]
    lines += ["", "Literature (eight-set averages): " + "; ".join(f"{k}: {v:.1f}" for k, v in LITERATURE.items()) + ".",
              "", "Each fine-tuning of the pretrained weights minus each method, paired over seeds x data sets "
              "(Wilcoxon, Holm over the rows):", "",
              "| model | baseline | pairs | difference | p | p (Holm) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.baseline} | {r.pairs} | {r.difference:+.2f} | {r.p:.3g} | {r.p_holm:.3g} |"
              for r in paired.itertuples()]
    lines += ["", "Sweeps: " + ", ".join(f"`{f}`" for f in folders) + "."] + [f"- {n}." for n in notes]
    (folder / "scaffold_report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep folders holding results.parquet")
    parser.add_argument("--out", type=Path, help="where the tables go (default: the first sweep folder)")
    args = parser.parse_args()
    main(args.sweeps, args.out or args.sweeps[0])
