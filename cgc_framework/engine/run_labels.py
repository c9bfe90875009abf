"""Labels a run already has, keyed by graph: ``cgc-embed --map-run-labels COLUMN``.

A run directory keeps its experiment graphs (``data/shards/``; older runs ``data/graphs.packed.pt``) in
record order, its config (``config.resolved.yaml``), the records it skipped
(``skipped_records.csv``) and its evaluations' tables (``evaluations/<name>/*.csv``). This module
gives graph ``i`` its record id and a label column from

1. the records' own fields (``moa``, ``cell_line``, ``source``, ``cell_type`` ...: any field with a
   text or number value), or else
2. an evaluation table with a ``record_id`` column holding that column (the first such table, rows
   joined on ``record_id``, the first row of a record kept).

**Graph -> record id.** A run written with shards lists the ids in its shard files. An older run with
one packed file does not, so its records are read again exactly as featurization read them: the run's
dataset (composed from ``config.resolved.yaml``, ``data.max_records`` honoured), the record checks
(a repeated id is rejected), minus the records ``skipped_records.csv`` names as rejected by a builder
or an edge source; the number left must equal the number of graphs, else :class:`CGCError` (the data
files changed since the run: give a labels table with ``--map`` instead).

Nothing here knows what the records are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cgc_framework.plugin.errors import CGCError

MAX_LISTED = 30
"""Available columns named in an error message."""


def _text(value: Any) -> str:
    """A field value as label text: ``""`` for none / NaN / non-scalar values."""
    if value is None or isinstance(value, (bytes, bytearray)):
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return ""
    if isinstance(value, (str, int, float, bool)):
        return str(value).strip()
    return ""


def _sharded_ids(run_dir: Path) -> list[str] | None:
    """Record ids of a run written as shards (``data/shards/manifest.json``), else ``None``."""
    shards = run_dir / "data" / "shards"
    if not (shards / "manifest.json").is_file():
        return None
    from cgc_framework.engine.shardset import ShardedGraphs

    return ShardedGraphs(shards).record_ids


def _graph_count(run_dir: Path) -> int:
    """Graphs in the run's ``data/shards/`` (or, from older runs, ``data/graphs.packed.pt`` / ``graphs.pt``)."""
    from cgc_framework.engine.pretrained import load_graphs

    for name in ("shards", "graphs.packed.pt", "graphs.pt"):
        path = run_dir / "data" / name
        if path.exists():
            return len(load_graphs(path))
    raise CGCError(f"{run_dir}: no data/shards/, data/graphs.packed.pt or data/graphs.pt (is it a cgc-run output "
                   f"directory?); give --run the run directory, or a labels table with --map")


def _skipped_by_builders(run_dir: Path) -> set[str]:
    """Ids that ``skipped_records.csv`` names as rejected after the record checks (by a builder or
    an edge source); the record checks' own rejections are recomputed."""
    from cgc_framework.engine.validate import COMPONENT

    path = run_dir / "skipped_records.csv"
    if not path.is_file():
        return set()
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "record_id" not in table.columns:
        raise CGCError(f"{path}: no record_id column (columns: {', '.join(map(str, table.columns))})")
    comp = table["component"] if "component" in table.columns else pd.Series([""] * len(table))
    return set(table.loc[comp != COMPONENT, "record_id"])


