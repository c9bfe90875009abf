"""Records -> experiment graphs: run each modality's builder and each edge source on every record.

A record that a component rejects (``RecordError``) or that lacks a modality's field is added to
the :class:`~cgc_framework.plugin.records.SkipLog` and left out of training; everything else that goes
wrong is a :class:`~cgc_framework.plugin.errors.PluginError` naming the plugin.

Records are read in chunks of :data:`CHUNK`; a builder with its own ``build_many`` (e.g. the RDKit
molecule builder) builds a chunk's values in one call (:func:`prebuild`), others value by value.
Builders' subgraphs go through the :class:`~cgc_framework.engine.cache.GraphCache` when
``data.cache_dir`` (or the ``CGC_FEATURE_CACHE`` environment variable) names a folder, and
``data.featurize_workers: N`` builds records in ``N`` forked processes (records are read, and
skips reported, in the driver, in record order: the result is identical to ``N = 0``).
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from cgc_framework.engine.cache import CACHE_ENV, CachedRejection, GraphCache, cache_key
from cgc_framework.engine.validate import COMPONENT as RECORD_CHECK
from cgc_framework.engine.validate import RecordChecks, Rejection
from cgc_framework.plugin.contracts import GraphBuilder
from cgc_framework.plugin.errors import DataError, PluginError
from cgc_framework.plugin.graph import SchemaViolation, graph_from_dict, graph_to_dict
from cgc_framework.plugin.plan import Plan
from cgc_framework.plugin.records import Record, RecordError, RecordRejected, SkipLog, field_problem


@dataclass
class BuiltData:
    """The experiment graphs of a run, with the ids of their records."""

    graphs: Sequence[HeteroData]
    """A list, a :class:`~cgc_framework.engine.shards.PackedGraphs` when built with ``pack``, or the
    :class:`~cgc_framework.engine.shardset.ShardedGraphs` of a run's shards."""
    ids: list[str] | None
    """The record ids (``None``: read from the shards on first use of :attr:`record_ids`)."""
    records_read: int
    skips: SkipLog = field(default_factory=SkipLog)
    omitted: SkipLog = field(default_factory=SkipLog)
    """Subgraphs of optional modalities (``required: false``) left out of kept records."""
    shards_by_node: dict[str, int] = field(default_factory=dict)
    """Shards built per Ray node id (``local``: on this machine; ``reused``: already there)."""

    @property
    def record_ids(self) -> list[str]:
        """The record id of each graph, in order."""
        if self.ids is None:
            self.ids = list(self.graphs.record_ids)  # type: ignore[attr-defined]
        return self.ids


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
    fragment = _cached(cache, name, key)
    if fragment is None:
        try:
            fragment = mp.builder.build(value)
        except RecordError as exc:
            fragment = exc
        _store(cache, name, key, fragment)
    if isinstance(fragment, RecordError):
        raise fragment
    return fragment


def _cached(cache: GraphCache, name: str, key: str) -> HeteroData | RecordError | None:
    """The cached subgraph, the cached rejection as a ``RecordError``, or ``None`` on a miss."""
    try:
        return cache.get(name, key)
    except CachedRejection as rej:
        return RecordError(rej.reason)


def _store(cache: GraphCache, name: str, key: str, result: HeteroData | RecordError) -> None:
    if isinstance(result, RecordError):
        cache.put_rejection(name, key, str(result))
    else:
        cache.put(name, key, result)


CHUNK = 256
"""Records read ahead and built together: builders that override ``build_many`` get one call
per modality and chunk (see :func:`prebuild`)."""


def batches(builder: GraphBuilder) -> bool:
    """Whether ``builder`` overrides ``build_many`` at or below the class that defines its
    ``build`` (a subclass that overrides only ``build`` is built value by value, so its ``build``
    is what runs)."""
    mro = type(builder).__mro__
    owner_many = next(c for c in mro if "build_many" in c.__dict__)
    owner_build = next(c for c in mro if "build" in c.__dict__)
    return owner_many is not GraphBuilder and issubclass(owner_many, owner_build)


def build_values(builder: GraphBuilder, values: list[Any]) -> list[HeteroData | RecordError]:
    """``builder``'s subgraphs of ``values`` (a ``RecordError`` in place of each rejected value):
    one ``build_many`` call when the builder :func:`batches`, else ``build`` per value."""
    return builder.build_many(values) if batches(builder) else GraphBuilder.build_many(builder, values)


