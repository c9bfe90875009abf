"""Featurization cache (hits, invalidation by version and params, reload without RDKit) and
process-parallel building (same graphs, same skip report as in-process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cgc_framework import hookimpl
from cgc_framework.api import plan_run
from cgc_framework.engine.cache import GraphCache, cache_key
from cgc_framework.engine.config import validate_config
from cgc_framework.engine.featurize import build_graphs
from cgc_framework.plugin.contracts import Dataset
from cgc_framework.plugin.graph import graph_to_dict
from cgc_framework.plugin.records import Record
from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder, RDKitMoleculeParams

SMILES = ["CCO", "c1cccc1", "CC(=O)Oc1ccccc1C(=O)O", "", "C(C)(C)(C)(C)C", "CC(=O)[O-].[Na+]",
          "Cn1c(=O)c2c(ncn2C)n(C)c1=O", "N[C@@H](C)C(=O)O", "C1CC", "c1ccncc1"]
BAD = {"1": "Can't kekulize mol", "3": "no 'smiles' value", "4": "Explicit valence", "8": "unclosed ring"}


class _SmilesList(Dataset):
    def records(self, skips):
        for i, s in enumerate(SMILES):
            yield Record(str(i), {"smiles": s or None, "dose_um": 1.0})


class SmilesListPlugin:
    @hookimpl
    def register_datasets(self, register):
        register("smiles_list", lambda params: _SmilesList())


def _config(tmp_path: Path, **data) -> object:
    return validate_config({
        "run": {"name": "t", "output_dir": str(tmp_path / "runs")},
        "data": {"dataset": {"name": "smiles_list"}, **data},
        "graph": {"modalities": {"molecule": {"builder": "rdkit_molecule"}}},
        "model": {"encoder": {"name": "hgt", "params": {"hidden_dim": 8, "num_layers": 1, "heads": 1}}},
        "tasks": {"mask": {"name": "masked_recovery"}},
        "stages": [{"name": "mask", "epochs": 1, "weights": {"mask": 1.0}}],
        "trainer": {"num_workers": 0},
    })


def _plan(tmp_path, **data):
    return plan_run(_config(tmp_path, **data), extra_plugins=(SmilesListPlugin(),))


def _same(a, b) -> bool:
    da, db = graph_to_dict(a), graph_to_dict(b)
    return da.keys() == db.keys() and all(
        da[k].keys() == db[k].keys() and all(torch.equal(da[k][t], db[k][t]) for t in da[k]) for k in da)


def test_bad_records_are_reported_and_good_ones_kept(tmp_path):
    built = build_graphs(_plan(tmp_path), progress=False)
    assert built.records_read == 10 and built.record_ids == ["0", "2", "5", "6", "7", "9"]
    reasons = {e.record_id: e.reason for e in built.skips.entries}
    assert reasons.keys() == BAD.keys()
    for rid, text in BAD.items():
        assert text in reasons[rid]
    assert built.graphs[1]["atom"].num_nodes == 13 and built.graphs[2]["atom"].num_nodes == 4


def test_cache_hits_give_identical_graphs_and_cached_rejections(tmp_path, monkeypatch):
    monkeypatch.delenv("CGC_FEATURE_CACHE", raising=False)
    plain = build_graphs(_plan(tmp_path), progress=False)
    plan = _plan(tmp_path, cache_dir=str(tmp_path / "cache"))
    first = build_graphs(plan, progress=False)
    files = sorted((tmp_path / "cache" / "rdkit_molecule").rglob("*.*"))
    assert sum(f.suffix == ".tensors" for f in files) == 6 and sum(f.suffix == ".err" for f in files) == 3
    calls = []
    original = plan.modalities["molecule"].builder.build
    plan.modalities["molecule"].builder.build = lambda v: calls.append(v) or original(v)
    again = build_graphs(plan, progress=False)
    assert calls == []                                       # every record came from the cache
    assert again.record_ids == plain.record_ids == first.record_ids
    assert [e.reason for e in again.skips.entries] == [e.reason for e in plain.skips.entries]
    assert all(_same(a, b) for a, b in zip(again.graphs, plain.graphs))


def test_cache_key_changes_with_version_params_and_content():
    b = RDKitMoleculeBuilder()
    k = cache_key("rdkit_molecule", b, "CCO")
    assert k == cache_key("rdkit_molecule", RDKitMoleculeBuilder(), "CCO") and len(k) == 64
    assert k != cache_key("rdkit_molecule", b, "CCN")
    assert k != cache_key("rdkit_molecule", RDKitMoleculeBuilder(RDKitMoleculeParams(fragments="keep")), "CCO")

    class Bumped(RDKitMoleculeBuilder):
        version = "99"

    assert k != cache_key("rdkit_molecule", Bumped(), "CCO")


def test_cache_invalidates_on_version_bump_and_param_change(tmp_path, monkeypatch):
    monkeypatch.delenv("CGC_FEATURE_CACHE", raising=False)
    build_graphs(_plan(tmp_path, cache_dir=str(tmp_path / "c")), progress=False)
    cache_root = tmp_path / "c" / "rdkit_molecule"
    n0 = len(list(cache_root.rglob("*.tensors")))
    monkeypatch.setattr(RDKitMoleculeBuilder, "version", "999")
    plan = _plan(tmp_path, cache_dir=str(tmp_path / "c"))
    calls = []
    original = plan.modalities["molecule"].builder.build_many
    plan.modalities["molecule"].builder.build_many = lambda vs: calls.extend(vs) or original(vs)
    build_graphs(plan, progress=False)
    assert len(calls) == 9                                   # every non-missing SMILES rebuilt
    assert len(list(cache_root.rglob("*.tensors"))) == 2 * n0
    monkeypatch.undo()
    monkeypatch.delenv("CGC_FEATURE_CACHE", raising=False)
    cfg = _config(tmp_path, cache_dir=str(tmp_path / "c"))
    cfg.graph.modalities["molecule"].params = {"fragments": "keep"}
    plan = plan_run(cfg, extra_plugins=(SmilesListPlugin(),))
    built = build_graphs(plan, progress=False)
    assert built.graphs[2]["atom"].num_nodes == 5            # Na+ kept: not a stale "largest" entry
    assert len(list(cache_root.rglob("*.tensors"))) == 3 * n0


def test_env_var_names_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CGC_FEATURE_CACHE", str(tmp_path / "env_cache"))
    build_graphs(_plan(tmp_path), progress=False)
    assert len(list((tmp_path / "env_cache").rglob("*.tensors"))) == 6


def test_reload_needs_neither_rdkit_nor_biopython(tmp_path):
    cache = GraphCache(tmp_path)
    b = RDKitMoleculeBuilder()
    key = cache_key("rdkit_molecule", b, "CC(=O)Oc1ccccc1C(=O)O")
    cache.put("rdkit_molecule", key, b.build("CC(=O)Oc1ccccc1C(=O)O"))
    script = (
        "import sys; sys.modules['rdkit'] = None; sys.modules['Bio'] = None\n"
        "from cgc_framework.engine.cache import GraphCache\n"
        f"g = GraphCache({str(tmp_path)!r}).get('rdkit_molecule', {key!r})\n"
        "print(g['atom'].x_cat.shape[0], g['atom', 'bond', 'atom'].edge_index.shape[1])\n"
        "assert 'rdkit' not in sys.modules or sys.modules['rdkit'] is None\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["13", "26"]


@pytest.mark.skipif(sys.platform != "linux", reason="parallel building forks (Linux)")
def test_parallel_building_matches_in_process(tmp_path, monkeypatch):
    monkeypatch.delenv("CGC_FEATURE_CACHE", raising=False)
    serial = build_graphs(_plan(tmp_path), progress=False)
    parallel = build_graphs(_plan(tmp_path, featurize_workers=2), progress=False)
    assert parallel.record_ids == serial.record_ids and parallel.records_read == serial.records_read
    assert parallel.skips.entries == serial.skips.entries
    assert all(_same(a, b) for a, b in zip(parallel.graphs, serial.graphs))
    limited = build_graphs(_plan(tmp_path, featurize_workers=2, max_records=3), progress=False)
    assert limited.records_read == 3 and limited.record_ids == ["0", "2"]


def test_packed_shard_roundtrip(tmp_path):
    from cgc_framework.engine.shards import load_packed, save_packed

    b = RDKitMoleculeBuilder()
    graphs = [b.schema().conform(b.build(s)) for s in ("CCO", "CC(=O)Oc1ccccc1C(=O)O", "[Na+]", "c1ccncc1")]
    save_packed(tmp_path / "shard.pt", graphs)
    back = load_packed(tmp_path / "shard.pt")
    assert len(back) == 4 and all(_same(a, b) for a, b in zip(graphs, back))
    assert back[2]["atom", "bond", "atom"].edge_index.shape == (2, 0)


def _batches_equal(a, c) -> None:
    """Every tensor/number of two PyG batches, plus the slice/increment dictionaries, agree."""
    assert a.num_graphs == c.num_graphs and set(a.node_types) == set(c.node_types)
    assert set(a.edge_types) == set(c.edge_types)
    for sa in a.stores:
        key = getattr(sa, "_key", None)
        sc = c[key] if key is not None else c._global_store
        assert set(sa.keys()) == set(sc.keys()), key
        for attr in sa.keys():
            va, vc = sa[attr], sc[attr]
            if isinstance(va, torch.Tensor):
                assert va.dtype == vc.dtype and torch.equal(va, vc), (key, attr)
            else:
                assert va == vc, (key, attr)
    for key, attrs in a._slice_dict.items():
        for attr in attrs:
            assert torch.equal(a._slice_dict[key][attr], c._slice_dict[key][attr]), (key, attr)
            assert torch.equal(torch.as_tensor(a._inc_dict[key][attr]).reshape(-1),
                               torch.as_tensor(c._inc_dict[key][attr]).reshape(-1)), (key, attr)


def test_packed_collate_equals_pyg_batch_of_the_same_graphs(tmp_path):
    """The training loop's packed path: batches sliced from the shard's concatenated tensors are
    exactly PyG's ``Batch.from_data_list`` of those graphs (any order, repeats, empty graphs)."""
    from torch_geometric.data import Batch

    from cgc_framework.engine.shards import PackedGraphs

    built = build_graphs(_plan(tmp_path), progress=False)          # real experiment graphs
    graphs = built.graphs
    PackedGraphs.from_graphs(graphs).save(tmp_path / "shard.pt")
    packed = PackedGraphs.load(tmp_path / "shard.pt", mmap=True)
    assert len(packed) == len(graphs) and all(_same(packed[i], g) for i, g in enumerate(graphs))
    for idx in ([0], [3, 1, 2], [2, 2, 0, 5, 4], list(range(len(graphs)))[::-1]):
        _batches_equal(packed.collate(idx), Batch.from_data_list([graphs[i] for i in idx]))
    with pytest.raises(ValueError, match="different stores"):
        b = RDKitMoleculeBuilder()
        PackedGraphs.from_graphs([b.build("CCO"), graphs[0]])


