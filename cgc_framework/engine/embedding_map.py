"""2-D maps of embeddings coloured by a label, each with a kNN label-agreement score (``cgc-embed --map``).

A researcher judges an embedding first by a map coloured by known labels; the map here comes with
a number, and with the same map of the *untrained* encoder (same architecture, fresh seeded weights)
beside it, so that structure the architecture gives for free is not credited to pretraining.

- **projection**: PCA of the embeddings (``method: pca``), or UMAP (``umap``; ``auto`` = UMAP when
  ``umap-learn`` is installed, else PCA); seeded, so a map repeats.
- **kNN label agreement** (:func:`knn_agreement`): the mean over points of the fraction of its ``k``
  nearest other points (cosine similarity in the full embedding, not the 2-D map) that share its
  label; 1 = every neighbourhood is pure. Its chance level (:func:`chance_agreement`) is what
  randomly placed points would score: ``sum_c n_c (n_c - 1) / (n (n - 1))``.

Outputs for a prefix ``P``: ``P.png`` (one panel per model), ``P.csv`` (one row per mapped point:
its id columns, ``label``, ``<model>_x``, ``<model>_y``) and ``P.scores.csv`` (one row per model:
``model, method, k, knn_agreement, chance, n_points, n_labels``).

Nothing here knows what the embeddings are (molecules, cells, expression profiles).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cgc_framework.engine.inputs import output_table
from cgc_framework.plugin.errors import CGCError

Method = Literal["auto", "pca", "umap"]
Labels = Sequence[Any] | np.ndarray
"""One label per point (compared as text)."""
KEY_CANDIDATES = ("record_id", "smiles", "row", "graph")
"""Columns tried, in order, to join a labels table to the embeddings when no key is given."""
MAX_COLOURS = 20
"""Labels beyond the 19 most frequent are drawn as ``other`` (the scores use every label)."""


@dataclass
class MapResult:
    """What :func:`write_map` wrote and measured.

    Attributes:
        png, csv, scores_csv: the files.
        method: ``pca`` or ``umap`` (the projection used).
        scores: model -> kNN label agreement.
        chance: the agreement expected by chance.
        n_points, n_labels: points mapped, distinct labels.
    """

    png: Path
    csv: Path
    scores_csv: Path
    method: str
    scores: dict[str, float]
    chance: float
    n_points: int
    n_labels: int


def knn_agreement(embeddings: np.ndarray, labels: Labels, k: int = 10) -> float:
    """Mean over points of the fraction of their ``k`` nearest other points (cosine similarity of
    ``embeddings`` ``[N, D]``) with the same label; ``k`` is capped at ``N - 1``. NaN for ``N < 2``."""
    x = np.nan_to_num(np.asarray(embeddings, dtype=np.float64))
    lab = np.asarray([str(v) for v in labels], dtype=object)
    n = len(x)
    if n < 2:
        return float("nan")
    k = max(1, min(k, n - 1))
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    hits = 0.0
    for start in range(0, n, 2048):  # [chunk, N] similarities at a time
        sim = x[start:start + 2048] @ x.T
        rows = np.arange(sim.shape[0])
        sim[rows, start + rows] = -np.inf
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        hits += float((lab[nn] == lab[start:start + 2048, None]).sum())
    return hits / (n * k)


def chance_agreement(labels: Labels) -> float:
    """The kNN agreement of randomly placed points: ``sum_c n_c (n_c - 1) / (n (n - 1))``."""
    counts = pd.Series([str(v) for v in labels]).value_counts().to_numpy(dtype=np.float64)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1))) if n > 1 else float("nan")


def umap_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def project_2d(embeddings: np.ndarray, method: Method = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """``([N, 2] coordinates, method used)``: PCA, or UMAP when asked for (``auto``: when installed)."""
    x = np.nan_to_num(np.asarray(embeddings, dtype=np.float64))
    if method == "umap" and not umap_available():
        raise CGCError("--map-method umap needs umap-learn: pip install umap-learn (or use --map-method pca)")
    if method in ("umap", "auto") and umap_available() and len(x) > 3:
        import umap

        coords = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(x) - 1)).fit_transform(x)
        return np.asarray(coords, dtype=np.float64), "umap"
    from sklearn.decomposition import PCA

    n_comp = min(2, x.shape[0], x.shape[1])
    coords = PCA(n_comp, random_state=seed).fit_transform(x - x.mean(0)) if n_comp else np.zeros((len(x), 0))
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords, "pca"


def write_map(embeddings: dict[str, np.ndarray], ids: pd.DataFrame, labels: Labels, prefix: str | Path, *,
              label_name: str = "label", method: Method = "auto", k: int = 10, seed: int = 0,
              title: str = "") -> MapResult:
    """Map each model's embeddings (``{model: [N, D]}``, rows aligned with ``ids`` and ``labels``) and
    write ``<prefix>.png``, ``<prefix>.csv`` and ``<prefix>.scores.csv`` (module docstring)."""
    from matplotlib.figure import Figure

    prefix = Path(prefix)
    lab = np.asarray([str(v) for v in labels], dtype=object)
    n = len(lab)
    for name, e in embeddings.items():
        if len(e) != n:
            raise ValueError(f"embeddings {name!r} have {len(e)} rows for {n} labels")
    chance = chance_agreement(lab)
    table = ids.reset_index(drop=True).copy()
    table["label"] = lab
    scores: dict[str, float] = {}
    coords: dict[str, np.ndarray] = {}
    used = "pca"
    for name, e in embeddings.items():
        coords[name], used = project_2d(e, method, seed)
        scores[name] = knn_agreement(e, lab, k)
        table[f"{name}_x"], table[f"{name}_y"] = coords[name][:, 0], coords[name][:, 1]
    counts = pd.Series(lab).value_counts()
    shown = list(counts.index[:MAX_COLOURS - 1]) if len(counts) > MAX_COLOURS else list(counts.index)
    colour_of = {c: i for i, c in enumerate(sorted(shown))}
    fig = Figure(figsize=(6.2 * len(embeddings) + 2.8, 6.0))
    axes = fig.subplots(1, len(embeddings), squeeze=False)[0]
    import matplotlib

    cmap = matplotlib.colormaps["tab20" if len(colour_of) > 10 else "tab10"]
    for ax, (name, xy) in zip(axes, coords.items()):
        for c in sorted(shown) + (["other"] if len(shown) < len(counts) else []):
            sel = np.isin(lab, [x for x in counts.index if x not in shown]) if c == "other" else lab == c
            colour = (0.6, 0.6, 0.6, 1.0) if c == "other" else cmap(colour_of[c] % cmap.N)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=colour, label=f"{c} ({int(sel.sum())})", alpha=0.8,
                       linewidths=0)
        ax.set_title(f"{name}: kNN label agreement {scores[name]:.3f}\n(k = {min(k, max(n - 1, 1))}, chance "
                     f"{chance:.3f}; {used.upper()})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{used.upper()} 1")
        ax.set_ylabel(f"{used.upper()} 2")
    axes[-1].legend(title=label_name, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=2,
                    frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    png, csv, scores_csv = (prefix.with_name(prefix.name + ext) for ext in (".png", ".csv", ".scores.csv"))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    table.to_csv(csv, index=False)
    pd.DataFrame([{"model": m, "method": used, "k": min(k, max(n - 1, 1)), "knn_agreement": s, "chance": chance,
                   "n_points": n, "n_labels": int(len(counts))} for m, s in scores.items()]).to_csv(scores_csv,
                                                                                                   index=False)
    return MapResult(png, csv, scores_csv, used, scores, chance, n, int(len(counts)))


def read_labels(path: str | Path | pd.DataFrame, ids: pd.DataFrame, label_column: str = "label",
                key: str | None = None, *, name: str = "") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Join a labels table (CSV/TSV, read as text; or a DataFrame already read, called ``name`` in
    messages) to the embedding rows ``ids``.

    Returns ``(row indices with a label, their labels, stats)``; stats: ``key``, ``unlabelled`` (rows
    without a label, left out of the map), ``unmatched`` (label rows naming no embedding),
    ``duplicates`` (repeated keys; the first row kept). ``CGCError`` naming the file and the fix for
    a missing column or no shared key.
    """
    if isinstance(path, pd.DataFrame):
        table = path.astype(str)
        path = Path(name or "the labels table")
    else:
        path = Path(path)
        try:
            table = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
        except (OSError, pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise CGCError(f"{path}: cannot read the labels table ({type(exc).__name__}: {exc})") from None
    if label_column not in table.columns:
        raise CGCError(f"{path}: no column {label_column!r} (--label-column); its columns: "
                       f"{', '.join(map(str, table.columns[:20]))}")
    if key is None:
        key = next((c for c in KEY_CANDIDATES if c in table.columns and c in ids.columns), None)
        if key is None:
            raise CGCError(f"{path}: shares no key column with the embeddings (looked for {', '.join(KEY_CANDIDATES)}; "
                           f"the embeddings have {', '.join(map(str, ids.columns))}); add one, or name it with --map-key")
    for where, cols in ((path.name, table.columns), ("the embeddings", ids.columns)):
        if key not in cols:
            raise CGCError(f"--map-key {key!r} is not a column of {where} (columns: {', '.join(map(str, cols))})")
    keys = table[key].astype(str).str.strip()
    duplicates = int(keys.duplicated().sum())
    label_of = dict(zip(keys[::-1], table[label_column].astype(str).str.strip()[::-1]))  # first row wins
    mine = ids[key].astype(str).str.strip().to_numpy()
    got = np.array([label_of.get(v, "") for v in mine], dtype=object)
    rows = np.flatnonzero(got != "")
    stats = {"key": key, "unlabelled": int(len(mine) - len(rows)),
             "unmatched": int(len(set(label_of) - set(mine))), "duplicates": duplicates}
    return rows, got[rows], stats


def untrained(pre: Any) -> Any:
    """The same :class:`~cgc_framework.engine.pretrained.Pretrained` with the untrained model: the
    checkpoint's architecture with fresh weights drawn under ``torch.manual_seed(<run seed>)``."""
    import torch

    from cgc_framework.engine.checkpoint import load_model

    torch.manual_seed(int(pre.meta.get("seed", 0) or 0))
    model, _ = load_model(pre.checkpoint, pre.registry, trained=False, device=pre.device)
    return replace(pre, model=model)


def map_embeddings(pre: Any, ids: pd.DataFrame, embeddings: np.ndarray, embed_again: Callable[[Any], Any], *,
                   labels_path: str | Path | pd.DataFrame, label_column: str = "label", key: str | None = None,
                   prefix: str | Path, method: Method = "auto", k: int = 10, title: str = "",
                   labels_name: str = "") -> tuple[MapResult, dict]:
    """``cgc-embed --map``: the labelled rows' map for the checkpoint (``embeddings`` ``[N, D]``, rows
    of ``ids``) and for its untrained architecture (``embed_again(untrained_pre)`` -> the same ``[N, D]``
    rows). ``labels_path``: a labels file, or a table already read (e.g. :func:`run_labels
    <cgc_framework.engine.run_labels.run_labels>`), named ``labels_name`` in messages.
    Returns ``(result, label stats)``; ``CGCError`` when fewer than 2 rows have a label."""
    rows, labels, stats = read_labels(labels_path, ids, label_column, key, name=labels_name)
    if isinstance(labels_path, pd.DataFrame):
        labels_path = labels_name or "the labels table"
    if len(rows) < 2:
        raise CGCError(f"{labels_path}: only {len(rows)} embedded row(s) have a label in column {label_column!r} "
                       f"(joined on {stats['key']!r}; {stats['unlabelled']} rows without one); a map needs 2")
    fresh = np.asarray(embed_again(untrained(pre)))
    result = write_map({"pretrained": np.asarray(embeddings)[rows], "untrained": fresh[rows]}, ids.iloc[rows],
                       labels, prefix, label_name=label_column, method=method, k=k,
                       seed=int(pre.meta.get("seed", 0) or 0), title=title)
    return result, stats



def map_for_cli(pre: Any, ids: pd.DataFrame, embeddings: Any, args: Any, graphs: list | None = None) -> str:
    """``cgc-embed --map``: run :func:`map_embeddings` for the parsed arguments (``--graphs`` rows are
    re-embedded from ``graphs``, SMILES rows from ``ids.smiles``); returns the note the command prints."""
    if graphs is not None:
        def again(p: Any) -> Any:
            return p.embed_graphs(graphs, args.level, state=args.state).numpy()
        what = f"{args.level} embeddings"
    else:
        def again(p: Any) -> Any:
            return p.embed_smiles(list(ids["smiles"]), builder=args.builder).numpy()
        what = "molecule embeddings"
    stem = output_table(args.out)[1]
    prefix = stem.with_name(stem.name + ".map")
    labels: str | Path | pd.DataFrame = args.map
    column, name, source = args.label_column, "", ""
    if getattr(args, "map_run_labels", None):
        labels, name = run_labels_for_cli(pre, args, graphs)
        column = args.map_run_labels
        src = str(labels["label_source"].iloc[0]) if len(labels) else ""
        source = f", from the run's {'record fields' if src == 'record field' else src}" if src else ""
    result, stats = map_embeddings(pre, ids, np.asarray(embeddings), again, labels_path=labels,
                                   label_column=column, key=args.map_key, prefix=prefix, labels_name=name,
                                   method=args.map_method, title=f"{what} of {Path(pre.checkpoint).name} by "
                                                                 f"{column}")
    left = [f"{stats[k]} {w}" for k, w in (("unlabelled", "embedded rows without a label"),
                                           ("unmatched", "label rows matching no embedding"),
                                           ("duplicates", "repeated keys, first kept")) if stats[k]]
    return (f"\nmap of {result.n_points} labelled rows ({result.n_labels} labels{source}, joined on {stats['key']!r}"
            f"{'; ' + ', '.join(left) if left else ''}), {result.method.upper()}: kNN label agreement "
            f"pretrained {result.scores['pretrained']:.3f}, untrained {result.scores['untrained']:.3f} "
            f"(chance {result.chance:.3f}); wrote {result.png}, {result.csv}, {result.scores_csv}")


def run_labels_for_cli(pre: Any, args: Any, graphs: list | None) -> tuple[pd.DataFrame, str]:
    """``--map-run-labels COLUMN [--run DIR]``: the run's labels keyed by ``graph`` (DIR, default the
    checkpoint's run directory) and their name for messages; ``CGCError`` naming the fix when the
    rows are not the run's graphs."""
    from cgc_framework.engine.run_labels import run_dir_of, run_labels

    if graphs is None:
        raise CGCError("--map-run-labels colours the run's own graphs: give them with --graphs <run>/data/shards")
    run = Path(args.run) if getattr(args, "run", None) else run_dir_of(pre.checkpoint)
    if run is None:
        raise CGCError(f"--map-run-labels: {pre.checkpoint} is not in a run directory (<run>/checkpoints/); "
                       f"name the run with --run DIR")
    table = run_labels(run, args.map_run_labels)
    if len(table) != len(graphs):
        raise CGCError(f"--map-run-labels: run {run} has {len(table)} graphs but --graphs {args.graphs} holds "
                       f"{len(graphs)}; give that run's own graphs (<run>/data/shards) or --run it")
    return table, f"{run} ({args.map_run_labels})"


__all__ = ["MapResult", "chance_agreement", "knn_agreement", "map_embeddings", "map_for_cli", "project_2d", "read_labels",
           "run_labels_for_cli", "untrained", "write_map"]
