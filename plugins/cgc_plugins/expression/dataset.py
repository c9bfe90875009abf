"""Cells of an AnnData ``.h5ad`` file as records (the ``h5ad_cells`` dataset).

One record per cell, streamed in chunks of ``chunk_cells`` rows: id = the cell's name (the obs
index), fields ``expression_profile`` (an :class:`~cgc_plugins.expression.panel.ExpressionProfile`
over every gene of the file), ``cell_id`` (the name again, so evaluators can group by it) and each
``obs_fields`` column under its record field name (categories as text; a missing category as
``None``). A cell with no finite value at all is skipped and counted; NaN / inf values are
counted and passed on (the builder marks them unmeasured).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cgc_framework.plugin import DataError, Dataset, Record, SkipLog
from cgc_framework.plugin.provenance import sha256_file

from .h5ad import H5adMatrix
from .panel import ExpressionProfile
from .params import H5adCellsParams

NAME = "h5ad_cells"


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python value; NaN / pandas NA as ``None``."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else value
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return value


class H5adCells(Dataset):
    """Registered as ``h5ad_cells``; see the module docstring."""

    def __init__(self, params: H5adCellsParams):
        self.params = params
        self.counts: dict[str, int] = {}
        with self._open() as mat:  # fail at composition for a bad file, matrix or obs column
            missing = [c for c in params.obs_fields if c not in mat.obs.columns]
            if missing:
                raise DataError(f"{params.path}: obs has no column(s) {', '.join(map(repr, missing))} (obs_fields); "
                                f"its columns: {', '.join(map(str, mat.obs.columns)) or 'none'}")
            self.shape = (mat.n_obs, mat.n_vars)
            self.reader = mat.reader

    def _open(self) -> H5adMatrix:
        p = self.params
        try:
            return H5adMatrix(p.path, p.matrix, p.reader)
        except (ValueError, ImportError, FileNotFoundError) as exc:
            raise DataError(f"{NAME}: {exc}") from None

    def records(self, skips: SkipLog) -> Iterator[Record]:
        p = self.params
        self.counts = {"cells": 0, "kept": 0, "no finite value": 0, "non-finite values": 0,
                       "cells with non-finite values": 0}
        with self._open() as mat:
            genes = tuple(mat.var_names)
            names = [str(c) for c in mat.obs.index]
            obs = {c: mat.obs[c].astype(object).to_numpy() for c in p.obs_fields}
            for start, block in mat.chunks(p.chunk_cells, p.max_cells):
                finite = np.isfinite(block)
                for j in range(len(block)):
                    i = start + j
                    self.counts["cells"] += 1
                    bad = int(block.shape[1] - finite[j].sum())
                    if bad:
                        self.counts["non-finite values"] += bad
                        self.counts["cells with non-finite values"] += 1
                    if bad == block.shape[1]:
                        self.counts["no finite value"] += 1
                        skips.add(names[i], NAME, "expression_profile", f"cell {i + 1}",
                                  f"no finite value among its {block.shape[1]} genes (every value NaN or inf)")
                        continue
                    fields: dict[str, Any] = {"expression_profile": ExpressionProfile(genes, block[j].copy(), names[i]),
                                              "cell_id": names[i]}
                    for col, field in p.obs_fields.items():
                        fields[field] = _plain(obs[col][i])
                    self.counts["kept"] += 1
                    yield Record(names[i], fields)

    def describe(self) -> dict[str, Any]:
        p = self.params
        info: dict[str, Any] = {"file": str(p.path), "sha256": sha256_file(p.path), "matrix": p.matrix,
                                "shape": f"{self.shape[0]} cells x {self.shape[1]} genes", "reader": self.reader}
        if p.obs_fields:
            info["obs fields"] = ", ".join(f"{c} -> {f}" for c, f in p.obs_fields.items())
        if self.counts:
            info["cells"] = ", ".join(f"{k}: {v}" for k, v in self.counts.items())
        return info


__all__ = ["H5adCells"]
