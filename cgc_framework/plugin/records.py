"""Experiment records and the log of records that were skipped.

A :class:`Record` is one unit of input (a treated well, a compound, a structure file). Components
that cannot use a record raise :class:`RecordError`; the framework then adds it to the run's
:class:`SkipLog`, which is written to ``skipped_records.csv`` and summarised in ``summary.md``.
Nothing is dropped silently.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


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
