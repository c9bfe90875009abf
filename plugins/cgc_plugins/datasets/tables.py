"""Reading the tables that datasets and edge sources are given (profiles, compounds, targets,
structure indexes), so that every problem names the file — and the column, row or key — and says
how to fix it, instead of surfacing as a pandas exception (which the framework would report as a
bug in the plugin).

- :func:`read_table`: CSV / TSV (optionally ``.gz``) or Parquet; ``DataError`` for a missing, empty
  (0 bytes), binary, wrongly compressed or malformed file; :class:`NonNumericCell` when a column
  read as numbers holds text (callers that can locate the cell catch it).
- :func:`require_columns`: ``DataError`` naming the missing columns, the file's columns and the
  closest match.
"""

from __future__ import annotations

import difflib
import gzip
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from cgc_framework.plugin import DataError


class NonNumericCell(DataError):
    """A column read as numbers holds text (pandas: ``could not convert string to float``)."""


def separator(path: Path) -> str:
    """``"\\t"`` for ``.tsv`` / ``.txt`` (optionally ``.gz``), else ``","``."""
    name = path.name.lower().removesuffix(".gz")
    return "\t" if name.endswith((".tsv", ".txt")) else ","


def read_table(path: str | Path, what: str, *, sep: str | None = None, **kw: Any) -> pd.DataFrame:
    """``path`` as a DataFrame (``kw`` go to ``pd.read_csv``; Parquet takes ``usecols`` and ``nrows``).

    ``what`` names the table in messages (``"profile table"``, ``"compound table"``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); the {what} has no header and no rows: re-create or "
                        f"re-download it")
    try:
        if not path.name.lower().endswith(".parquet"):
            with (gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")) as fh:
                if b"\0" in fh.read(8192):
                    raise DataError(f"{path}: a binary file, not a text {what}: give it as CSV/TSV text "
                                    f"(optionally .gz) or Parquet (.parquet)")
        if path.name.lower().endswith(".parquet"):
            cols = kw.get("usecols")
            df = pd.read_parquet(path, columns=list(cols) if cols is not None and not callable(cols) else None)
            if callable(cols):
                df = df[[c for c in df.columns if cols(c)]]
            return df.head(kw["nrows"]) if kw.get("nrows") is not None else df
        return pd.read_csv(path, sep=sep or separator(path), **kw)
    except DataError:
        raise
    except gzip.BadGzipFile:
        raise DataError(f"{path}: named .gz but not gzip-compressed (a plain text file?): rename it without "
                        f".gz, or compress it (gzip {path.name.removesuffix('.gz')})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: no header row (the {what} is blank); re-create or re-download it") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text table ({exc.reason} at byte {exc.start}: binary, or not UTF-8): "
                        f"give the {what} as CSV/TSV text (optionally .gz) or Parquet") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed {what}: {_first_line(exc)} (a row with more fields than the "
                        f"header? an unclosed quote?); fix the file") from None
    except ValueError as exc:
        if "could not convert" in str(exc) or "Unable to parse" in str(exc):
            raise NonNumericCell(f"{path}: a column read as numbers holds text ({_first_line(exc)})") from None
        raise DataError(f"{path}: cannot read the {what}: {_first_line(exc)}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what} ({type(exc).__name__}: {_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow and friends: name the file, never a traceback
        raise DataError(f"{path}: cannot read the {what} ({type(exc).__name__}: {_first_line(exc)})") from None


def require_columns(path: Path, columns: Iterable[str], needed: Iterable[str], what: str, fix: str = "",
                    sep: str | None = None) -> None:
    """``DataError`` unless every ``needed`` column is among ``columns``; names the missing ones,
    the file's columns and the closest match; ``fix`` says where to change the expectation; ``sep``:
    the separator the table was read with (default: by file name), named when the header is one
    column holding another separator."""
    have = [str(c) for c in columns]
    missing = [c for c in needed if c not in have]
    if not missing:
        return
    lower = {h.lower(): h for h in have}

    def closest(m: str) -> list[str]:
        if m.lower() in lower:
            return [lower[m.lower()]]
        within = sorted((h for h in have if h.lower().endswith(m.lower()) or h.lower().endswith("_" + m.lower())),
                        key=len)
        return within[:1] or difflib.get_close_matches(m, have, n=1, cutoff=0.85)

    close = {m: closest(m) for m in missing}
    hints = "; ".join(f"did you mean '{c[0]}' for '{m}'?" for m, c in close.items() if c)
    if len(have) == 1 and ("," in have[0] or "\t" in have[0] or ";" in have[0]):
        hints = (f"its header is one column {have[0][:60]!r}: the file uses another separator than the one it is "
                 f"read with ({'tab' if (sep or separator(path)) == chr(9) else repr(sep or separator(path))})"
                 f"{'; ' + hints if hints else ''}")
    shown = ", ".join(have[:30]) + (f", ... ({len(have)} columns)" if len(have) > 30 else "")
    raise DataError(f"{path}: the {what} has no column(s) {', '.join(repr(m) for m in missing)}; its columns: "
                    f"{shown}{'; ' + hints if hints else ''}{'. ' + fix if fix else ''}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


__all__ = ["NonNumericCell", "read_table", "require_columns", "separator"]
