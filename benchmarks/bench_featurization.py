"""Featurization benchmark: molecules/s and protein structures/s, side by side in one run.

Measures, on this machine, in one process and on all cores (``multiprocessing`` fork pool):

* molecules/s on MoleculeNet HIV (41k SMILES) for ``rdkit_molecule`` (this project),
  ``torch_geometric.utils.from_smiles`` and DeepChem's ``MolGraphConvFeaturizer``;
* the featurization cache: rate of building + storing, and of reloading stored graphs;
* protein structures/s and milliseconds per 300 residues on ``shared/data/proteins`` (parsing
  included), with the geometry fallback and with DSSP;
* a profile (where the time of one molecule / one structure goes).

Usage::

    .venv/bin/python benchmarks/bench_featurization.py --data ../shared/data \
        [--limit N] [--out benchmarks/results/featurization.json]

Parallel rates count featurized items only: graphs are built in the workers and not sent back
(returning them costs IPC time, which differs per consumer).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

warnings.filterwarnings("ignore")
REPO = Path(__file__).resolve().parents[1]

_TARGETS = {
    "vs_from_smiles": ">= 2x torch_geometric.utils.from_smiles",
    "vs_deepchem": ">= 20x deepchem MolGraphConvFeaturizer",
    "cache_reload": ">= 50x faster than featurizing",
    "protein_300_residues_ms": "<= 30 ms per 300-residue structure, parsing included",
}


# -- molecule featurizers (module level so forked workers find them) -------------------------
# Each maker returns a function: list of SMILES -> number of graphs built (invalid SMILES skipped).

def _ours():
    """``rdkit_molecule`` as featurization runs it: ``build_many`` on chunks of ``featurize.CHUNK``."""
    from cgc_framework.engine.featurize import CHUNK
    from cgc_framework.plugin.records import RecordError
    from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder
    b = RDKitMoleculeBuilder()
    return lambda block: sum(not isinstance(g, RecordError)
                             for i in range(0, len(block), CHUNK) for g in b.build_many(block[i:i + CHUNK]))


def _ours_one_by_one():
    """``rdkit_molecule``'s ``build``, one SMILES per call (what ``cgc-predict`` does)."""
    from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder
    return _per_smiles(RDKitMoleculeBuilder().build)


def _pyg():
    from torch_geometric.utils import from_smiles
    return _per_smiles(from_smiles)


def _deepchem():
    """DeepChem's own list API (``featurize(list)``; a failed SMILES gives an empty entry)."""
    import logging
    logging.disable(logging.WARNING)
    import deepchem as dc
    f = dc.feat.MolGraphConvFeaturizer(use_edges=True)
    return lambda block: sum(isinstance(g, dc.feat.GraphData) for g in f.featurize(block))


def _per_smiles(fn):
    def run(block) -> int:
        ok = 0
        for s in block:
            try:
                fn(s)
                ok += 1
            except Exception:  # noqa: BLE001 - invalid SMILES: every featurizer skips/raises
                pass
        return ok
    return run


FEATURIZERS = {"rdkit_molecule": _ours, "rdkit_molecule_on_deepchem_subset": _ours,
               "rdkit_molecule_one_by_one": _ours_one_by_one, "pyg_from_smiles": _pyg,
               "deepchem_MolGraphConv": _deepchem}
"""The second entry times ``rdkit_molecule`` on DeepChem's subset (the first SMILES of the file are
smaller than average: 22.5 vs 25.3 heavy atoms), so the DeepChem ratio compares like with like."""
_WORKER_FN = {}


def _quiet_rdkit():
    from rdkit import RDLogger
    RDLogger.DisableLog("rdApp.*")


def _worker_init(name):
    torch.set_num_threads(1)
    _quiet_rdkit()
    _WORKER_FN["fn"] = FEATURIZERS[name]()


def _worker_chunk(chunk):
    return _WORKER_FN["fn"](chunk)


