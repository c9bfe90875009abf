"""The worked example of docs/plugins.md installs as its own distribution, passes its tests and
adds a modality that a pretraining run uses, so the tutorial cannot rot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.support import MACHINERY, cli_sets, one_stage

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "cgc-target-sequence"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def example_env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tutorial")
    src = root / "cgc-target-sequence"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(root / "site"), str(src)], check=True, capture_output=True)
    return dict(os.environ, PYTHONPATH=str(root / "site"))


def test_example_passes_its_own_tests(example_env, tmp_path):
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                         capture_output=True, text=True, env=example_env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 passed" in res.stdout


@pytest.mark.slow
def test_example_modality_is_used_by_a_pretraining_run(example_env, registry_yaml, tmp_path):
    """Two Ray workers: batches differ in which node types they hold, logs still reduce."""
    run_dir = tmp_path / "run"
    res = subprocess.run(
        [BIN / "cgc-run", str(registry_yaml), "--quiet", "--run-dir", str(run_dir),
         "--set", "graph.modalities.target_sequence={builder: fasta_target_sequence, required: false}",
         "--set", "trainer.num_workers=2", "--set", one_stage(2), *cli_sets(MACHINERY),
         "--set", "model.encoder.params.hidden_dim=16"],
        capture_output=True, text=True, env=example_env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    schema = json.loads((run_dir / "schema.json").read_text())
    assert "aa" in schema["node_types"] and "aa|peptide|aa" in schema["edge_types"]
    comps = json.loads((run_dir / "plugins.json").read_text())["components"]
    seq = next(c for c in comps if c["name"] == "fasta_target_sequence")
    assert seq["distribution"] == "cgc-target-sequence"
    omitted = pd.read_csv(run_dir / "omitted_subgraphs.csv")
    # 342 molecule graphs are kept; wells whose compound has no target sequence lose only that subgraph
    assert 0 < len(omitted) < 342
    assert omitted.reason.str.contains("none of the targets|no 'target' value").all()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert "mask/aa_loss" in metrics.columns and metrics["mask/aa_loss"].notna().any()
    summary = (run_dir / "summary.md").read_text()
    assert "Optional subgraphs left out of kept records" in summary
