"""The embedding maps of docs/expression.md#embedding-maps (issue 21): the default run's compound
embeddings coloured by MoA, and the pooled Cell Painting corpus's cell embeddings coloured by cell line
and by MoA, each beside the untrained encoder's map with its kNN label agreement.

    CGC_SHARED_DATA=../shared/data python benchmarks/make_maps.py RUN_DEFAULT RUN_POOLED OUT_DIR [--only MAP ...]

RUN_DEFAULT: a finished `cgc-run registry.yaml` run; RUN_POOLED: a finished pooled Cell Painting run
(`benchmarks/configs/pooled_cellpainting.yaml`, or a trial of the causal sweep,
`runs/sweeps/causal-compound-seed0/trials/<id>/run`). Writes OUT_DIR/{compounds,bbbp,cells,cells_moa}.map.{png,csv,
scores.csv} (bbbp: the shipped `default` molecule weights on MoleculeNet BBBP, read from $CGC_SHARED_DATA);
`--only cells_moa` makes just that one (RUN_DEFAULT is then not read; give `-`). cells_moa also writes
cells_moa.by_source.csv: the kNN MoA agreement over all cells and within each source (cell line) of the
corpus, since the sources label MoAs in different vocabularies, with and without neighbours of the same
compound (replicate wells and doses); `--more-pooled-runs RUN ...` adds the same rows for other runs
(folds) to cells_moa.runs.csv.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cgc_framework.engine.embedding_map import chance_agreement, knn_agreement, untrained, write_map
from cgc_framework.engine.pretrained import load_graphs, load_pretrained
from cgc_framework.engine.run_labels import run_labels
from cgc_plugins.cells.context import CELL_LINES
from cgc_plugins.datasets.lincs import EMBEDDED_COMPOUNDS


def run_graphs(run: Path) -> Path:
    """A run's graphs: ``data/shards`` (runs since the sharded data path) or ``data/graphs.packed.pt``."""
    shards = run / "data" / "shards"
    return shards if shards.is_dir() else run / "data" / "graphs.packed.pt"

def compounds(run: Path, out: Path) -> None:
    table = pd.read_csv(EMBEDDED_COMPOUNDS).dropna(subset=["smiles", "moa"]).drop_duplicates("smiles")
    pre = load_pretrained(run / "checkpoints" / "final.pt")
    raw = untrained(pre)
    emb = {name: p.embed_smiles(table.smiles.tolist()).numpy() for name, p in (("pretrained", pre), ("untrained", raw))}
    res = write_map(emb, table[["smiles"]], table.moa.str.split("|").str[0], out / "compounds.map",
                    label_name="moa", k=5, title="default run: compound embeddings by MoA")
    print("compounds", res.scores, "chance", round(res.chance, 3), res.n_points, res.n_labels)


def shipped_bbbp(moleculenet: Path, out: Path) -> None:
    """The shipped `default` molecule weights on every BBBP molecule, coloured by blood-brain-barrier
    penetration (p_np)."""
    table = pd.read_csv(moleculenet / "BBBP.csv")[["smiles", "p_np"]].dropna()
    pre = load_pretrained("default")
    raw = untrained(pre)
    built = pre.build(table.smiles.tolist(), skip_invalid=True)
    table = table[[g is not None for g in built]]
    graphs = [g for g in built if g is not None]
    emb = {name: p.embed_graphs(graphs).numpy() for name, p in (("pretrained", pre), ("untrained", raw))}
    res = write_map(emb, table[["smiles"]], table.p_np.map({1: "penetrates", 0: "does not"}), out / "bbbp.map",
                    label_name="BBB penetration", title="shipped default weights: BBBP molecules")
    print("bbbp", res.scores, "chance", round(res.chance, 3), res.n_points, res.n_labels)


def cells(run: Path, out: Path) -> None:
    graphs = load_graphs(run_graphs(run))
    pre = load_pretrained(run / "checkpoints" / "final.pt")
    raw = untrained(pre)
    spec = pre.schema.node_types["compartment"]
    column = [f.name for f in spec.categorical].index("cell_line")
    names = [*CELL_LINES, "other"]
    line = [names[int(g["compartment"].x_cat[0, column])] for g in graphs]
    emb = {name: p.embed_graphs(graphs, "cell").numpy() for name, p in (("pretrained", pre), ("untrained", raw))}
    res = write_map(emb, pd.DataFrame({"graph": np.arange(len(graphs))}), line, out / "cells.map",
                    label_name="cell line", title="pooled corpus: cell embeddings by cell line")
    print("cells", res.scores, "chance", round(res.chance, 3), res.n_points, res.n_labels)


