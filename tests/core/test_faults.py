"""Faults: an interrupted driver resumes to the same result, a corrupted checkpoint falls back to
the previous good one, a killed Ray worker is replaced and training resumes — nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cgc_framework import hookimpl
from cgc_framework.api import resume, run
from cgc_framework.engine.checkpoint import load_checkpoint
from cgc_framework.engine.orchestrator import find_resume_checkpoint
from tests.support import MACHINERY, one_stage

BIN = Path(sys.executable).parent
OVERRIDES = [*MACHINERY, "trainer.num_workers=0", one_stage(3), "model.encoder.params.hidden_dim=16",
             "trainer.checkpoint_every_steps=4", "trainer.keep_checkpoints=2",
             "data.shard_size=100", "data.shuffle_window=2"]   # 4 shards in 2 windows


def _steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(registry_yaml, tmp_path_factory):
    return run(registry_yaml, overrides=OVERRIDES, run_dir=tmp_path_factory.mktemp("ref") / "r", progress=False)


def test_step_checkpoints_carry_position_optimizer_rng_and_are_pruned(reference):
    ckpts = sorted((reference.run_dir / "checkpoints").glob("step*.pt"))
    assert [p.name for p in ckpts] == ["step000000028.pt", "step000000032.pt"]  # keep the newest 2
    ckpt = load_checkpoint(ckpts[-1])
    assert ckpt["position"] == {"stage_index": 0, "epoch": 2, "micro_batch": 10, "global_step": 32}
    assert ckpt["optimizer"]["state"] and len(ckpt["rng_states"]) == 1
    assert ckpt["config_hash"] and ckpt["versions"]["torch"]
    assert not list((reference.run_dir / "checkpoints").glob(".tmp-*"))  # atomic writes leave nothing


def test_killed_driver_resumes_to_the_same_metrics_even_past_a_corrupted_checkpoint(
        registry_yaml, reference, tmp_path):
    run_dir = tmp_path / "interrupted"
    args = [BIN / "cgc-run", str(registry_yaml), "--quiet", "--run-dir", str(run_dir)]
    for o in OVERRIDES:
        args += ["--set", o]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 22:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    newest = max((run_dir / "checkpoints").glob("step*.pt"))
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a truncated checkpoint
    shards = {p.name: p.stat().st_mtime_ns for p in (run_dir / "data" / "shards").glob("shard-*")}
    assert len(shards) == 8
    res = subprocess.run([BIN / "cgc-run", "--resume", str(run_dir), "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # the shards were reused, not featurized again
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "data" / "shards").glob("shard-*")} == shards
    assert _steps(run_dir) == list(range(1, 34))  # each step once: no gaps, no duplicates
    resumed = pd.read_csv(run_dir / "metrics.csv")
    assert resumed["loss"].tolist() == reference.metrics["loss"].tolist()
    log = (run_dir / "recovery.log").read_text()
    assert f"checkpoint {newest.name} is unreadable" in log and "resuming from step" in log
    summary = (run_dir / "summary.md").read_text()
    assert "## Recovery" in summary and "shards (`data/shards/`, 100 records each): 4 (4 reused)" in summary


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path):
    from cgc_framework.plugin.errors import CGCError

    with pytest.raises(CGCError, match="not a run directory"):
        resume(tmp_path)


class _DieOnce:
    """Test-only plugin: a masked-recovery task whose worker process exits once, at its 15th batch."""

    @hookimpl
    def register_pretraining_tasks(self, register):
        from cgc_plugins.tasks.masked_recovery import MaskedNodeRecovery, MaskedRecoveryParams

        class DieOnce(MaskedNodeRecovery):
            calls = 0

            def forward(self, batch, encoder):
                DieOnce.calls += 1
                marker = Path(os.environ["CGC_TEST_MARKER"])
                if DieOnce.calls == 15 and not marker.exists():
                    marker.write_text("died")
                    os._exit(1)
                return super().forward(batch, encoder)

        register("die_once", DieOnce, params=MaskedRecoveryParams)


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_training_resumes(registry_yaml, tmp_path, monkeypatch):
    monkeypatch.setenv("CGC_TEST_MARKER", str(tmp_path / "died"))
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    res = run(registry_yaml, overrides=[*MACHINERY, "trainer.num_workers=1", one_stage(2), "model.encoder.params.hidden_dim=16",
                                        "trainer.checkpoint_every_steps=4", "tasks.mask.name=die_once"],
              run_dir=tmp_path / "r", progress=False, extra_plugins=(_DieOnce(),))
    assert (tmp_path / "died").exists()  # the fault happened
    assert _steps(res.run_dir) == list(range(1, 23))
    assert "worker restart" in (res.run_dir / "recovery.log").read_text()
    found = find_resume_checkpoint(res.run_dir, load_checkpoint(res.checkpoints[-1])["config_hash"])
    assert found is not None and found[1]["global_step"] == 22
