"""The generic summary of any evaluation table in a sweep: mean and 95% CI over seeds per
configuration x the columns that describe a row, wide tables melted first."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cgc_framework.plugin.metrics import mean_ci


def grid_label(key: str) -> str:
    """The results-table column of a grid axis: its key, or for a bundle axis ``_name`` the ``name``."""
    return key[1:] if key.startswith("_") else key


def config_label(df: pd.DataFrame, grid_keys: list[str]) -> pd.Series:
    """One label per row: the values of its grid axes joined (``base`` without a grid)."""
    if not grid_keys:
        return pd.Series(["base"] * len(df), index=df.index)
    return df[grid_keys].astype(str).agg(", ".join, axis=1)


#: columns that identify a trial or its provenance, not what a value measures
_BOOKKEEPING = ("trial", "seed", "config_hash", "versions", "pretrain_data_sha256", "eval_data_sha256",
                "value", "draw", "n_test")


#: wide tables with more rows than this per trial are per-item listings (per feature, per pair):
#: they stay in ``results.parquet`` and are not averaged into the report.
MAX_SUMMARY_ROWS_PER_TRIAL = 30


def _long_form(g: pd.DataFrame, grid_keys: list[str]) -> pd.DataFrame | None:
    """A table as ``metric``/``value`` rows: tidy tables as they are; a small wide table (one column
    per measure, e.g. ICS or the do-check) melted — float and bool columns are measures, and so
    is an integral column that changes with the seed where the others name one row per seed
    (a best epoch); every other column (names, integer counts and ``k``, ``*_um`` doses)
    describes the row. ``None`` when there is nothing to average."""
    if "value" in g:
        return g
    if "trial" in g and g.groupby("trial").size().max() > MAX_SUMMARY_ROWS_PER_TRIAL:
        return None
    skip = {*_BOOKKEEPING, *grid_keys, "evaluation", "table"}
    measures = [c for c in g.columns if c not in skip and not c.endswith("_um") and _is_measure(g[c])]
    measures += _integral_measures(g, skip | set(measures), grid_keys)
    if not measures:
        return None
    g = g.copy()
    for c in measures:
        g[c] = g[c].astype(float)
    name = "metric" if "metric" not in g else "measure"
    return g.melt(id_vars=[c for c in g.columns if c not in measures], value_vars=measures,
                  var_name=name, value_name="value")


def _integral_measures(g: pd.DataFrame, taken: set[str], grid_keys: list[str]) -> list[str]:
    """Integral columns that are outcomes, not descriptors (e.g. a best epoch): the other
    descriptors already name one row per seed, and the column's value changes with the seed."""
    if "seed" not in g:
        return []
    candidates = [c for c in g.columns if c not in taken and not c.endswith("_um")
                  and pd.api.types.is_numeric_dtype(g[c]) and not pd.api.types.is_bool_dtype(g[c])]
    found = []
    for c in candidates:
        others = [k for k in g.columns if k not in taken and k != c and k not in found and k != "seed"]
        others = list(dict.fromkeys([*[k for k in grid_keys if k in g], *others]))
        if not others:
            continue
        if g.groupby([*others, "seed"], dropna=False).size().max() > 1:
            continue
        if (g.groupby(others, dropna=False)[c].nunique(dropna=False) > 1).any():
            found.append(c)
    return found


def _is_measure(col: pd.Series) -> bool:
    """True for a column of non-integral numbers or of booleans (averaged: a rate). The results
    table stores every number as float (tables are concatenated), so integral values — counts,
    ``k`` — are taken as descriptors."""
    v = col.dropna()
    if v.empty:
        return False
    if v.map(lambda x: isinstance(x, (bool, np.bool_))).all():
        return True
    if not pd.api.types.is_numeric_dtype(v):
        return False
    return not np.all(np.mod(v.to_numpy(dtype=float), 1) == 0)


def generic_summary(results: pd.DataFrame, grid_keys: list[str]) -> pd.DataFrame:
    """Any evaluation table: mean and 95% CI over seeds of ``value`` per config x every descriptive
    column of that table (e.g. suite, part, method, metric). Small wide tables are melted first
    (:func:`_long_form`); tables with only labels, or per-item listings, are left out."""
    frames = []
    for (ev, table), g in results.groupby(["evaluation", "table"], sort=False):
        g = _long_form(g.dropna(axis=1, how="all"), grid_keys)
        if g is None:
            continue
        g = g.copy()
        g["value"] = pd.to_numeric(g["value"], errors="coerce")
        g = g.dropna(subset=["value"])
        if g.empty:
            continue
        g["config"] = config_label(g, grid_keys)
        keys = ["config"] + [c for c in g.columns if c not in (*_BOOKKEEPING, *grid_keys, "config",
                                                                "evaluation", "table")]
        per_seed = g.groupby(keys + ["seed"], dropna=False)["value"].mean().reset_index()
        rows = []
        for key, s in per_seed.groupby(keys, dropna=False):
            m, lo, hi = mean_ci(s["value"].values)
            rows.append({"evaluation": ev, "table": table, **dict(zip(keys, key)), "mean": m, "ci_low": lo,
                         "ci_high": hi, "seeds": len(s)})
        frames.append(pd.DataFrame(rows))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
