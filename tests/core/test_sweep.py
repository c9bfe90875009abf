"""Benchmark sweeps: run end to end, resume from cache, record failing trials, honest report."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cgc_framework.bench.config import expand_env, load_sweep, plan_trials
from cgc_framework.bench.report import data_section
from cgc_framework.bench.sweep import run_sweep, trial_data_checksums, validate_sweep
from cgc_framework.plugin.errors import ConfigError
from cgc_framework.plugin.metrics import mean_ci
from cgc_plugins.evaluators.molnet import MOLNET_FILES

#: what the few_shot evaluator declares (Evaluator.comparisons), for the report functions
FEW_SHOT = {"model": "pretrained", "baselines": ("ecfp_lr", "ecfp_rf", "untrained")}

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "benchmarks" / "sweeps").glob("*.yaml"))


def sweep_file(tmp_path: Path, registry_yaml: Path, data_dir: Path | str) -> Path:
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
    # data checksums: the sha256 of the CSV each row's evaluation read, and of the pretraining files
    bbbp = hashlib.sha256((shared_data / "moleculenet" / "BBBP.csv").read_bytes()).hexdigest()
    assert set(results.eval_data_sha256) == {json.dumps({"BBBP.csv": bbbp})}
    pre = json.loads(results.pretrain_data_sha256.iloc[0])
    assert pre and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in pre.values())
    assert bbbp in report and all(h in report for h in pre.values())
    sums = pd.read_csv(out / "data_checksums.csv")
    assert set(sums[sums.role == "evaluation"].sha256) == {bbbp} and sums.trial.nunique() == 2


def test_sweep_values_expand_environment_variables(tmp_path, registry_yaml, monkeypatch):
    raw = {"a": {"data_dir": "${CGC_T_DIR}/x", "n": 3, "plain": "$HOME"},
           "b": [{"profiles": ["${CGC_T_UNSET:-fallback}/p.csv"]}], "c": {"data_dir": "${CGC_T_UNSET:-}"}}
    got = expand_env(raw, environ={"CGC_T_DIR": "/d"})
    assert got == {"a": {"data_dir": "/d/x", "n": 3, "plain": "$HOME"}, "b": [{"profiles": ["fallback/p.csv"]}],
                   "c": {"data_dir": None}}
    with pytest.raises(ConfigError, match=r"a.data_dir: environment variable CGC_T_DIR is not set"):
        expand_env(raw, environ={})
    # through a sweep file; --set replaces the value before expansion
    p = sweep_file(tmp_path, registry_yaml, '"${CGC_T_DIR}"')  # quoted: braces end a YAML flow mapping
    monkeypatch.setenv("CGC_T_DIR", str(tmp_path))
    sweep, _ = load_sweep(p)
    assert sweep.evaluations["fs"].params["data_dir"] == str(tmp_path)
    sweep, _ = load_sweep(p, overrides=["evaluations.fs.params.data_dir=/elsewhere"])
    assert sweep.evaluations["fs"].params["data_dir"] == "/elsewhere"


def fake_shared_data(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    """``$CGC_SHARED_DATA`` -> a tree of empty files at every ``${CGC_SHARED_DATA}/...`` path the shipped
    sweeps and configs name (validation checks that data paths exist, it reads no data)."""
    (root / "moleculenet").mkdir(parents=True)
    for f in [*SHIPPED, *(REPO / "benchmarks" / "configs").glob("*.yaml")]:
        for rel in re.findall(r"\$\{CGC_SHARED_DATA[^}]*\}/([^\s\"',\]]+)", f.read_text()):
            if "." in Path(rel).name:   # a file (directories are made as its parents)
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).touch()
    monkeypatch.setenv("CGC_SHARED_DATA", str(root))
    return root


def test_quick_overrides_reach_every_gridded_stage(monkeypatch, tmp_path):
    molnet = fake_shared_data(monkeypatch, tmp_path) / "moleculenet"
    full, _ = load_sweep(REPO / "benchmarks" / "sweeps" / "stage_ablation.yaml")
    quick, _ = load_sweep(REPO / "benchmarks" / "sweeps" / "stage_ablation.yaml", quick=True)
    trials = plan_trials(full)
    assert len(trials) == 12 and len({t["trial"] for t in trials}) == 12
    assert {len(t["config"]["stages"]) for t in trials} == {1, 2, 3}
    shipped = [t for t in trials if t["labels"]["arm"] == "gin corpus"]   # the shipped weights, evaluated as they are
    assert len(shipped) == 3 and all(t["config"]["stages"][0]["epochs"] == 0 for t in shipped)
    assert all(s["epochs"] > 1 for t in trials if t not in shipped for s in t["config"]["stages"])
    q = plan_trials(quick)
    assert len(q) == 2 and all(s["epochs"] == 1 for t in q for s in t["config"]["stages"])
    assert {t["labels"]["arm"] for t in q} == {"gin corpus+causal", "hgt mask+contrast+causal"}
    assert all(t["config"]["evaluations"]["fewshot"]["params"]["data_dir"] == str(molnet) for t in q)


@pytest.mark.parametrize("override", ["stages.5.epochs=1", "tasks.*.nothing.*.x=1"])
def test_overrides_that_match_nothing_are_errors(tmp_path, registry_yaml, override):
    p = sweep_file(tmp_path, registry_yaml, tmp_path)
    sweep, _ = load_sweep(p, overrides=[f"overrides=[{override}]"])
    with pytest.raises(ConfigError, match=re.escape(override.split("=")[0])):
        plan_trials(sweep)


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_sweeps_validate(path, quick, monkeypatch, tmp_path):
    fake_shared_data(monkeypatch, tmp_path)
    trials = validate_sweep(path, quick=quick)
    assert trials and len({t["trial"] for t in trials}) == len(trials)


def test_shipped_sweeps_include_the_standard_three():
    assert {"stage_ablation", "ood", "causal"} <= {p.stem for p in SHIPPED}


def test_validation_names_an_unknown_component(tmp_path, registry_yaml):
    p = sweep_file(tmp_path, registry_yaml, tmp_path)
    with pytest.raises(ConfigError, match="few_shoot"):
        validate_sweep(p, overrides=["evaluations.fs.name=few_shoot"])


def test_trial_data_checksums_hash_the_files_read(tmp_path, registry_yaml):
    from cgc_framework.engine.config import load_config

    (tmp_path / MOLNET_FILES["bbbp"]).write_text("smiles,p_np\nCCO,1\n")
    cfg = load_config(registry_yaml, [f"evaluations={{fs: {{name: few_shot, params: {{datasets: [bbbp, bace], "
                                      f"data_dir: {tmp_path}}}}}}}"])
    data = trial_data_checksums(cfg)
    want = hashlib.sha256(b"smiles,p_np\nCCO,1\n").hexdigest()
    assert data["evaluations"]["fs"] == {"bbbp": {str((tmp_path / "BBBP.csv").resolve()): want}, "bace": {}}
    assert data["pretraining"], "the embedded plate's files"
    for f, h in data["pretraining"].items():
        assert h == hashlib.sha256(Path(f).read_bytes()).hexdigest()
    # exactly the files the dataset's describe() provenance names (no working-directory files), with
    # the same checksum prefixes
    text = json.dumps(data["pretraining_provenance"])
    assert all(Path(f).name in text for f in data["pretraining"]), data["pretraining"]
    prov = data["pretraining_provenance"]["profiles"]
    for name, prefix in re.findall(r"(\S+) \(sha256 ([0-9a-f]+)", prov):
        assert any(Path(f).name == name and h.startswith(prefix) for f, h in data["pretraining"].items())


def test_data_section_flags_a_file_that_changed_between_trials():
    sums = pd.DataFrame({"trial": ["a", "b"], "role": ["evaluation"] * 2, "evaluation": ["fs"] * 2,
                         "dataset": ["bbbp"] * 2, "file": ["/d/BBBP.csv"] * 2, "sha256": ["1" * 64, "2" * 64]})
    text = "\n".join(data_section(sums))
    assert "1" * 64 in text and "2" * 64 in text and "BBBP.csv had different checksums" in text
    assert "different checksums" not in "\n".join(data_section(sums.iloc[:1]))


def synthetic_results() -> pd.DataFrame:
    """Few-shot rows (2 configs x 2 sets x 2 methods x 3 seeds x 2 tasks) and OOD rows (id/ood parts)."""
    rng = np.random.default_rng(0)
    rows = []
    for config in ("a", "b"):
        for seed in (0, 1, 2):
            for ds in ("bbbp", "tox21"):
                for method in ("pretrained", "ecfp_lr"):
                    for task in ("t1", "t2"):
                        rows.append({"evaluation": "fs", "table": "few_shot", "trial": f"{config}{seed}",
                                     "seed": seed, "stages": config, "dataset": ds, "task": task,
                                     "method": method, "k": 5, "metric": "auroc", "value": rng.uniform(0.5, 0.9)})
            for part in ("id", "ood"):
                for method in ("model", "control"):
                    rows.append({"evaluation": "ood", "table": "metrics", "trial": f"{config}{seed}", "seed": seed,
                                 "stages": config, "part": part, "method": method, "metric": "pearson",
                                 "value": rng.uniform(0, 1)})
    return pd.DataFrame(rows)


def test_report_tables_equal_numbers_recomputed_from_the_results(tmp_path):
    from types import SimpleNamespace

    from cgc_framework.bench.report import average_table, write_report
    from cgc_framework.bench.summary import generic_summary

    res = synthetic_results()
    fs = res[res.table == "few_shot"]
    avg = average_table(fs, ["stages"])
    g = fs[(fs.stages == "b") & (fs.method == "pretrained")]
    per_seed = g.groupby(["seed", "dataset"])["value"].mean().groupby("seed").mean().values
    m, lo, hi = mean_ci(per_seed)
    row = avg[(avg.config == "b") & (avg.method == "pretrained")]
    assert row["mean"].item() == pytest.approx(m) and row["ci_low"].item() == pytest.approx(lo)
    assert row["datasets"].item() == 2 and row["seeds"].item() == 3
    gen = generic_summary(res[res.table != "few_shot"], ["stages"])
    o = res[(res.table == "metrics") & (res.stages == "a") & (res.part == "ood") & (res.method == "model")]
    m, lo, hi = mean_ci(o.groupby("seed")["value"].mean().values)
    got = gen[(gen.config == "a") & (gen.part == "ood") & (gen.method == "model")]
    assert got["mean"].item() == pytest.approx(m) and got["ci_high"].item() == pytest.approx(hi)
    sweep = SimpleNamespace(name="syn", base=Path("registry.yaml"), seeds=[0, 1, 2], grid={"stages": ["a", "b"]})
    trials = pd.DataFrame({"trial": ["a0", "a1"], "seed": [0, 1], "status": ["ok", "not run"]})
    write_report(sweep, res, trials, tmp_path,
                 comparisons=[{"evaluation": "fs", "table": "few_shot", "title": "Few-shot AUROC", **FEW_SHOT}])
    report = (tmp_path / "report.md").read_text()
    assert "1 trial(s) not run yet" in report and "Failed trials" not in report
    assert "## Few-shot AUROC" in report and "## Other evaluations" in report and "`ood` / `metrics`" in report
    assert f"{m:.3f} [{lo:.3f}, {hi:.3f}]" in report
    assert (tmp_path / "ood_vs_id.png").stat().st_size > 1000 and (tmp_path / "average.csv").exists()


def test_a_wide_listing_table_is_kept_and_reported_without_a_value_column(tmp_path):
    """``scaffold_benchmark``'s table: one column per measure, more rows per trial than a summary takes."""
    from types import SimpleNamespace

    from cgc_framework.bench.report import write_report

    rows = [{"trial": f"t{seed}", "seed": seed, "stages": "a", "evaluation": "sc", "table": "scaffold",
             "dataset": f"set{i}", "protocol": "finetune", "init": "pretrained", "test_auroc": 0.5 + i / 100}
            for seed in range(2) for i in range(40)]
    res = pd.DataFrame(rows)
    sweep = SimpleNamespace(name="wide", base=Path("registry.yaml"), seeds=[0, 1], grid={"stages": ["a"]})
    trials = pd.DataFrame({"trial": ["t0", "t1"], "seed": [0, 1], "status": ["ok", "ok"]})
    write_report(sweep, res, trials, tmp_path, comparisons=[])
    report = (tmp_path / "report.md").read_text()
    assert "## Other evaluations" not in report and not (tmp_path / "other_summary.csv").exists()