def knn_agreement_other_groups(embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """kNN label agreement (cosine, ``embeddings`` ``[N, D]``) counting only neighbours of *another* group
    (here: another compound), so replicate wells and doses of one compound cannot make a MoA agree."""
    x = np.nan_to_num(np.asarray(embeddings, dtype=np.float64))
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    lab, grp = np.asarray(labels, dtype=object), np.asarray(groups, dtype=object)
    sim = x @ x.T
    sim[grp[:, None] == grp[None, :]] = -np.inf
    kk = min(k, int(np.isfinite(sim).sum(1).min()))
    nn = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
    return float((lab[nn] == lab[:, None]).mean())


def chance_other_groups(labels: np.ndarray, groups: np.ndarray) -> float:
    """Chance level of :func:`knn_agreement_other_groups`: the fraction of pairs of points in different
    groups that share a label."""
    lab, grp = np.asarray(labels, dtype=object), np.asarray(groups, dtype=object)
    other = grp[:, None] != grp[None, :]
    return float((other & (lab[:, None] == lab[None, :])).sum() / max(int(other.sum()), 1))


def _moa_scores(run: Path, k: int) -> tuple[pd.DataFrame, dict[str, np.ndarray], pd.Series, pd.DataFrame]:
    """``(rows per source and model, embeddings {model: [N, D]}, MoA per graph, labels)`` of one pooled run."""
    graphs = load_graphs(run_graphs(run))
    labels = run_labels(run, "moa")
    for col in ("source", "compound_key"):
        labels[col] = run_labels(run, col)[col].to_numpy()
    if len(labels) != len(graphs):
        raise SystemExit(f"{run}: {len(labels)} labelled graphs for {len(graphs)} graphs")
    pre = load_pretrained(run / "checkpoints" / "final.pt")
    raw = untrained(pre)
    emb = {name: p.embed_graphs(graphs, "cell").numpy() for name, p in (("pretrained", pre), ("untrained", raw))}
    moa = labels.moa.str.split("|").str[0].str.strip()
    rows = []
    for source in ["all", *sorted(labels.source.unique())]:
        sel = ((moa != "") & ((labels.source == source) | (source == "all"))).to_numpy()
        for m, e in emb.items():
            rows.append({"run": run.parent.name, "source": source, "model": m, "n_points": int(sel.sum()),
                         "n_labels": int(moa[sel].nunique()), "n_compounds": int(labels.compound_key[sel].nunique()),
                         "k": k, "knn_agreement": knn_agreement(e[sel], moa[sel].to_numpy(), k),
                         "knn_agreement_other_compounds": knn_agreement_other_groups(
                             e[sel], moa[sel].to_numpy(), labels.compound_key[sel].to_numpy(), k),
                         "chance": chance_agreement(moa[sel].to_numpy()),
                         "chance_other_compounds": chance_other_groups(moa[sel].to_numpy(),
                                                                       labels.compound_key[sel].to_numpy())})
    return pd.DataFrame(rows), emb, moa, labels


def cells_moa(run: Path, out: Path, k: int = 10, more_runs: tuple[Path, ...] = ()) -> None:
    """The pooled run's cell embeddings coloured by the MoA of each well's compound (the records' `moa`
    field, first listed; read by `run_labels`, keyed by graph), beside the untrained encoder's; and the
    kNN MoA agreement within each source (``cells_moa.by_source.csv``: ``source, model, n_points,
    n_labels, knn_agreement, chance``)."""
    table, emb, moa, labels = _moa_scores(run, k)
    keep = (moa != "").to_numpy()
    res = write_map({m: e[keep] for m, e in emb.items()}, labels.loc[keep, ["graph", "record_id", "source"]],
                    moa[keep], out / "cells_moa.map", label_name="MoA (first listed)", k=k,
                    title=f"pooled corpus ({run.parent.name}): cell embeddings by MoA")
    print("cells_moa", res.scores, "chance", round(res.chance, 3), res.n_points, res.n_labels,
          "unlabelled", int((~keep).sum()))
    table.to_csv(out / "cells_moa.by_source.csv", index=False)
    print(table.to_string(index=False))
    if more_runs:
        folds = pd.concat([table] + [_moa_scores(r, k)[0] for r in more_runs], ignore_index=True)
        folds.to_csv(out / "cells_moa.runs.csv", index=False)
        print(folds.to_string(index=False))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("default_run", type=Path)
    parser.add_argument("pooled_run", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--more-pooled-runs", nargs="*", type=Path, default=[],
                        help="cells_moa: also score these pooled runs (other folds) into cells_moa.runs.csv")
    parser.add_argument("--only", nargs="+", choices=["compounds", "bbbp", "cells", "cells_moa"],
                        default=["compounds", "bbbp", "cells", "cells_moa"])
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if "compounds" in args.only:
        compounds(args.default_run, args.out_dir)
    if "bbbp" in args.only:
        shipped_bbbp(Path(os.environ.get("CGC_SHARED_DATA", "../shared/data")) / "moleculenet", args.out_dir)
    if "cells" in args.only:
        cells(args.pooled_run, args.out_dir)
    if "cells_moa" in args.only:
        cells_moa(args.pooled_run, args.out_dir, more_runs=tuple(args.more_pooled_runs))
