"""A cell's expression profile -> gene graph (the ``expression_genes`` builder).

One ``expression_gene`` node per gene of the panel (:mod:`.panel`), in panel order, in every graph:

* ``x`` float32 ``[G, 2]`` = (value, measured): the gene's value in the cell's control state, clipped
  to ``[-clip, clip]`` (0 where not measured), and 1 / 0 for measured / not (a NaN or inf value, or a
  panel gene the profile does not have);
* ``y`` float32 ``[G, 2]``: the same for the measured (treated) state. A single-cell atlas has one
  state per cell, so ``x == y`` unless the profile carries a paired ``control``;
* ``x_cat`` int64 ``[G, 1]``: the gene's identity (index in the panel), embedded by the encoder as a
  learned gene embedding.

Edges ``(expression_gene, coexpressed, expression_gene)``, both directions in one type, identical in
every graph: the panel's co-expression (or table) pairs, ``edge_attr`` float32 ``[E, 1]`` = Pearson r
(or the table's weight).

Role: ``expression_gene`` is a ``cell_state`` type, so the cell-level embedding, the views and the
leakage guard treat it like the Cell Painting compartments (an edge from a compound to these nodes,
such as ``cooccurrence`` with ``cell_node_type: expression_gene``, is a treatment edge).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import HeteroData

from cgc_framework.plugin import EdgeTypeSpec, FeatureSpec, GraphBuilder, GraphSchema, NodeTypeSpec, RecordError
from cgc_framework.plugin.graph import hetero_data
from cgc_framework.plugin.roles import CELL_STATE

from .panel import ExpressionProfile, GenePanel, gene_panel, read_gene_file
from .params import ExpressionGraphParams

NODE_TYPE = "expression_gene"
EDGE_TYPE = (NODE_TYPE, "coexpressed", NODE_TYPE)
MAX_LISTED = 1000
"""Left-out and unknown genes listed by name in ``describe()`` (all of them are in ``gene_report()``)."""

_PANELS: dict[tuple[Any, ...], GenePanel] = {}


def _panel(p: ExpressionGraphParams) -> GenePanel:
    """The panel of ``p``, computed once per process and file version."""
    genes = p.gene_list if p.gene_list is not None else (read_gene_file(p.gene_file) if p.gene_file else None)
    stamp = lambda f: (str(f), f.stat().st_mtime_ns, f.stat().st_size) if f is not None else None  # noqa: E731
    key = (stamp(Path(p.reference)), stamp(p.gene_file), stamp(p.edge_table),
           p.model_dump_json(exclude={"clip", "gene_file", "edge_table", "reference"}))
    if key not in _PANELS:
        if p.gene_file is not None and not genes:
            raise ValueError(f"gene_file {p.gene_file} lists no gene (one name per line, '#' comments)")
        _PANELS[key] = gene_panel(Path(p.reference), matrix=p.matrix, genes=p.genes, gene_list=genes,
                                  n_genes=p.n_genes, coexpression_k=p.coexpression_k, min_abs_corr=p.min_abs_corr,
                                  edge_table=p.edge_table, max_cells=p.reference_max_cells, reader=p.reader)
    return _PANELS[key]


def expression_schema(genes: list[str]) -> GraphSchema:
    """The published schema for a panel of ``genes`` (module docstring has the shapes)."""
    gene = NodeTypeSpec((
        FeatureSpec.continuous("expression", 1, "as in the .h5ad matrix (e.g. scaled log-normalised counts)",
                               "the gene's value in the cell, clipped; 0 where not measured", names=("expression",)),
        FeatureSpec.continuous("measured", 1, "", "1 where the value is finite and the gene in the profile, else 0",
                               flags_for="expression"),
        FeatureSpec.categorical("gene", len(genes) + 1, "gene identity (learned embedding): the panel + other",
                                names=(*genes, "other")),
    ), name=NODE_TYPE, description="a gene of the cell's expression panel", role=CELL_STATE, value_name="{gene}")
    edge = EdgeTypeSpec((FeatureSpec.continuous("weight", 1, "", "Pearson r over the reference cells (co-expression) "
                                                "or the edge table's weight"),),
                        src=NODE_TYPE, rel="coexpressed", dst=NODE_TYPE,
                        description="gene-gene co-expression (or a supplied table), both directions")
    return GraphSchema.of([gene], [edge])


class ExpressionGeneBuilder(GraphBuilder):
    """:class:`~cgc_plugins.expression.panel.ExpressionProfile` -> gene graph (module docstring)."""

    modality = "expression"
    version = "1"

    def __init__(self, params: ExpressionGraphParams):
        if params is None:
            raise ValueError("expression_genes needs params: at least `reference` (the .h5ad the gene panel is "
                             "computed from, normally the dataset's file)")
        self.params = params
        self.panel = _panel(params)
        self._index: dict[tuple[str, ...], np.ndarray] = {}
        g = len(self.panel.genes)
        self._x_cat = torch.arange(g, dtype=torch.long).unsqueeze(1)
        self._edge_index = torch.from_numpy(np.ascontiguousarray(self.panel.edges, dtype=np.int64))
        self._edge_attr = torch.from_numpy(self.panel.weights.astype(np.float32).reshape(-1, 1))
        self._edge_cat = torch.zeros(self._edge_index.size(1), 0, dtype=torch.long)

    def schema(self) -> GraphSchema:
        return expression_schema(self.panel.genes)

    def params_key(self) -> dict[str, Any]:
        return {**self.params.model_dump(mode="json"), "panel": self.panel.genes,
                "edges": int(self._edge_index.size(1))}

    def describe(self) -> dict[str, Any]:
        p = self.panel
        listed = lambda names: ", ".join(names[:MAX_LISTED]) + (f" ... (+{len(names) - MAX_LISTED})"  # noqa: E731
                                                               if len(names) > MAX_LISTED else "")
        reasons: dict[str, list[str]] = {}
        for g, why in p.left_out.items():
            reasons.setdefault(why, []).append(g)
        info: dict[str, Any] = {"reference": Path(self.params.reference).name, "matrix": self.params.matrix,
                                "genes used": f"{len(p.genes)} ({p.stats.get('selection', '')})"}
        info["genes left out"] = "; ".join(f"{len(v)} {why}: {listed(v)}" for why, v in reasons.items()) or "none"
        if p.unknown:
            info["unknown genes (not in the file)"] = f"{len(p.unknown)}: {listed(p.unknown)}"
        info.update({k: v for k, v in p.stats.items() if k != "selection"})
        return info

    def gene_report(self) -> list[dict[str, str]]:
        """One row per gene of the reference file and of the configured list: ``gene``, ``status``
        (used / left out / unknown), ``reason``."""
        rows = [{"gene": g, "status": "used", "reason": ""} for g in self.panel.genes]
        rows += [{"gene": g, "status": "left out", "reason": why} for g, why in self.panel.left_out.items()]
        rows += [{"gene": g, "status": "unknown", "reason": "not in the file's gene table"} for g in self.panel.unknown]
        return rows

    def _columns(self, genes: tuple[str, ...]) -> np.ndarray:
        """Position of each panel gene in ``genes`` (-1: absent), cached per gene tuple."""
        idx = self._index.get(genes)
        if idx is None:
            pos: dict[str, int] = {}
            for i, g in enumerate(genes):
                pos.setdefault(g, i)
            idx = np.array([pos.get(g, -1) for g in self.panel.genes], dtype=np.int64)
            self._index[genes] = idx
        return idx

    def _state(self, values: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``[G, 2]`` (value, measured) of one state."""
        v = np.full(len(cols), np.nan, np.float32)
        have = cols >= 0
        v[have] = values[cols[have]]
        measured = np.isfinite(v)
        v = np.where(measured, v, 0.0).astype(np.float32)
        if self.params.clip is not None:
            np.clip(v, -self.params.clip, self.params.clip, out=v)
        return np.stack([v, measured.astype(np.float32)], axis=1)

    def build(self, value: ExpressionProfile) -> HeteroData:
        if not isinstance(value, ExpressionProfile):
            raise RecordError(f"expression_profile must be an ExpressionProfile, got {type(value).__name__}")
        genes = tuple(value.genes)
        values = np.asarray(value.values, dtype=np.float32).reshape(-1)
        if len(values) != len(genes):
            raise RecordError(f"cell {value.cell}: {len(values)} values for {len(genes)} gene names")
        cols = self._columns(genes)
        y = self._state(values, cols)
        if y[:, 1].sum() == 0:
            known = int((cols >= 0).sum())
            raise RecordError(f"cell {value.cell}: none of the {len(cols)} panel genes has a finite value "
                              f"({known} of them are in the profile; the others are absent)")
        if value.control is None:
            x = y
        else:
            control = np.asarray(value.control, dtype=np.float32).reshape(-1)
            if len(control) != len(genes):
                raise RecordError(f"cell {value.cell}: control has {len(control)} values for {len(genes)} genes")
            x = self._state(control, cols)
        g = len(cols)
        return hetero_data({
            NODE_TYPE: {"x": torch.from_numpy(x), "y": torch.from_numpy(y.copy()), "x_cat": self._x_cat,
                        "num_nodes": g},
            EDGE_TYPE: {"edge_index": self._edge_index, "edge_attr": self._edge_attr, "edge_attr_cat": self._edge_cat},
        })


__all__ = ["EDGE_TYPE", "NODE_TYPE", "ExpressionGeneBuilder", "expression_schema"]