def bench_molecules(smiles: list[str], cores: int, deepchem_limit: int, rounds: int = 8) -> dict:
    """Rates of every featurizer, interleaved: the SMILES are cut into ``rounds`` blocks and each
    block is run by every featurizer in turn, so a change in machine load hits all of them alike.
    "All cores": one pool of ``cores`` forked workers per featurizer, started and warmed up before
    the timing (a pipeline starts its pool once)."""
    fns = {name: make() for name, make in FEATURIZERS.items()}
    for fn in fns.values():
        fn(smiles[:200])                                  # warm-up (imports, caches)
    pools = {name: mp.get_context("fork").Pool(cores, initializer=_worker_init, initargs=(name,))
             for name in fns}
    for pool in pools.values():
        sum(pool.map(_worker_chunk, [smiles[:50]] * cores))
    subsets = {name: smiles[:deepchem_limit] if "deepchem" in name else smiles for name in fns}
    one = {name: 0.0 for name in fns}
    par = {name: 0.0 for name in fns}
    ok = {name: 0 for name in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            sub = subsets[name]
            block = sub[r * len(sub) // rounds:(r + 1) * len(sub) // rounds]
            t = time.perf_counter()
            ok[name] += fn(block)
            one[name] += time.perf_counter() - t
            step = max(256, -(-len(block) // (4 * cores)))    # 4 pieces per core: all stay busy
            chunks = [block[i:i + step] for i in range(0, len(block), step)]
            t = time.perf_counter()
            sum(pools[name].imap_unordered(_worker_chunk, chunks))
            par[name] += time.perf_counter() - t
    for pool in pools.values():
        pool.terminate()
    out = {}
    for name in fns:
        n = len(subsets[name])
        out[name] = {"molecules": n, "featurized": ok[name], "one_process_s": round(one[name], 2),
                     "one_process_mol_per_s": round(n / one[name], 1),
                     "all_cores_s": round(par[name], 2), "all_cores_mol_per_s": round(n / par[name], 1)}
        print(f"  {name:34s} 1 proc {n / one[name]:8.0f} mol/s   {cores} procs {n / par[name]:8.0f} mol/s",
              flush=True)
    return out


def bench_cache(smiles: list[str], batch_size: int = 32) -> dict:
    """Featurize vs reload, measured back to back on the same SMILES.

    * per-entry cache (``GraphCache.get``, one ``torch.load`` per graph: what ``build_graphs``
      pays on a cache hit);
    * the training handoff as it was (``graphs.pt``: list of ``graph_to_dict``, one
      ``graph_from_dict`` per graph, PyG ``DataLoader`` collate);
    * the packed shard as the training workers now read it (``PackedGraphs.load(mmap=True)`` +
      ``collate`` of every mini-batch of ``batch_size`` graphs in a shuffled epoch order): the rate
      at which cached graphs reach the training loop as batches.
    """
    import random

    from torch_geometric.data import Batch

    from cgc_framework.engine.cache import ENTRY_SUFFIX, GraphCache, cache_key
    from cgc_framework.engine.featurize import CHUNK
    from cgc_framework.engine.shards import PackedGraphs
    from cgc_framework.plugin.graph import graph_from_dict, graph_to_dict
    from cgc_framework.plugin.records import RecordError
    from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder

    b = RDKitMoleculeBuilder()
    schema = b.schema()

    def featurize_all() -> list:                    # as build_graphs does: build_many per chunk
        return [(s, g) for i in range(0, len(smiles), CHUNK)
                for s, g in zip(smiles[i:i + CHUNK], b.build_many(smiles[i:i + CHUNK]))
                if not isinstance(g, RecordError)]

    root = Path(tempfile.mkdtemp(prefix="cgc_cache_bench_"))
    try:
        cache = GraphCache(root)
        t = time.perf_counter()
        keys = []
        for s, g in featurize_all():
            k = cache_key("rdkit_molecule", b, s)
            cache.put("rdkit_molecule", k, g)
            keys.append(k)
        store = time.perf_counter() - t
        t = time.perf_counter()
        built = [g for _, g in featurize_all()]
        featurize = time.perf_counter() - t
        feat_rate = len(built) / featurize
        t = time.perf_counter()
        for k in keys:
            cache.get("rdkit_molecule", k)
        reload_ = time.perf_counter() - t
        graphs = [schema.conform(g) for g in built]
        n = len(graphs)
        order = list(range(n))
        random.Random(0).shuffle(order)
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        # the old handoff: list of dicts, one HeteroData per graph, PyG collate
        torch.save([graph_to_dict(g) for g in graphs], root / "graphs.pt")
        t = time.perf_counter()
        listed = [graph_from_dict(d) for d in torch.load(root / "graphs.pt", weights_only=True, mmap=True)]
        list_load = time.perf_counter() - t
        t = time.perf_counter()
        for bt in batches:
            Batch.from_data_list([listed[i] for i in bt])
        list_collate = time.perf_counter() - t
        # the packed shard, as the training workers read it
        PackedGraphs.from_graphs(graphs).save(root / "graphs.packed.pt")
        t = time.perf_counter()
        packed = PackedGraphs.load(root / "graphs.packed.pt", mmap=True)
        packed_load = time.perf_counter() - t
        t = time.perf_counter()
        for bt in batches:
            packed.collate(bt)
        packed_collate = time.perf_counter() - t
        big = [order[i:i + 256] for i in range(0, n, 256)]       # the config default batch_size
        t = time.perf_counter()
        for bt in big:
            packed.collate(bt)
        packed_collate_256 = time.perf_counter() - t
        size = sum(p.stat().st_size for p in (root / "rdkit_molecule").rglob(f"*{ENTRY_SUFFIX}"))
        shard_size = (root / "graphs.packed.pt").stat().st_size
    finally:
        shutil.rmtree(root, ignore_errors=True)
    packed_rate = n / (packed_load + packed_collate)
    list_rate = n / (list_load + list_collate)
    res = {"molecules": len(smiles), "cached": len(keys), "batch_size": batch_size,
           "featurize_mol_per_s": round(feat_rate, 1),
           "featurize_and_store_mol_per_s": round(len(keys) / store, 1),
           "reload_mol_per_s": round(len(keys) / reload_, 1),
           "reload_speedup_vs_featurize": round((len(keys) / reload_) / feat_rate, 2),
           "graphs_list_to_batches_mol_per_s": round(list_rate, 1),
           "graphs_list_to_batches_speedup_vs_featurize": round(list_rate / feat_rate, 2),
           "packed_load_s": round(packed_load, 4),
           "packed_collate_s": round(packed_collate, 3),
           "packed_to_batches_mol_per_s": round(packed_rate, 1),
           "packed_to_batches_speedup_vs_featurize": round(packed_rate / feat_rate, 2),
           "packed_vs_pyg_collate_speedup": round(list_collate / packed_collate, 2),
           "packed_to_batches_256_mol_per_s": round(n / (packed_load + packed_collate_256), 1),
           "packed_to_batches_256_speedup_vs_featurize": round(n / (packed_load + packed_collate_256) / feat_rate, 2),
           "bytes_per_graph_entry_files": int(size / max(len(keys), 1)),
           "bytes_per_graph_packed": int(shard_size / max(n, 1))}
    print(f"  cache: featurize {res['featurize_mol_per_s']:.0f}/s, per-entry reload {res['reload_mol_per_s']:.0f}/s "
          f"({res['reload_speedup_vs_featurize']}x); graphs.pt list -> batches {list_rate:.0f}/s "
          f"({res['graphs_list_to_batches_speedup_vs_featurize']}x); packed shard -> batches {packed_rate:.0f}/s "
          f"({res['packed_to_batches_speedup_vs_featurize']}x)", flush=True)
    return res


def bench_proteins(folder: Path, repeats: int = 5) -> dict:
    from cgc_plugins.proteins.builder import BiopythonProteinBuilder, BiopythonProteinParams
    from cgc_plugins.proteins.secondary_structure import dssp_available
    from cgc_plugins.proteins.structure_io import read_residues

    files = sorted(p for p in folder.iterdir() if p.suffix in (".pdb", ".cif"))
    out = {"files": len(files), "modes": {}}
    modes = ["geometry"] + (["dssp"] if dssp_available() else [])
    for mode in reversed(modes):
        b = BiopythonProteinBuilder(BiopythonProteinParams(secondary_structure=mode))
        rows = []
        for p in files:
            reps = repeats if mode == "geometry" else 1
            best = float("inf")
            for _ in range(reps):
                t = time.perf_counter()
                g = b.build(p)
                best = min(best, time.perf_counter() - t)
            rows.append({"file": p.name, "residues": int(g["residue"].num_nodes), "seconds": best})
        df = pd.DataFrame(rows)
        ms_per_res = 1000 * df.seconds / df.residues
        slope, intercept = np.polyfit(df.residues, 1000 * df.seconds, 1)
        out["modes"][mode] = {
            "structures_per_s": round(len(df) / df.seconds.sum(), 2),
            "residues_per_s": round(df.residues.sum() / df.seconds.sum(), 0),
            "ms_per_300_residues_median": round(float(np.median(ms_per_res) * 300), 1),
            "ms_at_300_residues_linear_fit": round(float(intercept + 300 * slope), 1),
            "per_file": df.assign(ms=lambda d: (1000 * d.seconds).round(1)).drop(columns="seconds")
                          .to_dict(orient="records")}
        print(f"  proteins [{mode}]: {out['modes'][mode]['structures_per_s']} structures/s, "
              f"{out['modes'][mode]['ms_per_300_residues_median']} ms / 300 residues", flush=True)
    # cached reload of protein graphs (per-entry files)
    from cgc_framework.engine.cache import GraphCache, cache_key
    root = Path(tempfile.mkdtemp(prefix="cgc_pcache_bench_"))
    try:
        cache, keys = GraphCache(root), []
        for p in files:
            k = cache_key("biopython_protein", b, p)
            cache.put("biopython_protein", k, b.build(p))
            keys.append(k)
        t = time.perf_counter()
        for k in keys:
            cache.get("biopython_protein", k)
        reload_ = time.perf_counter() - t
    finally:
        shutil.rmtree(root, ignore_errors=True)
    dssp_rate = out["modes"].get("dssp", {}).get("structures_per_s")
    out["cache_reload"] = {"structures_per_s": round(len(files) / reload_, 1),
                           "speedup_vs_geometry": round(len(files) / reload_ / out["modes"]["geometry"]["structures_per_s"], 1),
                           "speedup_vs_dssp": round(len(files) / reload_ / dssp_rate, 1) if dssp_rate else None}
    print(f"  proteins cache reload: {out['cache_reload']}", flush=True)
    # profile: Biopython parsing vs the rest, on the file closest to 300 residues
    b = BiopythonProteinBuilder(BiopythonProteinParams(secondary_structure="geometry"))
    sizes = {r["file"]: r["residues"] for r in out["modes"]["geometry"]["per_file"]}
    near300 = min(sizes, key=lambda f: abs(sizes[f] - 300))
    t = time.perf_counter(); [read_residues(folder / near300) for _ in range(repeats)]
    read = (time.perf_counter() - t) / repeats
    t = time.perf_counter(); [b.build(folder / near300) for _ in range(repeats)]
    total = (time.perf_counter() - t) / repeats
    from Bio.PDB import FastMMCIFParser, PDBParser
    parser = FastMMCIFParser(QUIET=True) if near300.endswith(".cif") else PDBParser(QUIET=True)
    t = time.perf_counter(); [parser.get_structure("x", str(folder / near300)) for _ in range(repeats)]
    parse = (time.perf_counter() - t) / repeats
    out["profile"] = {"file": near300, "residues": sizes[near300], "biopython_parse_ms": round(1000 * parse, 1),
                      "read_residues_ms": round(1000 * read, 1), "build_total_ms": round(1000 * total, 1)}
    return out


def profile_molecule(smiles: list[str], reps: int = 3) -> dict:
    """Where one molecule's time goes (best of ``reps`` passes, microseconds per molecule)."""
    from rdkit import Chem
    from torch_geometric.utils import from_smiles

    from cgc_framework.engine.featurize import CHUNK
    from cgc_framework.plugin.graph import hetero_data
    from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder, graphs_of, parse_smiles, read_molecule
    from cgc_plugins.molecules.rdkit_pickle import api_fields, decode

    mols, good = [], []
    for s in smiles:
        try:
            mols.append(parse_smiles(s)); good.append(s)
        except Exception:  # noqa: BLE001
            pass
    n = len(mols)
    read = [read_molecule(m, has_isotopes=False) for m in mols]
    binaries = [m.ToBinary() for m in mols]

    def best(fn) -> float:
        times = []
        for _ in range(reps):
            t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
        return 1e6 * min(times) / n

    def chunks(items):
        return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]

    b = RDKitMoleculeBuilder()
    x = torch.zeros(3, 1)
    out = {
        "molecules": n,
        "atoms_per_molecule": round(sum(m.GetNumAtoms() for m in mols) / n, 1),
        "build_many_total_us": best(lambda: [b.build_many(c) for c in chunks(good)]),
        "build_one_by_one_us": best(lambda: [b.build(s) for s in good]),
        "pyg_from_smiles_us": best(lambda: [from_smiles(s) for s in good]),
        "rdkit_parse_sanitize_us": best(lambda: [Chem.MolFromSmiles(s) for s in good]),
        "rdkit_tobinary_us": best(lambda: [m.ToBinary() for m in mols]),
        "decode_binary_us": best(lambda: [decode(bb) for bb in binaries]),
        "graphs_of_chunks_us": best(lambda: [graphs_of(c) for c in chunks(read)]),
        "hetero_data_5_stores_us": best(lambda: [hetero_data({
            "atom": {"x": x, "x_cat": x, "num_nodes": 3}, "compound": {"x": x, "x_cat": x, "num_nodes": 1},
            ("atom", "bond", "atom"): {"edge_index": x, "edge_attr": x, "edge_attr_cat": x},
            ("atom", "in", "compound"): {"edge_index": x}, ("compound", "has", "atom"): {"edge_index": x}})
            for _ in mols]),
        "replaced_python_api_fields_us": best(lambda: [api_fields(m) for m in mols]),
    }
    return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=None, help="first N SMILES only (default: all 41k)")
    ap.add_argument("--cache-molecules", type=int, default=10000)
    ap.add_argument("--deepchem-molecules", type=int, default=8000,
                    help="DeepChem is ~20x slower: time it on the first N SMILES")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "featurization.json")
    args = ap.parse_args(argv)
    _quiet_rdkit()
    smiles = pd.read_csv(args.data / "moleculenet" / "HIV.csv")["smiles"].astype(str).tolist()
    if args.limit:
        smiles = smiles[: args.limit]
    cores = os.cpu_count() or 1
    t0 = time.time()
    print(f"molecules: {len(smiles)} SMILES of MoleculeNet HIV, {cores} cores", flush=True)
    molecules = bench_molecules(smiles, cores, args.deepchem_molecules)
    print("cache", flush=True)
    cache = bench_cache(smiles[: args.cache_molecules])
    print("proteins", flush=True)
    proteins = bench_proteins(args.data / "proteins")
    print("profile", flush=True)
    profile = profile_molecule(smiles[:3000])
    ours, ours_dc, one, pyg, dc = (molecules[k] for k in FEATURIZERS)
    geo = proteins["modes"]["geometry"]
    result = {
        "machine": {"cpus": cores, "python": platform.python_version(), "platform": platform.platform(),
                    "torch": torch.__version__,
                    "load_average_at_start": os.getloadavg()[0]},
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
        "targets": _TARGETS,
        "molecules": molecules,
        "ratios": {
            "vs_from_smiles_one_process": round(ours["one_process_mol_per_s"] / pyg["one_process_mol_per_s"], 2),
            "vs_from_smiles_all_cores": round(ours["all_cores_mol_per_s"] / pyg["all_cores_mol_per_s"], 2),
            "one_by_one_vs_from_smiles_one_process": round(one["one_process_mol_per_s"] / pyg["one_process_mol_per_s"], 2),
            "vs_deepchem_one_process": round(ours_dc["one_process_mol_per_s"] / dc["one_process_mol_per_s"], 2),
            "vs_deepchem_all_cores": round(ours_dc["all_cores_mol_per_s"] / dc["all_cores_mol_per_s"], 2),
            "cache_reload_per_entry_vs_featurize": cache["reload_speedup_vs_featurize"],
            "cache_reload_packed_to_batches_vs_featurize": cache["packed_to_batches_speedup_vs_featurize"],
            "cache_reload_packed_to_batches_256_vs_featurize": cache["packed_to_batches_256_speedup_vs_featurize"],
            "protein_ms_per_300_residues_geometry": geo["ms_per_300_residues_median"],
        },
        "cache": cache,
        "proteins": proteins,
        "molecule_profile": profile,
        "wall_s": round(time.time() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios"], indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
