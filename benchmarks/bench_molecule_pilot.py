"""Pilot for the molecule-corpus stage (issue 17): which width and which self-supervision to ship.

Trains the ``molecule_gin`` encoder for a fixed number of steps on the first ``n`` molecules of the
MOSES corpus with a chosen set of molecule-level tasks, then probes it few-shot (frozen embeddings +
standardized logistic regression, k = 5 and 20 labelled molecules per class, 5 support draws) on the
scaffold **valid** splits of BBBP, BACE, ClinTox and SIDER (the first 10 tasks). The test splits are
left for the stage-ablation sweep, so choosing settings here does not tune on them.

Tasks: ``mask`` (masked atom/bond recovery), ``desc`` (RDKit descriptor regression), ``fp`` (ECFP4 bit
prediction), ``dfp`` (descriptors + bits: the ``molecule_properties`` task's default), ``mcl`` (molecule
contrast). ``--steps 1 --lr 1e-9`` gives the untrained encoder of the same width.

    CGC_SHARED_DATA=../shared/data python benchmarks/bench_molecule_pilot.py \
        '{"name": "dfp128", "tasks": ["dfp"], "hidden": 128}' >> benchmarks/results/molecule_pilot.jsonl

Each run prints one JSON line: the name, the settings, the valid-split AUROC averaged over tasks and
draws per set x k, and the average over sets per k. The committed lines are in
``benchmarks/results/molecule_pilot.jsonl`` and summarised in ``docs/results.md``.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from torch_geometric.loader import DataLoader

from cgc_framework.engine.shards import PackedGraphs
from cgc_framework.plugin import GraphSchema
from cgc_plugins.encoders import MoleculeGINEncoder, MoleculeGINParams
from cgc_plugins.evaluators.molnet import load_molnet
from cgc_plugins.molecules.features import molecule_schema
from cgc_plugins.molecules.params import RDKitMoleculeParams
from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder
from cgc_plugins.tasks.masked_recovery import MaskedNodeRecovery
from cgc_plugins.tasks.molecule_contrast import MoleculeContrast
from cgc_plugins.tasks.molecule_properties import MoleculeProperties
from cgc_plugins.tasks.params import MoleculePropertiesParams

SETS = ("bbbp", "bace", "clintox", "sider")
KS = (5, 20)


def corpus(builder: RDKitMoleculeBuilder, schema: GraphSchema, data: Path, n: int) -> PackedGraphs:
    """The first ``n`` MOSES molecules, featurized once into a packed shard under the temp folder."""
    cache = Path(tempfile.gettempdir()) / f"cgc-pilot-moses-{n}.pt"
    if cache.exists():
        return PackedGraphs.load(cache, mmap=False)
    with gzip.open(data / "molecules" / "moses_train.csv.gz", "rt") as f:
        f.readline()
        smiles = [line.strip().split(",")[0] for line in itertools.islice(f, n)]
    graphs = [schema.conform(g) for g in builder.build_many(smiles) if not isinstance(g, Exception)]
    packed = PackedGraphs.from_graphs(graphs)
    packed.save(cache)
    return packed


def main(spec: dict) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = Path(os.environ.get("CGC_SHARED_DATA", "../shared/data"))
    n, steps, hidden = spec.get("n", 20000), spec.get("steps", 300), spec.get("hidden", 300)
    builder = RDKitMoleculeBuilder(RDKitMoleculeParams(descriptors=True, fingerprint_bits=1024))
    schema = GraphSchema().merge(molecule_schema())
    packed = corpus(builder, schema, data, n)
    enc = MoleculeGINEncoder(MoleculeGINParams(hidden_dim=hidden, pooling=spec.get("pooling", "sum"),
                                               num_layers=spec.get("layers", 5)), schema)
    make = {"mask": lambda: MaskedNodeRecovery(None, schema, hidden),
            "desc": lambda: MoleculeProperties(MoleculePropertiesParams(fingerprint_weight=0), schema, hidden),
            "fp": lambda: MoleculeProperties(MoleculePropertiesParams(descriptor_weight=0), schema, hidden),
            "dfp": lambda: MoleculeProperties(None, schema, hidden),
            "mcl": lambda: MoleculeContrast(None, schema, hidden)}
    tasks = {name: make[name]() for name in spec["tasks"]}
    params = list(enc.parameters()) + [p for t in tasks.values() for p in t.parameters()]
    opt = torch.optim.Adam(params, spec.get("lr", 1e-3))
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        batch = packed.collate(torch.randint(len(packed), (256,), generator=gen).tolist())
        loss = sum(t(batch, enc).loss for t in tasks.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0
    enc.eval()

    def embed(smiles) -> tuple[np.ndarray, np.ndarray]:
        built = builder.build_many(list(smiles))
        keep = np.array([not isinstance(g, Exception) for g in built])
        graphs = [schema.conform(g) for g in built if not isinstance(g, Exception)]
        with torch.no_grad():
            out = [enc.readout(enc(b), b, ["compound"]) for b in DataLoader(graphs, batch_size=256)]
        return torch.cat(out).numpy(), keep

    scores: dict[tuple[str, int], list[float]] = {}
    for name in SETS:
        ds = load_molnet(name, data / "moleculenet")
        x_tr, k_tr = embed(ds.train.smiles)
        x_va, k_va = embed(ds.valid.smiles)
        y_tr, p_tr, y_va, p_va = ds.train.y[k_tr], ds.train.present[k_tr], ds.valid.y[k_va], ds.valid.present[k_va]
        for t in range(min(y_tr.shape[1], 10)):
            if len(np.unique(y_va[p_va[:, t], t])) < 2:
                continue
            for k in KS:
                pos = np.flatnonzero(p_tr[:, t] & (y_tr[:, t] == 1))
                neg = np.flatnonzero(p_tr[:, t] & (y_tr[:, t] == 0))
                if len(pos) < k or len(neg) < k:
                    continue
                for draw in range(5):
                    rng = np.random.default_rng([t, k, draw])
                    idx = np.concatenate([rng.choice(pos, k, False), rng.choice(neg, k, False)])
                    scaler = StandardScaler().fit(x_tr[idx])
                    clf = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x_tr[idx]), y_tr[idx, t])
                    prob = clf.predict_proba(scaler.transform(x_va[p_va[:, t]]))[:, 1]
                    scores.setdefault((name, k), []).append(roc_auc_score(y_va[p_va[:, t], t], prob))
    per = {f"{d}@{k}": round(float(np.mean(v)), 3) for (d, k), v in scores.items()}
    avg = {str(k): round(float(np.mean([np.mean(v) for (d, kk), v in scores.items() if kk == k])), 3) for k in KS}
    return {"name": spec["name"], "spec": spec, "train_s": round(train_s), "avg": avg, "per": per}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
