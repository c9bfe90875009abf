"""Records -> experiment graphs: run each modality's builder and each edge source on every record.

A record that a component rejects (``RecordError``) or that lacks a modality's field is added to
the :class:`~cgc_framework.records.SkipLog` and left out of training; everything else that goes
wrong is a :class:`~cgc_framework.errors.PluginError` naming the plugin.

Builders' subgraphs go through the :class:`~cgc_framework.cache.GraphCache` when
``data.cache_dir`` (or the ``CGC_FEATURE_CACHE`` environment variable) names a folder, and
``data.featurize_workers: N`` builds records in ``N`` forked processes (records are read, and
skips reported, in the driver, in record order: the result is identical to ``N = 0``).
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from .cache import CACHE_ENV, CachedRejection, GraphCache, cache_key
from .compose import Plan
from .errors import DataError, PluginError
from .graph import graph_from_dict, graph_to_dict
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


def open_cache(plan: Plan) -> GraphCache | None:
    """The run's featurization cache: ``data.cache_dir``, else ``$CGC_FEATURE_CACHE``, else none."""
    root = plan.config.data.cache_dir or os.environ.get(CACHE_ENV)
    return GraphCache(Path(root).expanduser()) if root else None


def _build_fragment(mp: Any, value: Any, cache: GraphCache | None) -> HeteroData:
    """``mp.builder.build(value)`` through the cache (rejections are cached as well)."""
    if cache is None:
        return mp.builder.build(value)
    name = mp.builder_spec.info.name
    key = cache_key(name, mp.builder, value)
    if key is None:
        return mp.builder.build(value)
    try:
        hit = cache.get(name, key)
    except CachedRejection as rej:
        raise RecordError(rej.reason) from None
    if hit is not None:
        return hit
    try:
        fragment = mp.builder.build(value)
    except RecordError as exc:
        cache.put_rejection(name, key, str(exc))
        raise
    cache.put(name, key, fragment)
    return fragment


def build_record(plan: Plan, record: Record, omitted: SkipLog | None = None,
                 cache: GraphCache | None = None) -> HeteroData:
    """The experiment graph of one record.

    Raises ``RecordRejected`` (component, field, value, reason) when a required modality's value is
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
                raise RecordRejected(info.name, field_name, value,
                                f"record has no '{field_name}' value (needed by modality '{name}')")
            try:
                with plan.registry.guard(info, f"building record '{record.id}'"):
                    fragment = _build_fragment(mp, value, cache)
            except RecordError as exc:
                raise RecordRejected(info.name, field_name, value, str(exc)) from None
        except RecordRejected as rej:
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
            raise RecordRejected(spec.info.name, "", record.id, str(exc)) from None
    plan.schema.conform(data)
    try:
        plan.schema.validate(data, where=f"record '{record.id}'")
    except ValueError as exc:
        raise PluginError(f"the graph built for record '{record.id}' breaks the declared schema: {exc}. "
                          f"This is a bug in one of: "
                          + ", ".join(f"{s.info.name} ({s.info.origin})" for s in plan.components()[1:])
                          ) from None
    return data


class RecordRejected(Exception):
    """A record that :func:`build_record` cannot turn into a graph: which component rejected which
    field's value, and why (the row of ``skipped_records.csv``)."""

    def __init__(self, component: str, field: str, value: object, reason: str):
        super().__init__(reason)
        self.component, self.field, self.value, self.reason = component, field, value, reason