def test_overview_has_one_row_per_baseline_that_does_not_change_with_the_configuration():
    from cgc_framework.bench.report import average_table, overview_tables, summary_table

    res = synthetic_results()
    res = res[res.table == "few_shot"]
    ecfp = res[(res.method == "ecfp_lr") & (res.stages == "a")]  # as a sweep makes them: equal in every config
    res = pd.concat([res[res.method != "ecfp_lr"], ecfp, ecfp.assign(stages="b", trial="b" + ecfp.seed.astype(str))])
    summary, average = summary_table(res, ["stages"]), average_table(res, ["stages"])
    text = "\n".join(overview_tables(summary, average, order=["b", "a"], **FEW_SHOT))
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith(("| ecfp_lr", "| pretrained"))]
    assert [(r[0], r[1]) for r in rows] == [("| ecfp_lr", "(all)"), ("| pretrained", "b"), ("| pretrained", "a")]
    s = summary[(summary.config == "b") & (summary.method == "pretrained") & (summary.dataset == "tox21")].iloc[0]
    a = average[(average.config == "b") & (average.method == "pretrained")].iloc[0]
    assert rows[1][4] == f"{100 * s['mean']:.1f} ± {100 * (s['ci_high'] - s['mean']):.1f}"  # columns: bbbp, tox21
    assert rows[1][5] == f"{100 * a['mean']:.1f} ± {100 * (a['ci_high'] - a['mean']):.1f} |"


