"""Experiment records and the log of records that were skipped.

A :class:`Record` is one unit of input (a treated well, a compound, a structure file). Components
that cannot use a record raise :class:`RecordError`; the framework then adds it to the run's
:class:`SkipLog`, which is written to ``skipped_records.csv`` and summarised in ``summary.md``.
Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import math
import numbers
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class Record:
    """One experiment record.

    Attributes:
        id: stable, human-readable identifier (e.g. ``"SQ00015054:B02"`` or a CSV row number);
            used in skip reports and to join results back to the source.
        fields: values read by modalities and edge sources, keyed by field name
            (``"smiles"``, ``"dose_um"``, ...).
    """

    id: str
    fields: Mapping[str, Any]


class RecordError(ValueError):
    """Raised by a dataset, builder or edge source for one bad record; the run continues."""


class RecordRejected(Exception):
    """A record that cannot be turned into an experiment graph: which component rejected which
    field's value, and why (one row of ``skipped_records.csv``). Raised by
    :meth:`~cgc_framework.plugin.plan.Plan.build_record`."""

    def __init__(self, component: str, field: str, value: object, reason: str):
        super().__init__(reason)
        self.component, self.field, self.value, self.reason = component, field, value, reason


@dataclass(frozen=True)
class SkippedRecord:
    record_id: str
    component: str
    field: str
    value: str
    reason: str


@dataclass
class SkipLog:
    """Every record skipped during a run, with the component and the reason."""

    entries: list[SkippedRecord] = field(default_factory=list)

    def add(self, record_id: str, component: str, field: str, value: Any, reason: str) -> None:
        text = "" if value is None else str(value)
        if len(text) > 120:
            text = text[:117] + "..."
        self.entries.append(SkippedRecord(str(record_id), component, field, text, str(reason)))

    def __len__(self) -> int:
        return len(self.entries)

    def counts(self) -> Counter[str]:
        """Number of skipped records per component."""
        return Counter(e.component for e in self.entries)

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["record_id", "component", "field", "value", "reason"])
            for e in self.entries:
                writer.writerow([e.record_id, e.component, e.field, e.value, e.reason])


# -- record-field conventions -------------------------------------------------------------------


def is_missing(value: object) -> bool:
    """``None`` or a float NaN: the field has no value (a modality's builder is not called)."""
    return value is None or (isinstance(value, float) and value != value)


def dose_problem(value: Any) -> str | None:
    """Why ``value`` is not a dose in uM (a finite number > 0), or ``None`` when it is one."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "text" if isinstance(value, str) else type(value).__name__
        return (f"dose_um is {value!r} ({kind}), not a number: a dose is a finite number > 0 in uM; "
                f"fix this record's dose in the input")
    v = float(value)
    if math.isnan(v):
        return ("dose_um is NaN (an empty or non-numeric dose cell?): a dose is a finite number > 0 "
                "in uM; fix this record's dose in the input")
    if not math.isfinite(v) or v <= 0:
        return (f"dose_um is {v:g}: a dose must be a finite number > 0 (uM); fix the dose of this "
                f"record in the input")
    return None


_CXSMILES = re.compile(r"\S+[ \t]+\|[^|]*\|")
"""A SMILES followed by a CXSMILES extension (``C[C@H](O)CC |&1:1|``): RDKit reads the extension."""


def smiles_problem(value: Any) -> str | None:
    """Why ``value`` cannot be one SMILES as written, or ``None``.

    A SMILES never contains whitespace: RDKit reads up to the first space or tab and takes the rest
    as the molecule's *name*, so ``"CC O"`` silently builds ethane's fragment ``CC``. Whitespace
    around the SMILES is harmless; a CXSMILES extension after one space (``"CCO |&1:1|"``) is allowed.
    """
    if not isinstance(value, str):
        return f"smiles is {value!r} ({type(value).__name__}), not text"
    text = value.strip()
    if not any(c.isspace() for c in text) or _CXSMILES.fullmatch(text):
        return None
    head, rest = text.split(None, 1)
    return (f"SMILES {value!r} contains whitespace: RDKit would read only {head!r} and take {rest!r} as "
            f"a name, building another molecule. A SMILES has no spaces or tabs: fix the value (a tab "
            f"inside a cell, or a table read with the wrong separator?)")


@dataclass(frozen=True)
class FieldConvention:
    """A documented record field (``docs/graph-conventions.md``, Records) and its check.

    ``check(value)`` returns the reason a present value breaks the convention, or ``None``; a
    missing value (``None``, NaN) is not checked here (a modality that needs it reports it).
    """

    field: str
    meaning: str
    check: Callable[[Any], str | None]


FIELD_CONVENTIONS: tuple[FieldConvention, ...] = (
    FieldConvention("dose_um", "dose in uM: a finite number > 0 (NaN is rejected, not a missing dose)",
                    dose_problem),
    FieldConvention("smiles", "one SMILES: no whitespace inside (a CXSMILES extension ' |...|' is allowed)",
                    smiles_problem),
)
"""Checked for every record before any builder runs (the featurization machinery). A record
breaking one is skipped and counted (component ``record_check``) with the reason."""


def field_problem(fields: Mapping[str, Any]) -> tuple[str, Any, str] | None:
    """``(field, value, reason)`` of the first convention ``fields`` breaks, or ``None``."""
    for conv in FIELD_CONVENTIONS:
        value = fields.get(conv.field)
        if conv.field == "dose_um" and isinstance(value, float) and value != value:
            return conv.field, value, dose_problem(value) or ""        # NaN is no missing dose
        if is_missing(value):
            continue
        reason = conv.check(value)
        if reason is not None:
            return conv.field, value, reason
    return None
