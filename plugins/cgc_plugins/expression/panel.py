"""The expression modality's value (:class:`ExpressionProfile`) and its gene panel (:class:`GenePanel`).

Numpy only (no torch), so the dataset can import it cheaply.

A **gene panel** is the list of genes that become nodes of every cell's graph, with the gene-gene
edges between them. It is computed once from a reference ``.h5ad`` (normally the dataset's own file,
its first ``reference_max_cells`` cells), streaming in chunks:

1. per-gene statistics over the finite values (count, mean, variance); a value that is NaN or
   +-inf is not used (and counted);
2. selection (``genes``): the file's ``highly_variable`` column, the ``n_genes`` most variable genes,
   every gene, or an explicit list; every gene of the file is either in the panel or listed in
   :attr:`GenePanel.left_out` with its reason, and every gene of an explicit list that the file does
   not have is listed in :attr:`GenePanel.unknown`;
3. edges: each gene's ``coexpression_k`` partners of highest |Pearson r| over the reference cells
   (non-finite values replaced by the gene's mean, i.e. contributing nothing), kept when |r| >=
   ``min_abs_corr``, made symmetric; or the pairs of an edge table (pairs naming a gene outside the
   panel are counted).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .h5ad import H5adMatrix


@dataclass(frozen=True)
class ExpressionProfile:
    """The value of a record's ``expression_profile`` field: one cell (or sample).

    Attributes:
        genes: gene names ``[G]``, shared by every cell of a file (the builder caches its mapping per tuple).
        values: float32 ``[G]``, the measured state (e.g. scaled log-normalised counts); NaN / inf =
            not measured (the builder marks them unmeasured).
        cell: the cell's name (for messages).
        control: float32 ``[G]`` or ``None``: a paired control state (a perturbation experiment's
            unperturbed cells); ``None`` = the cell has one measured state, which is then both the
            control ``x`` and the treated ``y`` of its gene nodes.
    """

    genes: tuple[str, ...]
    values: np.ndarray
    cell: str = ""
    control: np.ndarray | None = None

    def digest(self) -> str:
        """SHA-256 of the content: the featurization cache key."""
        h = hashlib.sha256("\x1f".join(self.genes).encode())
        h.update(np.ascontiguousarray(self.values, dtype=np.float32).tobytes())
        if self.control is not None:
            h.update(b"control")
            h.update(np.ascontiguousarray(self.control, dtype=np.float32).tobytes())
        return h.hexdigest()

    def __str__(self) -> str:
        # shown in skip reports and used by the featurization cache (json.dumps(default=str)) as the key
        return f"ExpressionProfile(cell={self.cell}, genes={len(self.genes)}, sha256={self.digest()[:32]})"


@dataclass
class GenePanel:
    """Genes of the graph and the edges between them (module docstring).

    Attributes:
        genes: the panel, in node order.
        edges: int64 ``[2, E]`` node indices, both directions of every pair.
        weights: float32 ``[E]`` Pearson r (co-expression) or the table's weight.
        left_out: gene of the file -> why it is not in the panel.
        unknown: genes of an explicit list (or edge table) that the file does not have.
        stats: counts for ``describe()``.
    """

    genes: list[str]
    edges: np.ndarray
    weights: np.ndarray
    left_out: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def read_gene_file(path: Path) -> list[str]:
    """Gene names of a text file, one per line; blank lines and ``#`` comments ignored."""
    out = []
    for line in Path(path).read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            out.append(name)
    return out


