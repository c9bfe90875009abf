"""A local two-node Ray cluster: a staged run with one Train worker per node, and featurization spread over both nodes."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import pytest

from cgc_framework.api import run
from cgc_framework.engine.checkpoint import load_checkpoint
from tests.support import MACHINERY


@contextlib.contextmanager
def two_node_cluster() -> Iterator[set[str]]:
    """A local Ray cluster of two nodes with one CPU each, connected; yields the live node ids."""
    import tempfile

    import ray
    from ray.cluster_utils import Cluster

    # Ray records the cluster address in <TMPDIR>/ray, which a fresh TMPDIR (CI) does not have yet
    (Path(tempfile.gettempdir()) / "ray").mkdir(exist_ok=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "temp_dir": "/tmp/ray-cgc-cluster"})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address)
        yield {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_staged_run_on_a_two_node_cluster(registry_yaml, tmp_path):
    with two_node_cluster() as nodes:
        assert len(nodes) == 2
        res = run(registry_yaml, overrides=[
            *MACHINERY, "trainer.num_workers=2", "model.encoder.params.hidden_dim=16",
            "stages=[{name: warmup, epochs: 1, weights: {mask: 1.0}}, {name: mask, epochs: 1, weights: {mask: 0.5}}]"],
            run_dir=tmp_path / "run", progress=False)
    workers = [json.loads(p.read_text()) for p in sorted((res.run_dir / "workers").glob("rank*.json"))]
    assert [w["rank"] for w in workers] == [0, 1]
    assert len({w["node_id"] for w in workers}) == 2  # one worker per node
    assert res.metrics.groupby("stage").size().to_dict() == {"mask": 11, "warmup": 11}
    assert load_checkpoint(res.run_dir / "checkpoints" / "stage1_warmup.pt")["global_step"] == 11
    assert load_checkpoint(res.run_dir / "checkpoints" / "stage2_mask.pt")["global_step"] == 22


@pytest.mark.slow
def test_featurization_on_a_two_node_cluster_writes_the_serial_bytes(tmp_path):
    """One Ray task per shard, spread over two nodes: the same shard files, byte for byte, and the
    same skipped records (rejected in different tasks) as building in-process."""
    from cgc_framework.engine.shard_build import build_shards
    from cgc_framework.engine.shardset import file_sha256
    from tests.core.test_shards import corpus, corpus_plan

    path = corpus(tmp_path / "c.csv", 60)
    serial = build_shards(corpus_plan(path, shard_size=8), tmp_path / "serial", progress=False, backend="local")
    with two_node_cluster() as nodes:
        remote = build_shards(corpus_plan(path, shard_size=8), tmp_path / "ray", progress=False, backend="ray")
    assert len(nodes) == 2 and set(remote.shards_by_node) == nodes      # both nodes built shards
    assert sum(remote.shards_by_node.values()) == 7 and serial.shards_by_node == {"local": 7}
    files = sorted(p.name for p in (tmp_path / "serial").iterdir())
    assert len(files) == 2 * 7 + 1 and files == sorted(p.name for p in (tmp_path / "ray").iterdir())
    assert all(file_sha256(tmp_path / "serial" / f) == file_sha256(tmp_path / "ray" / f) for f in files)
    assert remote.skips.entries == serial.skips.entries and len(serial.skips) == 20
    assert remote.record_ids == serial.record_ids and remote.records_read == serial.records_read == 55