def test_verdict_counts_add_up_to_the_paired_tests():
    from cgc_framework.bench.report import paired_tests, verdict_counts

    res = synthetic_results()
    fs = res[res.table == "few_shot"].copy()
    fs.loc[fs.method == "pretrained", "value"] += 0.3  # pretraining clearly better everywhere
    tests = paired_tests(fs, ["stages"], **FEW_SHOT)
    counts = verdict_counts(tests)
    pooled = counts[(counts.comparison == "pooled") & (counts.baseline == "ecfp_lr")].iloc[0]
    expected = tests[(tests.dataset == "(all)") & (tests.baseline == "ecfp_lr")]
    assert pooled["n"] == len(expected) == 2  # two configs
    assert pooled["helps"] == (expected.verdict == "pretraining helps").sum() == 2 and pooled["hurts"] == 0
    assert pooled["helps (Holm)"] == (expected.p_holm < 0.05).sum()
    assert pooled["mean_diff"] == pytest.approx(expected.mean_diff.mean())
    assert (counts[["helps", "no evidence", "hurts"]].sum(axis=1) == counts["n"]).all()
    assert counts["n"].sum() == len(tests)


def test_evaluation_data_files_cover_molnet_lists_and_nested_paths(tmp_path):
    from cgc_plugins.evaluators.molnet import molnet_data_files as evaluation_data_files

    for name in ("tox21", "sider"):
        (tmp_path / MOLNET_FILES[name]).write_bytes(b"x")
    prof = tmp_path / "plate.csv"
    prof.write_text("a\n")
    got = evaluation_data_files({"toxicity_sets": ["tox21", "sider", "clintox"], "data_dir": str(tmp_path),
                                 "ood_dataset": {"name": "d", "params": {"profiles": [str(prof)]}}, "top_k": [1]})
    assert got == {"tox21": [tmp_path / "tox21.csv.gz"], "sider": [tmp_path / "sider.csv.gz"], "clintox": [],
                   "*": [prof]}


