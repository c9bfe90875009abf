"""Checks every record passes before any builder runs, whatever components are configured.

One place, applied by the featurization machinery (:mod:`cgc_framework.engine.featurize`) to the
records of a dataset in reading order:

- record ids are unique within a dataset: a repeat (the same plate and well twice, say) is skipped,
  and the reason names the record it repeats (the first occurrence, which is kept);
- every documented record-field convention holds
  (:data:`~cgc_framework.plugin.records.FIELD_CONVENTIONS`: ``dose_um`` a finite number > 0,
  ``smiles`` without whitespace);
- (the fields the configured modalities need are checked where each is built: ``build_record``).

A record that fails is skipped and counted (component :data:`COMPONENT`, the field, its value and
the reason), like any other rejected record: it is in ``skipped_records.csv`` and ``summary.md``.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from cgc_framework.plugin.records import Record, field_problem

COMPONENT = "record_check"
"""The component named in the skip log for records rejected here."""

Rejection = tuple[str, str, str, Any, str]
"""``(record id, component, field, value, reason)`` of a record rejected before building."""


class RecordChecks:
    """The checks above, with the state they need (the ids read so far and where)."""

    def __init__(self) -> None:
        self._first: dict[str, int] = {}
        self.read = 0

    def check(self, record: Record) -> Rejection | None:
        """``None`` when ``record`` passes, else why it does not."""
        self.read += 1
        first = self._first.setdefault(record.id, self.read)
        if first != self.read:
            return (record.id, COMPONENT, "record_id", record.id,
                    f"duplicate record id '{record.id}': record #{self.read} of the dataset repeats record "
                    f"#{first} (the first occurrence, kept); ids must be unique within a dataset "
                    f"(e.g. the same plate and well listed twice): remove or rename the repeat")
        problem = field_problem(record.fields)
        if problem is None:
            return None
        return (record.id, COMPONENT, *problem)

    def filter(self, records: Iterable[Record]) -> Iterator[Record | Rejection]:
        """``records`` in order, each replaced by its :data:`Rejection` when it fails."""
        for record in records:
            yield self.check(record) or record


__all__ = ["COMPONENT", "RecordChecks", "Rejection"]
