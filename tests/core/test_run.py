"""`cgc-run` end to end on the embedded data: run directory, seeded reproducibility, bad input,
and the Ray Train orchestrator with 0 (in-process), 1 and 2 workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from cgc_framework import hookimpl
from cgc_framework.api import run
from cgc_framework.engine.checkpoint import build_model, load_checkpoint
from cgc_framework.engine.registry import load_registry
from cgc_framework.plugin.errors import DataError
from cgc_framework.plugin.graph import GraphSchema
from cgc_plugins.datasets.lincs import EMBEDDED_COMPOUNDS
from tests.support import MACHINERY, one_stage

BIN = Path(sys.executable).parent
FAST = ["trainer.num_workers=0", one_stage(3), "model.encoder.params.hidden_dim=32", *MACHINERY]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, registry_yaml):
    return run(registry_yaml, overrides=FAST, run_dir=tmp_path_factory.mktemp("run") / "r", progress=False)


def test_run_directory_holds_every_artifact(local_run):
    d = local_run.run_dir
    for name in ["config.resolved.yaml", "plugins.json", "schema.json", "metrics.csv", "metrics.parquet",
                 "loss_curve.png", "summary.md", "skipped_records.csv", "checkpoints/stage1_mask.pt",
                 "checkpoints/final.pt"]:
        assert (d / name).is_file(), name
    assert (d / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = pd.read_csv(d / "metrics.csv")
    # 342 graphs, batch 32 -> 11 steps per epoch, 3 epochs
    assert metrics["step"].tolist() == list(range(1, 34))
    assert set(metrics.columns) >= {"stage", "epoch", "loss", "mask/loss", "mask/atom_loss"}
    summary = (d / "summary.md").read_text()
    assert "trainer: in-process (Ray Train local mode), 1 torch thread(s), CPU" in summary
    assert not (d / "ray_train").exists()   # no Ray instance, no Ray Train run folder


def test_masked_recovery_loss_decreases_and_summary_says_so(local_run):
    m = local_run.metrics
    first, last = m[m.epoch == 0]["mask/loss"].mean(), m[m.epoch == 2]["mask/loss"].mean()
    assert last < 0.8 * first
    summary = local_run.summary_path.read_text()
    assert "| 1. mask | mask/loss | 33 |" in summary
    assert "records read: 360; experiment graphs built: 342; records skipped: 18" in summary
    data = summary.split("## Data")[1].split("## Graph schema")[0]
    assert "- wells: wells 384, control_wells 24, treated_wells 360" in data and "{" not in data


def test_checkpoint_loads_weights_only_and_rebuilds_the_model(local_run):
    ckpt = load_checkpoint(local_run.run_dir / "checkpoints" / "final.pt")
    assert ckpt["stage"] == "mask" and ckpt["global_step"] == 33
    model = build_model(ckpt, GraphSchema.from_dict(ckpt["schema"]), load_registry())
    model.load_state_dict(ckpt["model"])  # strict: every key matches
    assert model.encoder.hidden_dim == 32
    raw = torch.load(local_run.run_dir / "checkpoints" / "stage1_mask.pt", weights_only=True)
    assert raw["model"].keys() == ckpt["model"].keys()
    assert all(torch.equal(raw["model"][k], ckpt["model"][k]) for k in ckpt["model"])  # final = last stage


def test_seeded_runs_repeat_exactly_and_seeds_differ(local_run, registry_yaml, tmp_path):
    again = run(registry_yaml, overrides=FAST, run_dir=tmp_path / "again", progress=False)
    assert again.metrics["loss"].tolist() == local_run.metrics["loss"].tolist()
    other = run(registry_yaml, overrides=FAST + ["run.seed=1"], run_dir=tmp_path / "seed1", progress=False)
    assert other.metrics["loss"].tolist() != local_run.metrics["loss"].tolist()


def _compounds_with(tmp_path: Path, edits: dict[str, str]) -> Path:
    table = pd.read_csv(EMBEDDED_COMPOUNDS)
    for sample, smiles in edits.items():
        table.loc[table.broad_sample == sample, "smiles"] = smiles
    path = tmp_path / "compounds.csv"
    table.to_csv(path, index=False)
    return path


def test_invalid_and_blank_smiles_are_counted_and_listed(registry_yaml, tmp_path):
    table = pd.read_csv(EMBEDDED_COMPOUNDS).dropna(subset=["smiles"])
    bad, empty = table.broad_sample.iloc[0], table.broad_sample.iloc[1]
    path = _compounds_with(tmp_path, {bad: "C1CC(N", empty: " "})
    res = run(registry_yaml, overrides=FAST + [one_stage(1), f"data.dataset.params.compounds={path}"],
              run_dir=tmp_path / "r", progress=False)
    skipped = pd.read_csv(res.run_dir / "skipped_records.csv")
    reasons = skipped.groupby("reason").size()
    assert len(skipped) == 18 + 12  # 3 compounds without SMILES + 2 broken ones, 6 doses each
    assert any("invalid SMILES" in r and "C1CC(N" in r for r in reasons.index)
    # a blank SMILES is a missing value for the dataset: listed with the 3 compounds that have none
    assert reasons.get("record has no 'smiles' value (needed by modality 'molecule')") == 18 + 6
    assert len(res.built.graphs) == 342 - 12
    summary = res.summary_path.read_text()
    assert "records skipped: 30" in summary and "no 'smiles' value" in summary and "invalid SMILES" in summary


def test_a_run_whose_every_record_fails_stops_with_a_clear_error(registry_yaml, tmp_path):
    table = pd.read_csv(EMBEDDED_COMPOUNDS)
    table["smiles"] = "not-a-smiles"
    path = tmp_path / "all_bad.csv"
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"no usable records: dataset 'cellpainting_experiments' gave 360 records"):
        run(registry_yaml, overrides=FAST + [f"data.dataset.params.compounds={path}"],
            run_dir=tmp_path / "r", progress=False)
    res = subprocess.run([BIN / "cgc-run", str(registry_yaml), "--quiet", "--run-dir", str(tmp_path / "c"),
                          "--set", f"data.dataset.params.compounds={path}"], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("error: no usable records")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_ray_train_workers(registry_yaml, tmp_path, workers):
    res = run(registry_yaml, overrides=[f"trainer.num_workers={workers}", one_stage(2),
                                        "model.encoder.params.hidden_dim=32", *MACHINERY],
              run_dir=tmp_path / f"w{workers}", progress=False)
    m = res.metrics
    # global batch 32 split over the workers: 11 optimizer steps per epoch either way
    assert m["step"].tolist() == list(range(1, 23))
    assert (m["graphs"] == 32).sum() == 20
    assert m[m.epoch == 1]["loss"].mean() < m[m.epoch == 0]["loss"].mean()
    assert load_checkpoint(res.run_dir / "checkpoints" / "final.pt")["global_step"] == 22
    assert f"{workers} Ray Train worker(s)" in res.summary_path.read_text()


def test_cli_runs_the_default_config_end_to_end(registry_yaml, tmp_path):
    res = subprocess.run([BIN / "cgc-run", str(registry_yaml), "--run-dir", str(tmp_path / "cli"),
                          "--set", "trainer.num_workers=0", "--set", one_stage(1)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith(str(tmp_path / "cli"))
    assert "pretraining" in res.stderr  # progress bar
    summary = (tmp_path / "cli" / "summary.md").read_text()
    for evaluation in ("zeroshot", "causal"):  # the default run's small evaluation
        assert f"### {evaluation} (" in summary
        assert any((tmp_path / "cli" / "evaluations" / evaluation).glob("*.csv"))


def test_dry_run_prints_the_composed_plan_without_training(registry_yaml, tmp_path):
    res = subprocess.run([BIN / "cgc-run", str(registry_yaml), "--dry-run", "--quiet"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "model.encoder" in out and "hgt" in out and "cgc-framework" in out
    assert "node atom" in out and "x_cat[119," in out
    # the default holds ~20% of compounds out of pretraining for its evaluations (60 wells)
    assert "300 records read, 288 experiment graphs, 12 skipped, 0 optional subgraphs omitted" in out
    assert "not_in_selected_splits 60" in out and "evaluations.zeroshot" in out
    assert "1. mask: 8 epochs; mask=1 (masked_recovery)" in out
    assert "3. causal: 8 epochs; mask=1 (masked_recovery), contrast=0.5 (contrast), causal=1 (causal)" in out
    assert not (tmp_path / "runs").exists()


class _AtomCountEvaluator:
    """In-test evaluator plugin: embeds the run's graphs and tabulates embedding norms per type."""

    @hookimpl
    def register_evaluators(self, register):
        from torch_geometric.loader import DataLoader

        from cgc_framework.plugin.contracts import EvaluationResult, Evaluator

        class Norms(Evaluator):
            def evaluate(self, ctx):
                from cgc_framework.engine.pretrained import load_graphs
                graphs = load_graphs(ctx.output_dir.parents[1] / "data" / "shards")
                batch = next(iter(DataLoader(graphs[:8], batch_size=8)))
                z = ctx.model.encoder(batch)
                rows = [{"node_type": t, "nodes": int(v.size(0)), "mean_norm": float(v.norm(dim=1).mean())}
                        for t, v in z.items()]
                return EvaluationResult({"norms": rows}, f"embedded {rows[0]['nodes']} atoms")

        register("norms", lambda params: Norms())


def test_evaluations_run_after_pretraining_and_land_in_the_summary(registry_yaml, tmp_path):
    from cgc_framework.engine.config import load_config

    cfg = load_config(registry_yaml, FAST + [one_stage(1), "evaluations={probe: {name: norms}}"])
    res = run(cfg, run_dir=tmp_path / "r", progress=False, extra_plugins=(_AtomCountEvaluator(),))
    table = pd.read_csv(res.run_dir / "evaluations" / "probe" / "norms.csv")
    assert set(table.node_type) == set(res.built.graphs[0].node_types)  # every node type is embedded
    assert {"atom", "compound", "compartment", "channel"} <= set(table.node_type)
    assert (table.mean_norm > 0).all()
    summary = res.summary_path.read_text()
    assert "## Evaluation" in summary and "### probe (norms)" in summary and "evaluations/probe/norms.csv" in summary