def prebuild(plan: Plan, records: list[Record], cache: GraphCache | None
             ) -> dict[str, list[HeteroData | RecordError | None]]:
    """Per modality whose builder :func:`batches`: each record's subgraph or
    rejection, built with one ``build_many`` call over the values the cache does not hold
    (``None`` where the record has no value; :func:`build_record` reports that).

    A modality whose ``build_many`` raises anything but ``RecordError`` is left out, so that
    :func:`build_record` builds it value by value and the error names the record.
    """
    out: dict[str, list[HeteroData | RecordError | None]] = {}
    for name, mp in plan.modalities.items():
        if not batches(mp.builder):
            continue
        builder_name = mp.builder_spec.info.name
        values = [r.fields.get(mp.modality.record_field) for r in records]
        results: list[HeteroData | RecordError | None] = [None] * len(records)
        keys: dict[int, str] = {}
        todo: list[int] = []
        for i, value in enumerate(values):
            if _is_missing(value):
                continue
            key = cache_key(builder_name, mp.builder, value) if cache is not None else None
            if key is not None:
                results[i] = _cached(cache, builder_name, key)
                if results[i] is not None:
                    continue
                keys[i] = key
            todo.append(i)
        try:
            built = mp.builder.build_many([values[i] for i in todo]) if todo else []
        except Exception:  # noqa: BLE001 - build_record retries value by value and names the record
            continue
        for i, result in zip(todo, built):
            results[i] = result
            if i in keys:
                _store(cache, builder_name, keys[i], result)
        out[name] = results
    return out


def build_record(plan: Plan, record: Record, omitted: SkipLog | None = None,
                 cache: GraphCache | None = None,
                 prebuilt: dict[str, HeteroData | RecordError] | None = None) -> HeteroData:
    """The experiment graph of one record.

    ``prebuilt`` maps a modality name to this record's subgraph (or rejection) already built by
    :func:`prebuild`; other modalities are built here.

    Raises ``RecordRejected`` (component, field, value, reason) when a record field breaks its
    documented convention (:data:`~cgc_framework.plugin.records.FIELD_CONVENTIONS`), a required
    modality's value is missing or rejected, or an edge source rejects the record; optional
    modalities' omissions are added to ``omitted`` instead.
    """
    problem = field_problem(record.fields)
    if problem is not None:
        raise RecordRejected(RECORD_CHECK, *problem)
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
                fragment = prebuilt.get(name) if prebuilt else None
                if isinstance(fragment, RecordError):
                    raise fragment
                if fragment is None:
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
    except SchemaViolation as exc:
        spec = plan.component(plan.declared_by[exc.type_key])
        raise PluginError(f"the graph built for record '{record.id}' breaks the declared schema: {exc}. "
                          f"{'Node' if isinstance(exc.type_key, str) else 'Edge'} type {exc.type_key!r} "
                          f"is declared by {spec.info.kind} '{spec.info.name}' ({spec.key}) from "
                          f"{spec.info.origin}: a bug in that component",
                          distribution=spec.info.distribution, entry_point=spec.info.entry_point,
                          component=f"{spec.info.kind}:{spec.info.name}") from None
    return data


def build_graphs(plan: Plan, *, progress: bool = True, workers: int | None = None,
                 keep_graphs: bool = True) -> BuiltData:
    """Read every record of the plan's dataset (``data.max_records`` honoured) and build its
    experiment graph, in memory (a run writes shards instead:
    :func:`~cgc_framework.engine.shard_build.build_shards`).

    Args:
        workers: processes to build in (default ``data.featurize_workers``); ``0``/``1`` builds
            in-process. Parallel building needs the ``fork`` start method (Linux); elsewhere it
            builds in-process.
    """
    skips = SkipLog()
    ds_info = plan.dataset_spec.info
    with plan.registry.guard(ds_info, "reading records"):
        records = _limited(plan.dataset.records(skips), plan.config.data.max_records)
        return build_records(plan, records, progress=progress, workers=workers, skips=skips,
                             source=f"dataset '{ds_info.name}'", keep_graphs=keep_graphs)


def build_records(plan: Plan, records: Iterable[Record], *, progress: bool = False, workers: int | None = None,
                  skips: SkipLog | None = None, source: str = "the records given", keep_graphs: bool = True
                  ) -> BuiltData:
    """Build the experiment graphs of ``records`` (any iterable; read lazily) with the plan's
    builders, edge sources, cache and schema. Every record first passes the record checks
    (:class:`~cgc_framework.engine.validate.RecordChecks`: unique ids, field conventions). Rejected
    records go to ``skips`` (a new log unless given); ``DataError`` (with ``skips``) when no record
    could be built. ``keep_graphs=False``: as :func:`build_graphs`."""
    skips = SkipLog() if skips is None else skips
    omitted = SkipLog()
    graphs: list[HeteroData] = []
    ids: list[str] = []
    cache = open_cache(plan)
    workers = plan.config.data.featurize_workers if workers is None else workers
    parallel = workers > 1 and "fork" in multiprocessing.get_all_start_methods()
    read = 0
    items = RecordChecks().filter(records)
    results = _build_parallel(plan, items, cache, workers) if parallel else _build_serial(plan, items, cache)
    bar = tqdm(results, desc="featurizing", unit="rec", disable=not progress, leave=False)
    for record_id, graph, rejected, omissions in bar:
        read += 1
        omitted.entries.extend(omissions)
        if rejected is not None:
            skips.add(record_id, rejected.component, rejected.field, rejected.value, rejected.reason)
        else:
            if keep_graphs:
                graphs.append(graph)
            ids.append(record_id)
    if not ids:
        raise no_usable_records(skips, read, source)
    return BuiltData(graphs, ids, read, skips, omitted)


