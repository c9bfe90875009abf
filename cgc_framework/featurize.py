"""Records -> experiment graphs: run each modality's builder and each edge source on every record.

A record that a component rejects (``RecordError``) or that lacks a modality's field is added to
the :class:`~cgc_framework.records.SkipLog` and left out of training; everything else that goes
wrong is a :class:`~cgc_framework.errors.PluginError` naming the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from .compose import Plan
from .errors import DataError, PluginError
from .records import Record, RecordError, SkipLog


@dataclass
class BuiltData:
    """The experiment graphs of a run, with the ids of their records."""

    graphs: list[HeteroData]
    record_ids: list[str]
    records_read: int
    skips: SkipLog = field(default_factory=SkipLog)
    omitted: SkipLog = field(default_factory=SkipLog)
    """Subgraphs of optional modalities (``required: false``) left out of kept records."""


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def build_record(plan: Plan, record: Record, omitted: SkipLog | None = None) -> HeteroData:
    """The experiment graph of one record.

    Raises ``_Rejected`` (component, field, value, reason) when a required modality's value is
    missing or rejected, or an edge source rejects the record; optional modalities' omissions are
    added to ``omitted`` instead.
    """
    data = HeteroData()
    for name, mp in plan.modalities.items():
        field_name = mp.modality.record_field
        value = record.fields.get(field_name)
        info = mp.builder_spec.info
        try:
            if _is_missing(value):
                raise _Rejected(info.name, field_name, value,
                                f"record has no '{field_name}' value (needed by modality '{name}')")
            try:
                with plan.registry.guard(info, f"building record '{record.id}'"):
                    fragment = mp.builder.build(value)
            except RecordError as exc:
                raise _Rejected(info.name, field_name, value, str(exc)) from None
        except _Rejected as rej:
            if mp.required:
                raise
            if omitted is not None:
                omitted.add(record.id, rej.component, rej.field, rej.value, rej.reason)
            continue
        for store in fragment.stores:
            key = getattr(store, "_key", None)
            if key is None:
                for k, v in store.items():
                    data[k] = v
                continue
            for k, v in store.items():
                data[key][k] = v
    for spec, source in plan.edge_sources.values():
        try:
            with plan.registry.guard(spec.info, f"adding edges for record '{record.id}'"):
                source.add_edges(record, data)
        except RecordError as exc:
            raise _Rejected(spec.info.name, "", record.id, str(exc)) from None
    plan.schema.conform(data)
    try:
        plan.schema.validate(data, where=f"record '{record.id}'")
    except ValueError as exc:
        raise PluginError(f"the graph built for record '{record.id}' breaks the declared schema: {exc}. "
                          f"This is a bug in one of: "
                          + ", ".join(f"{s.info.name} ({s.info.origin})" for s in plan.components()[1:])
                          ) from None
    return data


class _Rejected(Exception):
    def __init__(self, component: str, field: str, value: object, reason: str):
        super().__init__(reason)
        self.component, self.field, self.value, self.reason = component, field, value, reason


def build_graphs(plan: Plan, *, progress: bool = True) -> BuiltData:
    """Read every record of the plan's dataset and build its experiment graph."""
    skips, omitted = SkipLog(), SkipLog()
    graphs: list[HeteroData] = []
    ids: list[str] = []
    limit = plan.config.data.max_records
    ds_info = plan.dataset_spec.info
    read = 0
    with plan.registry.guard(ds_info, "reading records"):
        records: Iterable[Record] = plan.dataset.records(skips)
        bar = tqdm(records, desc="featurizing", unit="rec", disable=not progress, leave=False)
        for record in bar:
            read += 1
            try:
                graphs.append(build_record(plan, record, omitted))
                ids.append(record.id)
            except _Rejected as rej:
                skips.add(record.id, rej.component, rej.field, rej.value, rej.reason)
            if limit is not None and read >= limit:
                break
    if not graphs:
        first = "; ".join(f"{e.record_id}: {e.reason}" for e in skips.entries[:5])
        raise DataError(
            f"no usable records: dataset '{ds_info.name}' gave {read} records and "
            f"{len(skips)} were skipped ({first or 'the dataset is empty'}). "
            f"Check data.dataset.params in the config and the input files.")
    return BuiltData(graphs, ids, read, skips, omitted)