def test_holm_adjustment_matches_the_step_down_definition():
    from cgc_framework.bench.report import holm

    p = np.array([0.01, 0.04, np.nan, 0.03, 0.2])
    got = holm(p)
    # sorted 0.01, 0.03, 0.04, 0.2 with m = 4: 0.04, 0.09, max(0.09, 0.08) = 0.09, max(0.09, 0.2) = 0.2
    assert np.isnan(got[2])
    assert got[[0, 3, 1, 4]] == pytest.approx([0.04, 0.09, 0.09, 0.2])


def test_cgc_bench_validate_flag(tmp_path, monkeypatch):
    fake_shared_data(monkeypatch, tmp_path)
    res = subprocess.run([BIN / "cgc-bench", str(REPO / "benchmarks" / "sweeps" / "stage_ablation.yaml"),
                          "--validate", "--set", "evaluations.fewshot.name=few_shoot"],
                         capture_output=True, text=True, env=dict(os.environ))
    assert res.returncode == 2 and "few_shoot" in res.stderr
    res = subprocess.run([BIN / "cgc-bench", str(REPO / "benchmarks" / "sweeps" / "stage_ablation.yaml"), "--quick",
                          "--validate"], capture_output=True, text=True, env=dict(os.environ))
    assert res.returncode == 0 and "valid, 2 trials" in res.stdout, res.stderr