def build_graphs(plan: Plan, *, progress: bool = True, workers: int | None = None) -> BuiltData:
    """Read every record of the plan's dataset and build its experiment graph.

    Args:
        workers: processes to build in (default ``data.featurize_workers``); ``0``/``1`` builds
            in-process. Parallel building needs the ``fork`` start method (Linux); elsewhere it
            builds in-process.
    """
    skips, omitted = SkipLog(), SkipLog()
    graphs: list[HeteroData] = []
    ids: list[str] = []
    limit = plan.config.data.max_records
    ds_info = plan.dataset_spec.info
    cache = open_cache(plan)
    workers = plan.config.data.featurize_workers if workers is None else workers
    parallel = workers > 1 and "fork" in multiprocessing.get_all_start_methods()
    read = 0
    with plan.registry.guard(ds_info, "reading records"):
        records: Iterable[Record] = _limited(plan.dataset.records(skips), limit)
        if parallel:
            results = _build_parallel(plan, records, cache, workers)
        else:
            results = (_build_one(plan, r, cache) for r in records)
        bar = tqdm(results, desc="featurizing", unit="rec", disable=not progress, leave=False)
        for record_id, graph, rejected, omissions in bar:
            read += 1
            omitted.entries.extend(omissions)
            if rejected is not None:
                skips.add(record_id, rejected.component, rejected.field, rejected.value, rejected.reason)
            else:
                graphs.append(graph)
                ids.append(record_id)
    if not graphs:
        first = "; ".join(f"{e.record_id}: {e.reason}" for e in skips.entries[:5])
        raise DataError(
            f"no usable records: dataset '{ds_info.name}' gave {read} records and "
            f"{len(skips)} were skipped ({first or 'the dataset is empty'}). "
            f"Check data.dataset.params in the config and the input files.")
    return BuiltData(graphs, ids, read, skips, omitted)


def _limited(records: Iterable[Record], limit: int | None) -> Iterator[Record]:
    for i, record in enumerate(records):
        yield record
        if limit is not None and i + 1 >= limit:
            return


_Result = tuple[str, Any, Any, list]
"""``(record id, graph or None, RecordRejected or None, omitted SkippedRecords)``."""


def _build_one(plan: Plan, record: Record, cache: GraphCache | None) -> _Result:
    omitted = SkipLog()
    try:
        return record.id, build_record(plan, record, omitted, cache), None, omitted.entries
    except RecordRejected as rej:
        return record.id, None, rej, omitted.entries


# -- process-parallel building (fork: the children inherit the composed plan) -----------------

_WORKER_STATE: dict[str, Any] = {}


def _worker_init() -> None:
    torch.set_num_threads(1)


def _worker_build(record: Record) -> tuple:
    """Build one record in a child; tensors travel as NumPy arrays (no shared-memory handles)."""
    plan, cache = _WORKER_STATE["plan"], _WORKER_STATE["cache"]
    try:
        rid, graph, rej, omissions = _build_one(plan, record, cache)
    except PluginError as exc:
        return ("error", str(exc), exc.distribution, exc.entry_point, exc.component)
    except Exception as exc:  # noqa: BLE001 - re-raised in the driver with the record named
        return ("error", f"{type(exc).__name__} while building record '{record.id}': {exc}", None, None, None)
    packed = None if graph is None else {k: {a: t.numpy() for a, t in v.items()}
                                         for k, v in graph_to_dict(graph).items()}
    rej_t = None if rej is None else (rej.component, rej.field, rej.value, rej.reason)
    return ("ok", rid, packed, rej_t, omissions)


def _build_parallel(plan: Plan, records: Iterable[Record], cache: GraphCache | None,
                    workers: int) -> Iterator[_Result]:
    _WORKER_STATE.update(plan=plan, cache=cache)
    ctx = multiprocessing.get_context("fork")
    try:
        with ctx.Pool(workers, initializer=_worker_init) as pool:
            for out in pool.imap(_worker_build, records, chunksize=8):
                if out[0] == "error":
                    raise PluginError(out[1], distribution=out[2], entry_point=out[3], component=out[4])
                _, rid, packed, rej_t, omissions = out
                graph = None
                if packed is not None:
                    graph = graph_from_dict({k: {a: torch.from_numpy(x) for a, x in v.items()}
                                             for k, v in packed.items()})
                yield rid, graph, (None if rej_t is None else RecordRejected(*rej_t)), omissions
    finally:
        _WORKER_STATE.clear()
