"""Sharded featurization and shard streaming: the same graphs and skips as an in-memory build, shards
reused after an interruption, bounded memory on a corpus bigger than a shard, the windowed epoch
order (an exact permutation, the same global batches for 1 and N workers)."""

from __future__ import annotations

import gc
import json
import sys
import weakref
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler
from torch_geometric.data import Batch

from cgc_framework import hookimpl
from cgc_framework.api import plan_run
from cgc_framework.engine import featurize
from cgc_framework.engine.config import validate_config
from cgc_framework.engine.featurize import build_graphs
from cgc_framework.engine.shard_build import build_shards, shard_key
from cgc_framework.engine.shardset import ShardedGraphs, ShardError, WindowedSampler, file_sha256
from tests.core.test_featurize_cache import _batches_equal, _same

SMILES = ["CCO", "c1cccc1", "CC(=O)Oc1ccccc1C(=O)O", "", "C(C)(C)(C)(C)C", "CC(=O)[O-].[Na+]",
          "Cn1c(=O)c2c(ncn2C)n(C)c1=O", "N[C@@H](C)C(=O)O", "C1CC", "c1ccncc1", "CCN(CC)CC", "OC1CCCCC1"]


def corpus(path: Path, n: int = len(SMILES)) -> Path:
    """A SMILES table of ``n`` rows (the list repeated, distinct ids; 4 of every 12 rows are bad)."""
    path.write_text("id,smiles\n" + "".join(f"m{i},{SMILES[i % len(SMILES)]}\n" for i in range(n)))
    return path


def corpus_config(path: Path, trainer: dict | None = None, optimizer: dict | None = None,
                  builder: str = "rdkit_molecule", **data):
    return validate_config({
        "data": {"dataset": {"name": "smiles_corpus", "params": {"paths": [str(path)], "id_column": "id"}}, **data},
        "graph": {"modalities": {"molecule": {"builder": builder}}},
        "model": {"encoder": {"name": "molecule_gin", "params": {"hidden_dim": 8, "num_layers": 1}}},
        "tasks": {"mask": {"name": "masked_recovery"}},
        "stages": [{"name": "mask", "epochs": 1, "weights": {"mask": 1.0}}],
        "optimizer": optimizer or {}, "trainer": trainer or {"num_workers": 0}})


def corpus_plan(path: Path, **data):
    return plan_run(corpus_config(path, **data))


def test_shards_hold_the_in_memory_graphs_and_skips_and_batches_cross_shards(tmp_path):
    path = corpus(tmp_path / "c.csv", 30)
    memory = build_graphs(corpus_plan(path), progress=False)
    built = build_shards(corpus_plan(path, shard_size=7), tmp_path / "shards", progress=False)
    graphs = built.graphs
    assert built.records_read == memory.records_read == 27      # 3 empty rows skipped by the dataset
    assert isinstance(graphs, ShardedGraphs) and len(graphs.shard_counts) == 4   # 7 records each
    assert built.record_ids == memory.record_ids and len(graphs) == len(memory.graphs) == 19
    assert sorted(map(astuple, built.skips.entries)) == sorted(map(astuple, memory.skips.entries)) and len(built.skips) == 11
    assert all(_same(a, b) for a, b in zip(graphs, memory.graphs))
    assert _same(graphs[-1], memory.graphs[-1]) and _same(graphs[7], memory.graphs[7])
    for idx in ([0], [18, 0, 6, 6, 12], list(range(19))[::-1]):     # within and across shards
        _batches_equal(graphs.collate(idx), Batch.from_data_list([memory.graphs[i] for i in idx]))
    with pytest.raises(IndexError):
        graphs[19]


def test_a_resumed_build_reuses_intact_shards_and_rebuilds_a_damaged_one(tmp_path, monkeypatch):
    path = corpus(tmp_path / "c.csv", 30)
    plan = corpus_plan(path, shard_size=7)
    built = build_shards(plan, tmp_path / "s", progress=False)
    files = sorted((tmp_path / "s").glob("shard-*"))
    before = {p.name: file_sha256(p) for p in files}
    damaged = tmp_path / "s" / "shard-00002.pt"
    damaged.write_bytes(damaged.read_bytes()[:100])            # a truncated file
    calls = []
    real = featurize._build_chunk
    monkeypatch.setattr(featurize, "_build_chunk", lambda *a: calls.append(len(a[1])) or real(*a))
    import cgc_framework.engine.shard_build as sb
    monkeypatch.setattr(sb, "_build_serial", lambda plan, chunk, cache: featurize._build_chunk(plan, chunk, cache))
    again = build_shards(plan, tmp_path / "s", progress=False)
    assert calls == [7]                                         # only the damaged chunk was built again
    assert {p.name: file_sha256(p) for p in files} == before    # the same bytes
    assert again.skips.entries == built.skips.entries and again.record_ids == built.record_ids
    other = corpus_plan(path, shard_size=7, max_records=20)      # another key: nothing reused
    assert shard_key(other) != shard_key(plan)
    calls.clear()
    build_shards(other, tmp_path / "s", progress=False)
    assert calls == [7, 7, 6] and not (tmp_path / "s" / "shard-00003.pt").exists()