def _moments(mat: H5adMatrix, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Per gene over the first ``limit`` cells: (finite count, mean, variance) of the finite values,
    the number of non-finite values and of cells read."""
    g = mat.n_vars
    n = np.zeros(g, np.int64)
    s = np.zeros(g)
    ss = np.zeros(g)
    bad = 0
    cells = 0
    for _, block in mat.chunks(4096, limit):
        fin = np.isfinite(block)
        bad += int((~fin).sum())
        v = np.where(fin, block, 0).astype(np.float64)
        n += fin.sum(0)
        s += v.sum(0)
        ss += (v * v).sum(0)
        cells += len(block)
    mean = np.divide(s, n, out=np.zeros(g), where=n > 0)
    var = np.divide(ss, n, out=np.zeros(g), where=n > 0) - mean ** 2
    return n, mean, np.maximum(var, 0), bad, cells


def _correlation(mat: H5adMatrix, cols: np.ndarray, mean: np.ndarray, limit: int) -> np.ndarray:
    """Pearson r ``[P, P]`` of the genes ``cols`` over the first ``limit`` cells (non-finite values
    at the gene's mean)."""
    p = len(cols)
    cov = np.zeros((p, p))
    m = mean[cols]
    for _, block in mat.chunks(4096, limit):
        b = block[:, cols].astype(np.float64) - m
        b[~np.isfinite(b)] = 0.0
        cov += b.T @ b
    sd = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.outer(sd, sd)
    r[~np.isfinite(r)] = 0.0
    np.fill_diagonal(r, 0.0)
    return r


def _symmetric(pairs: set[tuple[int, int]]) -> np.ndarray:
    both = sorted(pairs | {(b, a) for a, b in pairs})
    return np.array(both, dtype=np.int64).reshape(-1, 2).T


def gene_panel(path: Path, *, matrix: str = "X", genes: str = "highly_variable", gene_list: list[str] | None = None,
               n_genes: int | None = None, coexpression_k: int = 8, min_abs_corr: float = 0.2,
               edge_table: Path | None = None, max_cells: int = 50_000, reader: str = "auto") -> GenePanel:
    """The panel of a reference file (module docstring). ``ValueError`` naming the file and the fix
    when no gene is left."""
    with H5adMatrix(path, matrix, reader) as mat:  # type: ignore[arg-type]
        names = list(mat.var_names)
        first: dict[str, int] = {}
        left: dict[str, str] = {}
        for i, g in enumerate(names):
            if g in first:
                left[f"{g} (column {i + 1})"] = f"duplicate gene name (column {first[g] + 1} kept)"
            else:
                first[g] = i
        n, mean, var, bad, cells = _moments(mat, max_cells)
        unknown: list[str] = []
        if gene_list is not None:
            wanted = list(dict.fromkeys(gene_list))
            unknown = [g for g in wanted if g not in first]
            chosen = [first[g] for g in wanted if g in first]
            why_not = "not in the configured gene list"
            how = f"gene list ({len(wanted)} genes, {len(unknown)} not in the file)"
        else:
            cand = [first[g] for g in first]
            mode = genes
            if mode == "highly_variable":
                var_table = _var_column(mat, "highly_variable")
                if var_table is None:
                    mode = "top_variance"
                else:
                    cand = [i for i in cand if bool(var_table[i])]
                    why_not = "not highly variable (var['highly_variable'] is false)"
                    how = f"var['highly_variable'] ({len(cand)} genes)"
            if mode == "top_variance":
                n_genes = n_genes or 200
                why_not = f"not among the {n_genes} most variable genes"
                how = f"the {n_genes} genes of highest variance"
            elif mode == "all":
                why_not = "not in the panel"
                how = "every gene"
            chosen = cand
            if mode == "top_variance" or (n_genes is not None and len(chosen) > n_genes):
                order = sorted(chosen, key=lambda i: (-var[i], i))
                if mode != "top_variance":
                    why_not = f"not among the {n_genes} most variable of {how}"
                    how += f", the {n_genes} most variable"
                chosen = order[:n_genes]
        chosen_set = set(chosen)
        for g, i in first.items():
            if i in chosen_set:
                continue
            if n[i] == 0:
                left[g] = "no finite value in the reference cells"
            else:
                left[g] = why_not
        if not chosen:
            raise ValueError(f"{path}: the gene panel is empty ({how}); "
                             + ("none of the listed genes is in the file's gene table: check the names "
                                f"(first in the file: {', '.join(names[:5])})" if gene_list is not None else
                                "use genes: all or top_variance"))
        panel = [names[i] for i in chosen]
        cols = np.array(chosen, dtype=np.int64)
        stats: dict[str, Any] = {"reference_cells": cells, "reference_nonfinite_values": bad, "selection": how}
        if edge_table is not None:
            edges, weights, table_stats = _table_edges(edge_table, panel)
            unknown += [g for g in table_stats.pop("unknown_genes") if g not in first and g not in unknown]
            stats.update(table_stats)
        elif coexpression_k > 0 and len(cols) > 1:
            r = _correlation(mat, cols, mean, max_cells)
            pairs: set[tuple[int, int]] = set()
            k = min(coexpression_k, len(cols) - 1)
            part = np.argsort(-np.abs(r), axis=1)[:, :k]
            for a in range(len(cols)):
                for b in part[a]:
                    if abs(r[a, b]) >= min_abs_corr:
                        pairs.add((min(a, int(b)), max(a, int(b))))
            edges = _symmetric(pairs)
            weights = r[edges[0], edges[1]].astype(np.float32) if edges.size else np.zeros(0, np.float32)
            stats["edges"] = f"co-expression, top {k} |r| per gene with |r| >= {min_abs_corr:g}: {len(pairs)} pairs"
            isolated = len(cols) - len(set(edges[0].tolist())) if edges.size else len(cols)
            stats["genes_without_edges"] = isolated
        else:
            edges, weights = np.zeros((2, 0), np.int64), np.zeros(0, np.float32)
            stats["edges"] = "none"
        zero = [names[i] for i in chosen if n[i] > 0 and var[i] == 0]
        if zero:
            stats["constant_genes_in_panel"] = len(zero)
    return GenePanel(panel, edges, weights, left, unknown, stats)


def _var_column(mat: H5adMatrix, column: str) -> np.ndarray | None:
    """A column of the matrix's gene table, or ``None``."""
    table = var_frame(mat)
    if column not in table.columns:
        return None
    return table[column].fillna(False).to_numpy().astype(bool)


def var_frame(mat: H5adMatrix) -> Any:
    """The gene table (``var``, or ``raw.var`` for ``raw.X``) of an open matrix as a DataFrame."""
    if mat.reader == "anndata":
        import pandas as pd

        ad = mat._ad
        return pd.DataFrame(ad.raw.var if mat.matrix == "raw.X" else ad.var)
    from .h5ad import _read_frame

    f = mat._h5
    if mat.matrix == "raw.X":
        return _read_frame(f["raw"], "var", None) if "raw" in f else _read_frame(f, "raw.var", None)
    return _read_frame(f, "var", f.get("uns"))


def _table_edges(path: Path, panel: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    import pandas as pd

    sep = "\t" if Path(path).name.lower().removesuffix(".gz").endswith((".tsv", ".txt")) else ","
    table = pd.read_csv(path, sep=sep, dtype={"gene_a": str, "gene_b": str})
    missing = [c for c in ("gene_a", "gene_b") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: edge table needs the columns gene_a and gene_b (missing: {', '.join(missing)}); "
                         f"its columns: {', '.join(map(str, table.columns[:10]))}")
    index = {g: i for i, g in enumerate(panel)}
    pairs: dict[tuple[int, int], float] = {}
    outside: Counter[str] = Counter()
    weight = table["weight"] if "weight" in table.columns else pd.Series(1.0, index=table.index)
    for a, b, w in zip(table.gene_a, table.gene_b, weight):
        if a not in index or b not in index:
            outside.update(g for g in (a, b) if g not in index)
            continue
        if a != b and np.isfinite(float(w)):
            pairs[(min(index[a], index[b]), max(index[a], index[b]))] = float(w)
    edges = _symmetric(set(pairs))
    weights = np.array([pairs[(min(a, b), max(a, b))] for a, b in edges.T], dtype=np.float32)
    dropped = sum(1 for a, b in zip(table.gene_a, table.gene_b) if a not in index or b not in index)
    return edges, weights, {"edges": f"table {Path(path).name}: {len(pairs)} pairs, {dropped} rows naming a gene "
                                      f"outside the panel left out", "unknown_genes": sorted(outside)}


__all__ = ["ExpressionProfile", "GenePanel", "gene_panel", "read_gene_file", "var_frame"]