def run_records(run_dir: str | Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """``(record id of each graph in graph order, record id -> {field: label text})`` of a finished
    run; the fields are the records' scalar fields (empty text for none). ``CGCError`` naming the run
    and the fix when the records cannot be read again or do not match the graphs."""
    from cgc_framework.engine.validate import RecordChecks
    from cgc_framework.plugin import SkipLog
    from cgc_framework.plugin.records import Record

    run_dir = Path(run_dir)
    config = run_dir / "config.resolved.yaml"
    if not config.is_file():
        raise CGCError(f"{run_dir}: no config.resolved.yaml, so not a cgc-run output directory; give --run the "
                       f"run directory (the one holding checkpoints/), or a labels table with --map")
    from cgc_framework.api import plan_run

    try:
        plan = plan_run(config)
    except CGCError as exc:
        raise CGCError(f"{run_dir}: cannot compose the run's config again to read its records ({exc}); give a "
                       f"labels table with --map instead") from None
    limit = plan.config.data.max_records
    skipped = _skipped_by_builders(run_dir)
    fields: dict[str, dict[str, str]] = {}
    order: list[str] = []
    checks = RecordChecks()
    for i, record in enumerate(plan.dataset.records(SkipLog())):
        if limit is not None and i >= limit:
            break
        if not isinstance(checks.check(record) or record, Record):   # rejected by the record checks
            continue
        if record.id in skipped:
            continue
        order.append(record.id)
        fields[record.id] = {k: _text(v) for k, v in record.fields.items()}
    sharded = _sharded_ids(run_dir)
    if sharded is not None:
        return sharded, fields
    n = _graph_count(run_dir)
    if len(order) != n:
        raise CGCError(f"{run_dir}: its dataset now gives {len(order)} records that were not skipped, but the run "
                       f"built {n} graphs, so graphs cannot be matched to records (did its data files change?); "
                       f"give a labels table keyed by graph with --map instead")
    return order, fields


def evaluation_tables(run_dir: str | Path) -> list[Path]:
    """The run's evaluation CSV tables that have a ``record_id`` column, sorted by path."""
    out = []
    for path in sorted(Path(run_dir).glob("evaluations/**/*.csv")):
        try:
            header = pd.read_csv(path, nrows=0).columns
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            continue
        if "record_id" in header:
            out.append(path)
    return out


def run_labels(run_dir: str | Path, column: str) -> pd.DataFrame:
    """Column ``column`` of a finished run for each of its graphs.

    Returns a DataFrame with one row per graph, in graph order: ``graph`` (int, the row of
    ``cgc-embed --graphs <run>/data/...``), ``record_id``, ``column`` (text, ``""`` where the record
    has none) and ``label_source`` (``record field`` or the evaluation table's path relative to the
    run). ``CGCError`` naming the column and every available one when no source has it.
    """
    run_dir = Path(run_dir)
    ids, fields = run_records(run_dir)
    record_columns = sorted({k for f in fields.values() for k, v in f.items() if v})
    if column in record_columns:
        values = [fields.get(r, {}).get(column, "") for r in ids]
        source = "record field"
    else:
        values, source = None, ""
        tables = evaluation_tables(run_dir)
        for path in tables:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
            if column in table.columns:
                first = table.drop_duplicates("record_id")
                label_of = dict(zip(first["record_id"], first[column].str.strip()))
                values, source = [label_of.get(r, "") for r in ids], str(path.relative_to(run_dir))
                break
        if values is None:
            listed = ", ".join(record_columns[:MAX_LISTED]) + (" ..." if len(record_columns) > MAX_LISTED else "")
            evals = "; ".join(f"{p.relative_to(run_dir)}: {', '.join(c for c in pd.read_csv(p, nrows=0).columns)}"
                              for p in tables) or "none"
            raise CGCError(f"{run_dir}: no label column {column!r} (--map-run-labels) in the run's records or its "
                           f"evaluation tables. Record fields: {listed or 'none'}. Evaluation tables with a "
                           f"record_id column: {evals}")
    return pd.DataFrame({"graph": np.arange(len(ids)), "record_id": ids, column: values, "label_source": source})


def run_dir_of(checkpoint: str | Path) -> Path | None:
    """The run directory of a checkpoint ``<run>/checkpoints/<name>.pt`` (``None`` when that is not
    a run directory, e.g. shipped weights)."""
    path = Path(checkpoint)
    run = path.parent.parent if path.parent.name == "checkpoints" else None
    return run if run is not None and (run / "config.resolved.yaml").is_file() else None


__all__ = ["evaluation_tables", "run_dir_of", "run_labels", "run_records"]
