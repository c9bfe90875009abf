"""Benchmark sweeps: run end to end, resume from cache, record failing trials, honest report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cgc_framework.errors import ConfigError
from cgc_framework.metrics import mean_ci
from cgc_framework.sweep import load_sweep, plan_trials, run_sweep

BIN = Path(sys.executable).parent


def sweep_file(tmp_path: Path, registry_yaml: Path, data_dir: Path) -> Path:
    text = f"""
name: tiny
base: {registry_yaml}
output_dir: {tmp_path / "out"}
seeds: [0, 1]
overrides: ["stages=[{{name: mask, epochs: 1, weights: {{mask: 1.0}}}}]", model.encoder.params.num_layers=1]
grid:
  model.encoder.params:
    h8: {{hidden_dim: 8, heads: 2}}
    broken: {{hidden_dim: 8, heads: 3}}
evaluations:
  fs: {{name: few_shot, params: {{datasets: [bbbp], k: [5, 10], draws: 2, methods: [pretrained, ecfp_lr],
        data_dir: {data_dir}}}}}
parallel: 2
"""
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


def test_sweep_files_are_validated(tmp_path, registry_yaml):
    p = tmp_path / "s.yaml"
    p.write_text(f"name: x\nbase: {registry_yaml}\nseed: [1]\nevaluations: {{}}\n")
    with pytest.raises(ConfigError) as e:
        load_sweep(p)
    assert "seed: unknown key 'seed'" in str(e.value) and "Did you mean 'seeds'" in str(e.value)


def test_trials_are_the_grid_times_seeds_with_stable_hashes(tmp_path, registry_yaml):
    sweep, _ = load_sweep(sweep_file(tmp_path, registry_yaml, tmp_path))
    trials = plan_trials(sweep)
    assert len(trials) == 4 and {t["seed"] for t in trials} == {0, 1}
    assert {t["labels"]["model.encoder.params"] for t in trials} == {"h8", "broken"}
    assert [t["trial"] for t in trials] == [t["trial"] for t in plan_trials(sweep)]
    assert len({t["trial"] for t in trials}) == 4


@pytest.mark.slow
def test_tiny_sweep_runs_resumes_and_reports(tmp_path, registry_yaml, shared_data):
    path = sweep_file(tmp_path, registry_yaml, shared_data / "moleculenet")
    out = run_sweep(path, progress=False)
    trials = pd.read_csv(out / "trials.csv")
    assert sorted(trials.status) == ["failed", "failed", "ok", "ok"]
    assert trials[trials.status == "failed"].error.str.contains("divisible by heads").all()
    results = pd.read_parquet(out / "results.parquet")
    # 2 ok trials x 1 task x 2 methods x 2 k x 4 metrics, draws averaged
    assert len(results) == 2 * 1 * 2 * 2 * 4
    assert {"trial", "seed", "config_hash", "versions", "model.encoder.params", "k", "method"} <= set(results)
    # report numbers equal those recomputed from the table
    summary = pd.read_csv(out / "summary.csv")
    auc = results[(results.metric == "auroc") & (results.method == "ecfp_lr") & (results.k == 10)]
    m, lo, hi = mean_ci(auc.groupby("seed")["value"].mean().values)
    row = summary[(summary.method == "ecfp_lr") & (summary.k == 10)]
    assert row["mean"].item() == pytest.approx(m) and row["ci_high"].item() == pytest.approx(hi)
    tests = pd.read_csv(out / "paired_tests.csv")
    pair = results[(results.metric == "auroc") & (results.k == 10)].pivot_table(
        index=["seed", "task"], columns="method", values="value")
    p = stats.wilcoxon(pair["pretrained"], pair["ecfp_lr"]).pvalue if np.any(pair.pretrained != pair.ecfp_lr) else np.nan
    got = tests[(tests.k == 10) & (tests.baseline == "ecfp_lr")].p_value.item()
    assert (np.isnan(p) and np.isnan(got)) or got == pytest.approx(p)
    report = (out / "report.md").read_text()
    assert "Failed trials" in report and "divisible by heads" in report and "fewshot_bbbp.png" in report
    assert (out / "fewshot_bbbp.png").stat().st_size > 1000
    # resume: finished trials are not run again, failed ones are retried
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/result.parquet")}
    res = subprocess.run([BIN / "cgc-bench", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "4 trials, 2 cached, 2 to run" in res.stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("trials/*/result.parquet")}