def test_packed_shard_of_an_older_format_names_the_file(tmp_path):
    from cgc_framework.engine.shards import PackedGraphs

    torch.save({"count": torch.tensor([0]), "graphs": {}}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="old.pt: packed shard format 1"):
        PackedGraphs.load(tmp_path / "old.pt")


def test_entry_format_round_trips_every_dtype_and_shape(tmp_path):
    from cgc_framework.engine.cache import read_tensors, write_tensors

    d = {"atom": {"x": torch.rand(5, 3), "x_cat": torch.randint(0, 9, (5, 9)), "empty": torch.zeros(0, 4),
                  "none": torch.zeros(5, 0)},
         "a|b|c": {"edge_index": torch.randint(0, 5, (2, 7)), "flag": torch.tensor([True, False, True]),
                   "f64": torch.rand(3, dtype=torch.float64), "scalar": torch.tensor(2.5),
                   "strided": torch.arange(12).reshape(3, 4).t()}}
    with open(tmp_path / "e.tensors", "wb") as fh:
        write_tensors(fh, d)
    back = read_tensors(tmp_path / "e.tensors")
    assert back.keys() == d.keys()
    for key in d:
        assert back[key].keys() == d[key].keys()
        for attr, t in d[key].items():
            assert back[key][attr].dtype == t.dtype and torch.equal(back[key][attr], t), (key, attr)
    (tmp_path / "bad.tensors").write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(ValueError, match="not a cgc tensors file"):
        read_tensors(tmp_path / "bad.tensors")
