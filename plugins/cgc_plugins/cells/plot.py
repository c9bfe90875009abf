"""Draw one experiment graph (matplotlib only): atoms/compound, target proteins, compartments and
channels, with cross-scale edges highlighted. Used for ``docs/img/experiment_graph.png``::

    .venv/bin/python -m cgc_plugins.cells.plot docs/img/experiment_graph.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .feature_names import CHANNELS, COMPARTMENTS

_COLORS = {"atom": "#9e9e9e", "compound": "#d62728", "protein": "#9467bd", "compartment": "#1f77b4",
           "channel": "#2ca02c"}


def _layout(data, atom_xy: np.ndarray | None = None) -> dict[str, np.ndarray]:
    pos: dict[str, np.ndarray] = {}
    na = data["atom"].num_nodes if "atom" in data.node_types else 0
    if atom_xy is not None and len(atom_xy) == na:
        xy = atom_xy - atom_xy.mean(0)
        pos["atom"] = xy / (np.abs(xy).max() + 1e-9) * 2.0 + np.array([-4.5, 0.0])
    elif na:  # atoms: force-free spring-ish layout from bonds (a few Laplacian eigenvectors)
        ei = data["atom", "bond", "atom"].edge_index.numpy()
        a = np.zeros((na, na))
        a[ei[0], ei[1]] = 1
        lap = np.diag(a.sum(1)) - a
        w, v = np.linalg.eigh(lap)
        xy = v[:, 1:3] if na > 2 else np.random.default_rng(0).normal(size=(na, 2))
        xy = (xy - xy.mean(0)) / (np.abs(xy).max() + 1e-9) * 1.6
        pos["atom"] = xy + np.array([-4.0, 0.0])
    pos["compound"] = np.array([[-1.6, 0.0]])
    npr = data["protein"].num_nodes if "protein" in data.node_types else 0
    pos["protein"] = np.stack([np.linspace(-3.5, 3.5, max(npr, 1))[:npr], np.full(npr, 3.6)], 1)
    comp_names = [COMPARTMENTS[i] if i < len(COMPARTMENTS) else "other"
                  for i in data["compartment"].x_cat[:, 0].tolist()]
    centers = {"Cells": np.array([2.5, 0.0]), "Cytoplasm": np.array([5.5, 1.6]), "Nuclei": np.array([5.5, -1.6])}
    pos["compartment"] = np.stack([centers.get(c, np.array([4.0, 0.0])) for c in comp_names])
    ch = data["channel"].x_cat.numpy()
    cpos = []
    for chan, comp in ch:
        c = centers.get(COMPARTMENTS[comp] if comp < len(COMPARTMENTS) else "", np.array([4.0, 0.0]))
        ang = 2 * np.pi * chan / len(CHANNELS) + (0.3 if comp == 1 else 0)
        cpos.append(c + 1.1 * np.array([np.cos(ang), np.sin(ang)]))
    pos["channel"] = np.array(cpos).reshape(-1, 2)
    return pos


def draw_experiment_graph(data, path: Path, title: str = "", atom_xy: np.ndarray | None = None) -> None:
    """Write a PNG of one (unbatched) experiment graph to ``path`` (``atom_xy``: optional 2-D
    depiction coordinates ``[N_atom, 2]``, e.g. RDKit's)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = _layout(data, atom_xy)
    fig, ax = plt.subplots(figsize=(12, 7.5), dpi=110)
    styles = {("atom", "bond", "atom"): ("#bbbbbb", 1.0, "-"),
              ("atom", "in", "compound"): ("#f2b8b8", 0.4, "-"),
              ("compound", "targets", "protein"): ("#9467bd", 1.6, "-"),
              ("compound", "treats", "compartment"): ("#d62728", 1.6, "--"),
              ("channel", "in", "compartment"): ("#8fbf8f", 0.8, "-"),
              ("compartment", "contains", "compartment"): ("#1f77b4", 2.2, "-"),
              ("channel", "correlates", "channel"): ("#ff7f0e", 0.35, ":")}
    for (s, r, d), (col, lw, ls) in styles.items():
        if (s, r, d) not in data.edge_types or s not in pos or d not in pos:
            continue
        ei = data[s, r, d].edge_index.numpy()
        for a, b in ei.T:
            p, q = pos[s][a], pos[d][b]
            ax.plot([p[0], q[0]], [p[1], q[1]], color=col, lw=lw, ls=ls, zorder=1)
        ax.plot([], [], color=col, lw=max(lw, 1.2), ls=ls, label=f"({s}, {r}, {d})  x{ei.shape[1]}")
    sizes = {"atom": 30, "compound": 260, "protein": 200, "compartment": 700, "channel": 170}
    for t, xy in pos.items():
        if len(xy):
            ax.scatter(xy[:, 0], xy[:, 1], s=sizes[t], c=_COLORS[t], zorder=2, edgecolors="k", linewidths=0.5,
                       label=f"{t} ({len(xy)})")
    ax.text(*pos["compound"][0] + [0, -0.45], "compound", ha="center", fontsize=9)
    for i, xy in enumerate(pos["compartment"]):
        k = int(data["compartment"].x_cat[i, 0])
        ax.text(xy[0], xy[1], COMPARTMENTS[k] if k < len(COMPARTMENTS) else "?", ha="center", va="center",
                fontsize=7, color="white", zorder=3)
    for i, xy in enumerate(pos["channel"]):
        k = int(data["channel"].x_cat[i, 0])
        ax.text(xy[0], xy[1] + 0.22, CHANNELS[k] if k < len(CHANNELS) else "?", ha="center", fontsize=7)
    genes = getattr(data["protein"], "genes", None)
    if genes:
        for g, xy in zip(genes, pos["protein"]):
            ax.text(xy[0], xy[1] + 0.28, g, ha="center", fontsize=8)
    ax.set_title(title, fontsize=10, pad=18)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=7, ncol=4, frameon=False)
    ax.set_axis_off()
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(out: str) -> None:
    """Build the imatinib 3.33 uM well of the embedded LINCS plate through a full plan and draw it."""
    import tempfile

    import yaml

    from cgc_framework.api import plan_run
    from cgc_framework.engine.featurize import build_record
    from cgc_framework.plugin.records import SkipLog

    repo = Path(__file__).resolve().parents[3]
    cfg = yaml.safe_load((repo / "registry.yaml").read_text())
    cfg["data"] = {"dataset": {"name": "cellpainting_experiments", "params": {}}}
    cfg["graph"] = {"modalities": {"molecule": {"builder": "rdkit_molecule"},
                                   "cell": {"builder": "cellprofiler_profile"}},
                    "edge_sources": {"drug_target": {"name": "drug_target"},
                                     "cooccurrence": {"name": "cooccurrence"}}}
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.yaml"
        p.write_text(yaml.safe_dump(cfg))
        plan = plan_run(p)
    rec = next(r for r in plan.dataset.records(SkipLog())
               if r.fields["compound_name"] == "imatinib" and abs(r.fields["dose_um"] - 3.33) < 0.1)
    g = build_record(plan, rec)
    _, source = plan.edge_sources["drug_target"]
    from rdkit.Chem import AllChem
    mol = plan.modalities["molecule"].builder.mol(rec.fields["smiles"])
    AllChem.Compute2DCoords(mol)
    atom_xy = mol.GetConformer().GetPositions()[:, :2]
    g["protein"].genes = sorted(source.targets(rec.fields.get("inchikey"), rec.fields.get("compound_id")))
    draw_experiment_graph(g, Path(out), f"Experiment graph of LINCS well {rec.id}: imatinib "
                                        f"{rec.fields['dose_um']:.2f} uM on A549 (real data, embedded default)", atom_xy)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "experiment_graph.png")
