"""``data.join``: attach per-record data of a new modality to an existing dataset's records.

A third-party modality often has its own per-record table (an expression signature per well, a
protein abundance per sample) for records an existing dataset already yields. Instead of reading
and keying that table inside its graph builder, a config joins it::

    data:
      dataset: {name: cellpainting_experiments, params: {...}}
      join:
        - table: expression.csv          # CSV / TSV (.gz) or Parquet, relative to the YAML file
          keys: [plate, well]              # record fields = table columns (record_id: the record's id)
          field: expression              # the joined row goes into record.fields["expression"]
          columns: [GENE1, GENE2]        # default: every column not in `keys`
          required: true                 # a record without a row is skipped and counted

Each record gets ``fields[field] = {column: value}`` (one table row, a plain dict). Keys compare as
text, so ``well`` ``"B02"`` and a plate id read as a number both match. A key that appears twice in
the table is an error (which row is meant?); a record whose key is missing from the table is
skipped with the reason (``required``), or kept without the field. Nothing is dropped silently:
``describe()`` reports matched and unmatched counts, and every skip is in ``skipped_records.csv``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cgc_framework.plugin.contracts import Dataset
from cgc_framework.plugin.errors import ConfigError, DataError
from cgc_framework.plugin.records import Record, SkipLog

JOIN = "data.join"
"""The component name under which records without a joined row are counted."""


def _read_table(path: Path, keys: list[str]):
    """The table, with its key columns as text (``"01"`` stays ``"01"``)."""
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            return df.astype({k: str for k in keys if k in df.columns})
        sep = "\t" if path.name.endswith((".tsv", ".tsv.gz", ".txt", ".txt.gz")) else ","
        return pd.read_csv(path, sep=sep, dtype={k: str for k in keys})
    except Exception as exc:  # parse errors of any reader: name the file
        raise ConfigError(str(path), [f"data.join.table: cannot read {path} as a table "
                                      f"({type(exc).__name__}: {exc})"]) from None


class JoinedTable:
    """One ``data.join`` entry, loaded: key tuple -> ``{column: value}``."""

    def __init__(self, spec: Any, base_dir: Path, index: int):
        self.spec = spec
        self.key = f"data.join[{index}]"
        path = Path(spec.table).expanduser()
        self.path = path if path.is_absolute() else (base_dir / path)
        if not self.path.is_file():
            raise ConfigError("config", [f"{self.key}.table: no such file: {self.path}"])
        df = _read_table(self.path, list(spec.keys))
        missing = [c for c in spec.keys if c not in df.columns]
        if missing:
            raise ConfigError("config", [f"{self.key}.keys: {self.path.name} has no column(s) {missing}; its columns: "
                                         f"{', '.join(map(str, df.columns[:30]))}"])
        columns = spec.columns or [c for c in df.columns if c not in spec.keys]
        unknown = [c for c in columns if c not in df.columns]
        if unknown:
            raise ConfigError("config", [f"{self.key}.columns: {self.path.name} has no column(s) {unknown}"])
        keys = [tuple(str(v) for v in row) for row in df[list(spec.keys)].itertuples(index=False)]
        dup = next((k for k, n in _counts(keys).items() if n > 1), None)
        if dup is not None:
            raise ConfigError("config", [f"{self.key}: {self.path.name} has more than one row for "
                                         f"{dict(zip(spec.keys, dup))}; each key must name one row"])
        values = df[columns].to_dict("records")
        self.rows: dict[tuple[str, ...], dict[str, Any]] = dict(zip(keys, values))
        self.matched = 0
        self.unmatched = 0

    def key_of(self, record: Record) -> tuple[str, ...] | None:
        out = []
        for f in self.spec.keys:
            v = record.id if f == "record_id" else record.fields.get(f)
            if v is None:
                return None
            out.append(str(v))
        return tuple(out)


def _counts(keys: list[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
    out: dict[tuple[str, ...], int] = {}
    for k in keys:
        out[k] = out.get(k, 0) + 1
    return out


class JoinedDataset(Dataset):
    """The run's dataset with the ``data.join`` tables attached to its records (module docstring)."""

    def __init__(self, inner: Dataset, tables: list[JoinedTable]):
        self.inner = inner
        self.tables = tables

    def __getattr__(self, name: str) -> Any:  # only reached for attributes not set here
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def records(self, skips: SkipLog) -> Iterator[Record]:
        for t in self.tables:
            t.matched = t.unmatched = 0
        for record in self.inner.records(skips):
            fields = dict(record.fields)
            kept = True
            for t in self.tables:
                key = t.key_of(record)
                row = t.rows.get(key) if key is not None else None
                if row is None:
                    t.unmatched += 1
                    if t.spec.required:
                        what = dict(zip(t.spec.keys, key)) if key is not None else f"no {t.spec.keys} fields"
                        skips.add(record.id, JOIN, t.spec.field, key,
                                  f"{t.path.name} has no row for {what} ({t.key}.required: true)")
                        kept = False
                        break
                    continue
                if t.spec.field in fields:
                    raise DataError(f"{t.key}: record '{record.id}' already has a field '{t.spec.field}' "
                                    f"(from the dataset or an earlier join); choose another `field` for "
                                    f"{t.path.name}")
                t.matched += 1
                fields[t.spec.field] = dict(row)
            if kept:
                yield Record(record.id, fields)

    def describe(self) -> dict[str, Any]:
        info = dict(self.inner.describe())
        for t in self.tables:
            info[f"{t.key} ({t.path.name} -> field '{t.spec.field}', keys {t.spec.keys})"] = (
                f"{len(t.rows)} table rows; {t.matched} records matched, {t.unmatched} without a row "
                f"({'skipped' if t.spec.required else 'kept without the field'})")
        return info


def join_tables(dataset: Dataset, specs: list[Any], base_dir: Path) -> Dataset:
    """``dataset`` with ``specs`` (``data.join``) attached; the dataset itself when there are none."""
    if not specs:
        return dataset
    return JoinedDataset(dataset, [JoinedTable(s, base_dir, i) for i, s in enumerate(specs)])


__all__ = ["JOIN", "JoinedDataset", "JoinedTable", "join_tables"]