def test_pooled_paired_test_pairs_every_seed_data_set_and_task():
    from cgc_framework.bench.report import paired_tests

    res = synthetic_results()
    fs = res[res.table == "few_shot"]
    tests = paired_tests(fs, ["stages"], **FEW_SHOT)
    pooled = tests[(tests.dataset == "(all)") & (tests.config == "a") & (tests.baseline == "ecfp_lr")]
    g = fs[fs.stages == "a"].pivot_table(index=["seed", "dataset", "task"], columns="method", values="value")
    assert pooled.pairs.item() == len(g) == 3 * 2 * 2
    assert pooled.p_value.item() == pytest.approx(stats.wilcoxon(g["pretrained"], g["ecfp_lr"]).pvalue)
    assert len(tests[tests.dataset != "(all)"]) == 2 * 2 * 1  # configs x data sets x the one baseline present


def test_generic_summary_skips_tables_without_numbers():
    """A table whose rows carry only labels (its `value` column all empty) is left out of the
    averages instead of failing the report; numeric tables are averaged over seeds."""
    from cgc_framework.bench.summary import generic_summary

    rows = pd.DataFrame({"evaluation": ["ood"] * 4, "table": ["overlap", "overlap", "ood", "ood"],
                         "trial": ["a", "b", "a", "b"], "seed": [0, 1, 0, 1],
                         "note": ["shared slots", "shared slots", None, None],
                         "metric": [None, None, "mse", "mse"], "value": [None, None, 2.0, 4.0]})
    out = generic_summary(rows, [])
    assert out["table"].tolist() == ["ood"]
    assert out["mean"].tolist() == [3.0] and out["seeds"].tolist() == [2]


def test_generic_summary_melts_small_wide_tables_and_keeps_counts_as_descriptors():
    """ICS/do-check style tables (one column per measure) are averaged per measure; integral
    columns (counts, k) describe rows; booleans average to a rate; per-item listings stay out."""
    from cgc_framework.bench.summary import MAX_SUMMARY_ROWS_PER_TRIAL, generic_summary

    wide = pd.DataFrame({"evaluation": "do", "table": "do_check", "trial": ["a", "b"], "seed": [0, 1],
                         "method": "model", "n_queries": [192.0, 192.0], "mse": [0.5, 0.7],
                         "identified": [True, False]})
    n = MAX_SUMMARY_ROWS_PER_TRIAL + 1
    listing = pd.DataFrame({"evaluation": "do", "table": "do_queries", "trial": ["a"] * n, "seed": 0,
                            "mse": np.linspace(0.1, 0.9, n)})
    out = generic_summary(pd.concat([wide, listing], ignore_index=True), []).set_index("metric")
    assert set(out["table"]) == {"do_check"} and set(out.index) == {"mse", "identified"}
    assert out.loc["mse", "mean"] == pytest.approx(0.6) and out.loc["identified", "mean"] == 0.5
    assert (out["n_queries"] == 192).all()


def test_generic_summary_averages_an_integral_outcome_that_changes_with_the_seed():
    """A scaffold-style table: ``best_epoch`` is integral but an outcome (one row per seed per
    dataset x mode, different at each seed), so it is averaged and does not split the rows; ``k``
    of a few-shot style table names several rows per seed and stays a descriptor."""
    from cgc_framework.bench.summary import generic_summary

    scaffold = pd.DataFrame({"evaluation": "scaffold", "table": "scaffold", "trial": "t",
                             "seed": [0, 1, 2, 0, 1, 2], "dataset": ["bace"] * 3 + ["bbbp"] * 3,
                             "n_train": [1210.0] * 3 + [1631.0] * 3, "test_auroc": [0.7, 0.8, 0.75, 0.6, 0.65, 0.7],
                             "best_epoch": [3.0, 7.0, 5.0, 1.0, 2.0, 3.0]})
    out = generic_summary(scaffold, [])
    assert len(out) == 4 and (out["seeds"] == 3).all()
    epochs = out[out["metric"] == "best_epoch"].set_index("dataset")["mean"]
    assert epochs["bace"] == pytest.approx(5.0) and epochs["bbbp"] == pytest.approx(2.0)
    assert "best_epoch" not in out.columns and set(out["n_train"]) == {1210.0, 1631.0}

    budgets = pd.DataFrame({"evaluation": "fs", "table": "fs", "trial": "t", "seed": [0, 0, 1, 1],
                            "k": [1.0, 5.0, 1.0, 5.0], "auroc": [0.6, 0.7, 0.62, 0.71]})
    out = generic_summary(budgets, [])
    assert sorted(out["k"]) == [1.0, 5.0] and set(out["metric"]) == {"auroc"}