class _RingNotingPlugin:
    """A builder that records each ring molecule it builds: state a worker process must hand back."""

    @hookimpl
    def register_graph_builders(self, register):
        from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder, RDKitMoleculeParams

        class RingNoting(RDKitMoleculeBuilder):
            def __init__(self, params=None):
                super().__init__(params)
                self.rings: dict[str, str] = {}

            def build(self, value):
                graph = super().build(value)
                if "1" in value:
                    self.rings[value] = "has a ring"
                return graph

            def describe(self):
                return {"ring molecules": sorted(self.rings)}

            def state(self):
                return {"rings": dict(self.rings)}

            def merge_state(self, state):
                for smiles, note in state.get("rings", {}).items():
                    self.rings.setdefault(smiles, note)

        register("ring_noting", RingNoting, params=RDKitMoleculeParams)


@pytest.mark.skipif(sys.platform != "linux", reason="parallel building forks (Linux)")
def test_builder_state_from_worker_processes_and_reused_shards_reaches_the_driver(tmp_path):
    path = corpus(tmp_path / "c.csv", 30)

    def plan(**data):
        return plan_run(corpus_config(path, builder="ring_noting", **data), extra_plugins=(_RingNotingPlugin(),))

    def noted(p):
        return p.modalities["molecule"].builder.describe()["ring molecules"]

    serial = plan()
    build_graphs(serial, progress=False)
    expected = ["CC(=O)Oc1ccccc1C(=O)O", "Cn1c(=O)c2c(ncn2C)n(C)c1=O", "OC1CCCCC1", "c1ccncc1"]
    assert noted(serial) == expected           # the unbuildable ring SMILES (c1cccc1, C1CC) are not noted
    forked = plan(featurize_workers=2)
    build_graphs(forked, progress=False)
    assert noted(forked) == expected
    sharded = plan(shard_size=7, featurize_workers=2)
    build_shards(sharded, tmp_path / "s", progress=False)
    assert noted(sharded) == expected
    states = [json.loads(p.read_text())["builder_state"] for p in sorted((tmp_path / "s").glob("shard-*.json"))]
    assert all(set(s) <= {"molecule"} for s in states) and any(states)
    resumed = plan(shard_size=7)                # every shard is reused: nothing is built again
    build_shards(resumed, tmp_path / "s", progress=False)
    assert noted(resumed) == expected


def test_a_missing_shard_file_is_named(tmp_path):
    build_shards(corpus_plan(corpus(tmp_path / "c.csv", 20), shard_size=7), tmp_path / "s", progress=False)
    (tmp_path / "s" / "shard-00001.pt").unlink()
    with pytest.raises(ShardError, match=r"shard-00001.pt: cannot read this shard .*--resume"):
        list(ShardedGraphs(tmp_path / "s"))
    with pytest.raises(ShardError, match="not a readable shard manifest"):
        ShardedGraphs(tmp_path / "nothing")


def test_featurization_memory_is_bounded_by_the_shard_not_the_corpus(tmp_path, monkeypatch):
    """The driver never holds more than one shard's graphs: the live experiment graphs, counted
    when each shard is written, stay at the shard size however long the corpus is."""
    alive = [0]
    peak: list[int] = []
    real_build = featurize.build_record

    def tracked(*a, **kw):
        g = real_build(*a, **kw)
        alive[0] += 1
        weakref.finalize(g, lambda: alive.__setitem__(0, alive[0] - 1))
        return g

    import cgc_framework.engine.shardset as ss
    real_write = ss.write_shard

    def write(directory, index, key, results, builder_state=None):
        results = list(results)
        gc.collect()                    # graphs hold reference cycles: count the reachable ones
        peak.append(alive[0])
        return real_write(directory, index, key, results, builder_state)

    monkeypatch.setattr(featurize, "build_record", tracked)
    import cgc_framework.engine.shard_build as sb
    monkeypatch.setattr(sb, "write_shard", write)
    for n in (60, 600):
        peak.clear()
        built = build_shards(corpus_plan(corpus(tmp_path / f"c{n}.csv", n), shard_size=30), tmp_path / f"s{n}",
                             progress=False)
        assert len(built.graphs) == n * 8 // 12 and len(peak) == -(-built.records_read // 30)
        assert max(peak) <= 30, f"{max(peak)} graphs alive at once for a corpus of {n} and shards of 30"
    # reading: an epoch in windowed order keeps at most window + 1 shards open
    graphs = ShardedGraphs(tmp_path / "s600", max_open=3)
    order = list(WindowedSampler(graphs.shard_counts, window=2, seed=1))
    for j in range(0, len(order), 16):
        graphs.collate(order[j:j + 16])
        assert len(graphs._open) <= 3