def no_usable_records(skips: SkipLog, read: int, source: str) -> DataError:
    """The error when every record of ``source`` was skipped (the first reasons named)."""
    first = "; ".join(f"{e.record_id}: {e.reason}" for e in skips.entries[:5])
    by = ", ".join(f"{c} {n}" for c, n in skips.counts().most_common())
    detail = f"by {by}; the first {min(5, len(skips))}: {first}" if first else "there were none"
    return DataError(f"no usable records: {source} gave {read} records and {len(skips)} were skipped ({detail}). "
                     f"Check data.dataset.params in the config and the input files.", skips=skips)


def _limited(records: Iterable[Record], limit: int | None) -> Iterator[Record]:
    for i, record in enumerate(records):
        yield record
        if limit is not None and i + 1 >= limit:
            return


_Result = tuple[str, Any, Any, list]
"""``(record id, graph or None, RecordRejected or None, omitted SkippedRecords)``."""


def _chunks(records: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _build_chunk(plan: Plan, items: list[Record | Rejection], cache: GraphCache | None) -> list[_Result]:
    """Results of ``items`` in order; a :data:`Rejection` (failed the record checks) is not built."""
    records = [r for r in items if isinstance(r, Record)]
    prebuilt = prebuild(plan, records, cache)
    out: list[_Result] = []
    k = -1
    for record in items:
        if not isinstance(record, Record):
            out.append((record[0], None, RecordRejected(*record[1:]), []))
            continue
        k += 1
        omitted = SkipLog()
        mine = {name: results[k] for name, results in prebuilt.items() if results[k] is not None}
        try:
            out.append((record.id, build_record(plan, record, omitted, cache, mine), None, omitted.entries))
        except RecordRejected as rej:
            out.append((record.id, None, rej, omitted.entries))
    return out


def builder_states(plan: Plan) -> dict[str, dict[str, Any]]:
    """``{modality: GraphBuilder.state()}`` of the plan's builders that recorded something."""
    return {name: state for name, mp in plan.modalities.items() if (state := mp.builder.state())}


def merge_builder_states(plan: Plan, states: dict[str, dict[str, Any]]) -> None:
    """Hand the states of a worker's builders (:func:`builder_states`) to the plan's."""
    for name, state in states.items():
        plan.modalities[name].builder.merge_state(state)


def _build_serial(plan: Plan, records: Iterable[Record | Rejection], cache: GraphCache | None
                  ) -> Iterator[_Result]:
    for chunk in _chunks(records, CHUNK):
        yield from _build_chunk(plan, chunk, cache)


# -- process-parallel building (fork: the children inherit the composed plan) -----------------

_WORKER_STATE: dict[str, Any] = {}


def _worker_init() -> None:
    torch.set_num_threads(1)


def _worker_build(records: list[Record | Rejection]) -> list[tuple]:
    """Build a chunk of records in a child; tensors travel as NumPy arrays (no shared-memory
    handles). An error ends the chunk's list; else the builders' state, if any, does."""
    plan, cache = _WORKER_STATE["plan"], _WORKER_STATE["cache"]
    try:
        results = _build_chunk(plan, records, cache)
    except PluginError as exc:
        return [("error", str(exc), exc.distribution, exc.entry_point, exc.component)]
    except Exception as exc:  # noqa: BLE001 - re-raised in the driver with the records named
        ids = [r.id if isinstance(r, Record) else r[0] for r in (records[0], records[-1])]
        return [("error", f"{type(exc).__name__} while building records '{ids[0]}' to "
                          f"'{ids[1]}': {exc}", None, None, None)]
    out = []
    for rid, graph, rej, omissions in results:
        packed = None if graph is None else {k: {a: t.numpy() for a, t in v.items()}
                                             for k, v in graph_to_dict(graph).items()}
        rej_t = None if rej is None else (rej.component, rej.field, rej.value, rej.reason)
        out.append(("ok", rid, packed, rej_t, omissions))
    if states := builder_states(plan):
        out.append(("state", states))
    return out


def _build_parallel(plan: Plan, records: Iterable[Record | Rejection], cache: GraphCache | None,
                    workers: int) -> Iterator[_Result]:
    _WORKER_STATE.update(plan=plan, cache=cache)
    ctx = multiprocessing.get_context("fork")
    try:
        with ctx.Pool(workers, initializer=_worker_init) as pool:
            for out in (o for chunk in pool.imap(_worker_build, _chunks(records, 32)) for o in chunk):
                if out[0] == "error":
                    raise PluginError(out[1], distribution=out[2], entry_point=out[3], component=out[4])
                if out[0] == "state":
                    merge_builder_states(plan, out[1])
                    continue
                _, rid, packed, rej_t, omissions = out
                graph = None
                if packed is not None:
                    graph = graph_from_dict({k: {a: torch.from_numpy(x) for a, x in v.items()}
                                             for k, v in packed.items()})
                yield rid, graph, (None if rej_t is None else RecordRejected(*rej_t)), omissions
    finally:
        _WORKER_STATE.clear()
