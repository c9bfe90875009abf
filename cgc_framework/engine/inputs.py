"""Reading the SMILES a user gives a command (``cgc-embed --smiles-file``, ``cgc predict
--smiles-file``): every row is accounted for, with its row number.

A file is read as a CSV when its name ends in ``.csv`` (``.csv.gz``) or its first line's first field
is ``smiles``; the SMILES are its ``smiles`` column (any case). Otherwise it is a text file with one
SMILES per line (``.gz`` allowed); lines starting with ``#`` are comments. Row numbers are line
numbers of the file (a CSV's header is line 1). Empty rows (blank lines, empty cells) are not
SMILES: they are returned apart, so that commands count and name them.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

from cgc_framework.plugin.errors import DataError


@dataclass
class SmilesRows:
    """The SMILES of an input, each with its row number, and the rows without one."""

    source: str
    rows: list[int] = field(default_factory=list)
    smiles: list[str] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)
    """Row numbers of empty rows (blank lines, empty or whitespace-only cells)."""
    unit: str = "line"
    """What a row number counts: ``"line"`` (of a file) or ``"argument"`` (of ``--smiles``)."""

    def add(self, row: int, text: str) -> None:
        """Record ``text`` (stripped) at ``row``, or ``row`` as empty when it holds only whitespace."""
        if text.strip():
            self.rows.append(row)
            self.smiles.append(text.strip())
        else:
            self.empty.append(row)

    def describe_empty(self, limit: int = 10) -> str:
        """``"2 empty rows (lines 3, 7)"`` (``""`` when there are none)."""
        if not self.empty:
            return ""
        shown = ", ".join(map(str, self.empty[:limit])) + (", ..." if len(self.empty) > limit else "")
        s = "s" if len(self.empty) != 1 else ""
        return f"{len(self.empty)} empty row{s} ({self.unit}{s} {shown})"


def smiles_arguments(values: list[str]) -> SmilesRows:
    """SMILES given on the command line: row = position (1 = the first)."""
    out = SmilesRows("--smiles", unit="argument")
    for i, s in enumerate(values, start=1):
        out.add(i, s)
    return out


def _is_csv(path: Path, first_line: str) -> bool:
    name = path.name.lower()
    return name.endswith((".csv", ".csv.gz")) or first_line.strip().lower().split(",")[0].strip() == "smiles"


def read_smiles_file(path: str | Path) -> SmilesRows:
    """The SMILES of ``path`` (see the module docstring). Raises ``DataError`` naming the file for
    a missing, binary or unreadable file and for a CSV without a ``smiles`` column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such SMILES file")
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as a text file ({type(exc).__name__}: {exc}); give a text file "
                        f"with one SMILES per line, or a CSV with a 'smiles' column") from None
    out = SmilesRows(str(path))
    if lines and _is_csv(path, lines[0]):
        return _read_csv(path, out)
    for line_no, line in enumerate(lines, start=1):
        if not line.strip().startswith("#"):
            out.add(line_no, line)
    return out


def _read_csv(path: Path, out: SmilesRows) -> SmilesRows:
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read as a CSV table ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None
    column = next((c for c in df.columns if str(c).strip().lower() == "smiles"), None)
    if column is None:
        raise DataError(f"{path}: no 'smiles' column (columns: {', '.join(map(str, df.columns))}); name the "
                        f"column holding the SMILES 'smiles', or give a text file with one SMILES per line")
    for i, value in enumerate(df[column].tolist()):
        out.add(i + 2, "" if value is None else str(value))   # the header is line 1
    return out


__all__ = ["SmilesRows", "read_smiles_file", "smiles_arguments"]


def output_table(path: str | Path) -> tuple[str, Path]:
    """``(format, stem)`` of an output table path: ``"parquet"`` for a ``.parquet`` name, else
    ``"csv"``; the stem is the path without a ``.csv``/``.parquet`` suffix, for the files written
    beside it (``<stem>.skipped.csv``, ``<stem>.map.png``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    fmt = "parquet" if suffix == ".parquet" else "csv"
    return fmt, path.with_suffix("") if suffix in (".csv", ".parquet") else path


def write_table(table, path: str | Path) -> None:
    """Write a pandas DataFrame as Parquet (a ``.parquet`` name) or CSV (any other name)."""
    if output_table(path)[0] == "parquet":
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False)

