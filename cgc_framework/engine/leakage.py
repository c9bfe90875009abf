"""The leakage guard: evaluation molecules are kept out of pretraining.

With ``data.exclude_evaluation_test_molecules`` (on by default), every evaluation of the run lists
the molecules it will score as unseen (:meth:`~cgc_framework.plugin.contracts.Evaluator.held_out_molecules`),
and :class:`HeldOutFilter` drops the pretraining records whose molecule is among them. The
molecule of a record is the value of the run's molecule modality (the modality whose builder
declares a ``molecule``-role node type; :meth:`~cgc_framework.plugin.plan.Plan.molecule_value`),
whatever the dataset or its field names, so a third-party dataset or modality is covered without
configuration.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cgc_framework.plugin.contracts import Dataset, HeldOutMolecules
from cgc_framework.plugin.records import Record, SkipLog
from cgc_framework.plugin.roles import MOLECULE

if TYPE_CHECKING:
    from cgc_framework.plugin.plan import Plan

LEAKAGE_GUARD = "leakage_guard"
"""The component name under which the leakage guard's skips are counted and listed."""


class HeldOutFilter(Dataset):
    """The leakage guard: the run's dataset without the records whose molecule an evaluation of
    the plan holds out (:meth:`~cgc_framework.plugin.contracts.Evaluator.held_out_molecules`).

    The held-out sets are collected lazily, on the first :meth:`records` call (evaluators may read
    benchmark files to list them), so composing a plan stays cheap. Each dropped record is added
    to the :class:`SkipLog` under the component ``leakage_guard`` with the reason
    ``held out: in the <where> of evaluation '<key>' (<evaluator>)``; nothing is dropped silently.
    Every other attribute is the wrapped dataset's.
    """

    def __init__(self, inner: Dataset, plan: Plan):
        self.inner = inner
        self._plan = plan
        self._held: list[tuple[str, str, HeldOutMolecules]] | None = None
        self.dropped = 0
        self.dropped_molecules: set[str] = set()

    def __getattr__(self, name: str) -> Any:  # only reached for attributes not set here
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def held_out(self) -> list[tuple[str, str, HeldOutMolecules]]:
        """``[(evaluation key, evaluator name, HeldOutMolecules)]`` of the evaluations that hold
        molecules out (computed once)."""
        if self._held is None:
            held = []
            plan = self._plan
            for key, spec in plan.evaluations.items():
                evaluator = plan.registry.create("evaluator", spec.info.name, spec.params)
                listing = getattr(evaluator, "held_out_molecules", None)  # duck-typed evaluators: none
                if listing is None:
                    continue
                with plan.registry.guard(spec.info, "listing its held-out molecules"):
                    h = listing(plan)
                if h is not None and h.keys:
                    held.append((key, spec.info.name, h))
            self._held = held
        return self._held

    def records(self, skips: SkipLog) -> Iterator[Record]:
        held = self.held_out()
        self.dropped, self.dropped_molecules = 0, set()
        molecules = self._plan.modality_with_role(MOLECULE)
        if not held or molecules is None:
            yield from self.inner.records(skips)
            return
        field = molecules.modality.record_field
        for record in self.inner.records(skips):
            value = record.fields.get(field)
            reason = mol = None
            if value is not None:
                for key, name, h in held:
                    mol = h.key_of(value)
                    if mol is not None and mol in h.keys:
                        reason = f"held out: in the {h.keys[mol]} of evaluation '{key}' ({name})"
                        break
            if reason is None:
                yield record
                continue
            self.dropped += 1
            self.dropped_molecules.add(mol)  # type: ignore[arg-type]
            skips.add(record.id, LEAKAGE_GUARD, field, value, reason)

    def describe(self) -> dict[str, Any]:
        info = dict(self.inner.describe())
        if self._held:
            sets = "; ".join(f"'{k}' ({n}): {len(h.keys)} molecules" for k, n, h in self._held)
            info["leakage guard (data.exclude_evaluation_test_molecules)"] = (
                f"evaluation molecules held out of pretraining: {sets}; {self.dropped} records of "
                f"{len(self.dropped_molecules)} such molecules left out (listed in skipped_records.csv)")
        return info
