"""The stage-ablation sweep over all eight MoleculeNet sets at once (docs/results.md).

The sweep's own report treats its two evaluations (seven sets; the first 50 ToxCast assays) apart.
This joins them from ``results.parquet``:

- ``eight_set_average.csv``: per arm x method x k, the eight-set average AUROC x 100 (per seed the
  task-macro AUROC of each set, averaged over support draws, then the mean over the sets) as mean and
  95% Student-t half-width over seeds;
- ``pooled_paired_tests_8sets.csv``: ``pretrained`` minus each baseline per arm x k, paired over seeds x
  sets x tasks (ToxCast's 50 assays weigh most), two-sided Wilcoxon signed-rank p, Holm-adjusted over
  every row.

    python benchmarks/stage_ablation_eight_sets.py benchmarks/results/stage_ablation
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from cgc_framework.bench.report import holm

BASELINES = ("untrained", "ecfp_lr", "ecfp_rf", "minimol")


def main(folder: Path) -> None:
    df = pd.read_parquet(folder / "results.parquet")
    df = df[df.metric == "auroc"]
    task = df.groupby(["arm", "seed", "dataset", "task", "method", "k"])["value"].mean().reset_index()
    per_set = task.groupby(["arm", "seed", "dataset", "method", "k"])["value"].mean().reset_index()
    average = per_set.groupby(["arm", "seed", "method", "k"])["value"].mean().reset_index()

    def summary(x: pd.Series) -> pd.Series:
        v = x.to_numpy()
        half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
        return pd.Series({"mean": round(100 * v.mean(), 2), "ci_half": round(100 * half, 2), "seeds": len(v)})

    average.groupby(["arm", "method", "k"])["value"].apply(summary).unstack().reset_index() \
        .to_csv(folder / "eight_set_average.csv", index=False)
    rows = []
    for (arm, k), g in task.groupby(["arm", "k"]):
        wide = g.pivot_table(index=["seed", "dataset", "task"], columns="method", values="value")
        for b in BASELINES:
            d = (wide["pretrained"] - wide[b]).dropna()
            rows.append({"arm": arm, "k": k, "baseline": b, "pairs": len(d), "difference": round(100 * d.mean(), 2),
                         "p": stats.wilcoxon(d).pvalue})
    tests = pd.DataFrame(rows)
    tests["p_holm"] = holm(tests.p.to_numpy())
    tests["verdict"] = np.where(tests.p_holm < 0.05, np.where(tests.difference > 0, "pretrained better",
                                                              "pretrained worse"), "no evidence")
    tests.to_csv(folder / "pooled_paired_tests_8sets.csv", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