@pytest.mark.parametrize("counts", [[5, 3, 7, 1, 9], [40], [4, 4, 4, 4, 4, 4, 4]])
def test_windowed_order_is_a_permutation_with_the_same_global_batches_for_any_worker_count(counts):
    total = sum(counts)
    offsets = np.cumsum([0, *counts])
    for epoch in (0, 3):
        one = WindowedSampler(counts, seed=5, window=2)
        one.set_epoch(epoch)
        order = list(one)
        assert sorted(order) == list(range(total))                      # an exact permutation
        assert order == list(WindowedSampler(counts, seed=5, window=2, epoch=epoch))   # seeded
        if len(counts) == 1:                                             # one shard: DistributedSampler's
            ds = DistributedSampler(range(total), num_replicas=1, rank=0, shuffle=True, seed=5)
            ds.set_epoch(epoch)
            assert order == list(ds)
        else:   # window by window: the first 2 shards' worth of positions come from 2 shards only
            first = {int(np.searchsorted(offsets, i, side="right") - 1) for i in order[:4]}
            assert len(first) <= 2
        for workers in (2, 3):
            mbs = 4 // 2 if workers == 2 else 1
            ranks = [WindowedSampler(counts, num_replicas=workers, rank=r, seed=5, window=2, epoch=epoch)
                     for r in range(workers)]
            per_rank = [list(s) for s in ranks]
            assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) == -(-total // workers)
            for step in range(total // (workers * mbs)):    # global batch = what 1 worker takes
                got = sorted(i for p in per_rank for i in p[step * mbs:(step + 1) * mbs])
                assert got == sorted(order[step * workers * mbs:(step + 1) * workers * mbs])


def test_training_reads_the_shards_window_by_window(tmp_path):
    """A run trains on its shards (several, small window) and its model sees every graph once per epoch."""
    from cgc_framework.api import run

    path = corpus(tmp_path / "c.csv", 120)
    cfg = validate_config({
        "run": {"output_dir": str(tmp_path)},
        "data": {"dataset": {"name": "smiles_corpus", "params": {"paths": [str(path)], "id_column": "id"}},
                 "shard_size": 25, "shuffle_window": 2},
        "graph": {"modalities": {"molecule": {"builder": "rdkit_molecule"}}},
        "model": {"encoder": {"name": "molecule_gin", "params": {"hidden_dim": 8, "num_layers": 1}}},
        "tasks": {"mask": {"name": "masked_recovery"}},
        "stages": [{"name": "mask", "epochs": 2, "weights": {"mask": 1.0}}],
        "optimizer": {"batch_size": 16}, "trainer": {"num_workers": 0}})
    res = run(cfg, run_dir=tmp_path / "run", progress=False)
    shards = ShardedGraphs(res.run_dir / "data" / "shards")
    assert len(shards.shard_counts) == 5 and sum(shards.shard_counts) == len(res.built.graphs) == 80
    assert res.metrics.groupby("epoch")["graphs"].sum().tolist() == [80, 80]
    assert torch.isfinite(torch.tensor(res.metrics["loss"].to_numpy())).all()


@pytest.mark.slow
def test_a_ray_featurized_ray_trained_run_starts_ray_once_and_profiles_each_worker(tmp_path, monkeypatch):
    import ray

    from cgc_framework.api import run

    starts: list[dict] = []
    real_init = ray.init
    monkeypatch.setattr(ray, "init", lambda *a, **k: starts.append(k) or real_init(*a, **k))
    config = corpus_config(corpus(tmp_path / "c.csv", 60), featurize_on="ray", shard_size=16,
                           trainer={"num_workers": 2, "profile_steps": 3}, optimizer={"batch_size": 4})
    res = run(config, run_dir=tmp_path / "run", progress=False)
    assert len(starts) == 1 and not ray.is_initialized()     # one Ray session for both, closed after
    assert len(res.metrics) == 10                             # 40 graphs, 4 per step
    for rank in (0, 1):
        profile = json.loads((res.run_dir / "profile" / f"rank{rank}.json").read_text())
        ms = profile["ms_per_step"]
        assert profile["steps"] == 3 and ms["forward_ms"] > 0 and ms["backward_ms"] > 0
        assert ms["collective_ms"] > 0                        # DDP's gradient all-reduce was seen
        assert "Self CPU" in (res.run_dir / "profile" / f"rank{rank}.txt").read_text()
