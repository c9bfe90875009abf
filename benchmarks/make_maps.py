"""The embedding maps of docs/expression.md#embedding-maps (issue 21): the default run's compound
embeddings coloured by MoA, and the pooled Cell Painting corpus's cell embeddings coloured by cell line,
each beside the untrained encoder's map with its kNN label agreement.

    CGC_SHARED_DATA=../shared/data python benchmarks/make_maps.py RUN_DEFAULT RUN_POOLED OUT_DIR

RUN_DEFAULT: a finished `cgc-run registry.yaml` run; RUN_POOLED: a finished
`cgc-run benchmarks/configs/pooled_cellpainting.yaml` run. Writes OUT_DIR/{compounds,bbbp,cells}.map.{png,csv,
scores.csv} (bbbp: the shipped `default` molecule weights on MoleculeNet BBBP, read from $CGC_SHARED_DATA).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cgc_framework.engine.embedding_map import untrained, write_map
from cgc_framework.engine.pretrained import load_graphs, load_pretrained
from cgc_plugins.cells.context import CELL_LINES
from cgc_plugins.datasets.lincs import EMBEDDED_COMPOUNDS


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
    graphs = load_graphs(run / "data" / "graphs.packed.pt")
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


if __name__ == "__main__":
    default_run, pooled_run, out_dir = map(Path, sys.argv[1:4])
    out_dir.mkdir(parents=True, exist_ok=True)
    compounds(default_run, out_dir)
    shipped_bbbp(Path(os.environ.get("CGC_SHARED_DATA", "../shared/data")) / "moleculenet", out_dir)
    cells(pooled_run, out_dir)
