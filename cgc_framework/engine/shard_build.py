"""Featurize a run's dataset into shards (:mod:`cgc_framework.engine.shardset`), locally or on a Ray cluster.

``data.featurize_on``:

* ``local`` (the default without ``trainer.ray_address``): this machine builds each chunk, in-process or
  in ``data.featurize_workers`` forked processes;
* ``ray`` (the default with ``trainer.ray_address``): one Ray task per chunk, spread over the cluster's
  nodes (a local Ray instance when there is no address). Each task rebuilds the run's builders and edge
  sources from the resolved config (once per Ray worker process) and writes its shard.

The driver reads records (the dataset, its joins, the leakage guard and the record checks run there,
so ids are checked for uniqueness over the whole stream), cuts them into chunks of ``data.shard_size``
and keeps at most the chunks in flight; every backend builds a chunk with the same function, so the
shards and the skip accounting are the same bytes and rows whatever ran them.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, deque
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm.auto import tqdm

from cgc_framework.engine.featurize import (
    BuiltData,
    _build_chunk,
    _build_parallel,
    _build_serial,
    _chunks,
    _limited,
    builder_states,
    merge_builder_states,
    no_usable_records,
    open_cache,
)
from cgc_framework.engine.shardset import (
    SHARD_FORMAT,
    ShardedGraphs,
    reusable_shard,
    skipped_records,
    write_manifest,
    write_shard,
)
from cgc_framework.engine.validate import RecordChecks
from cgc_framework.plugin.plan import Plan
from cgc_framework.plugin.records import SkipLog

_EXECUTION_KEYS = ("featurize_workers", "featurize_on", "cache_dir", "shuffle_window")
"""``data`` settings that change how graphs are built or read, not what they are."""


def shard_key(plan: Plan) -> str:
    """Hash of everything that determines a run's shards (dataset, joins, record limit, leakage guard
    and the evaluations it reads, builders, edge sources, schema, shard size)."""
    resolved = plan.resolved()
    data = {k: v for k, v in resolved["data"].items() if k not in _EXECUTION_KEYS}
    ident = {"format": SHARD_FORMAT, "data": data, "graph": resolved["graph"], "schema": plan.schema.to_dict(),
             "evaluations": resolved.get("evaluations") if data.get("exclude_evaluation_test_molecules") else None}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


def backend_of(plan: Plan) -> str:
    d = plan.config.data
    return d.featurize_on or ("ray" if plan.config.trainer.ray_address else "local")


def build_shards(plan: Plan, directory: str | Path, *, progress: bool = True, backend: str | None = None,
                 workers: int | None = None, extra_plugins: tuple[Any, ...] = (), verify: bool = True) -> BuiltData:
    """Featurize the plan's dataset into ``directory`` (see the module docstring) and return the
    graphs as :class:`~cgc_framework.engine.shardset.ShardedGraphs` with the merged skip logs.

    Shards already in ``directory`` under the same key (an interrupted or resumed run) are reused,
    after checking their SHA-256 when ``verify``. ``DataError`` when no record could be built."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = plan.config.data
    key = shard_key(plan)
    backend = backend or backend_of(plan)
    skips, built_skips, omitted = SkipLog(), SkipLog(), SkipLog()   # skips: the dataset's, then the shards'
    metas: list[dict[str, Any]] = []
    nodes: Counter[str] = Counter()
    ds_info = plan.dataset_spec.info
    bar = tqdm(desc="featurizing", unit="rec", disable=not progress, leave=False)
    with plan.registry.guard(ds_info, "reading records"):
        items = RecordChecks().filter(_limited(plan.dataset.records(skips), cfg.max_records))
        chunks = ((i, chunk, reusable_shard(directory, i, key, verify=verify))
                  for i, chunk in enumerate(_chunks(items, cfg.shard_size)))
        if backend == "ray":
            done = _ray_shards(plan, chunks, directory, key, extra_plugins)
        else:
            done = _local_shards(plan, chunks, directory, key,
                                 cfg.featurize_workers if workers is None else workers)
        for meta in done:
            metas.append(meta)
            nodes[meta.pop("node", "reused" if meta.get("reused") else "local")] += 1
            built_skips.entries.extend(skipped_records(meta["skipped"]))
            omitted.entries.extend(skipped_records(meta["omitted"]))
            merge_builder_states(plan, meta.get("builder_state", {}))  # a worker's or a reused shard's
            bar.update(meta["records"])
    bar.close()
    skips.entries.extend(built_skips.entries)    # the same order whichever backend read ahead how far
    for stale in list(directory.glob("shard-*.pt")) + list(directory.glob("shard-*.json")):
        if int(stale.name[6:11]) >= len(metas):
            stale.unlink(missing_ok=True)
    read = sum(m["records"] for m in metas)
    write_manifest(directory, key, cfg.shard_size, metas, read)
    graphs = ShardedGraphs(directory, max_open=cfg.shuffle_window + 1)
    if not len(graphs):
        raise no_usable_records(skips, read, f"dataset '{ds_info.name}'")
    return BuiltData(graphs, None, read, skips, omitted, shards_by_node=dict(nodes))


def _local_shards(plan: Plan, chunks: Iterable[tuple[int, list, dict | None]], directory: Path, key: str,
                  workers: int) -> Iterator[dict[str, Any]]:
    import multiprocessing

    cache = open_cache(plan)
    parallel = workers > 1 and "fork" in multiprocessing.get_all_start_methods()
    for index, chunk, reused in chunks:
        if reused is not None:
            yield reused
            continue
        results = _build_parallel(plan, chunk, cache, workers) if parallel else _build_serial(plan, chunk, cache)
        yield write_shard(directory, index, key, results, lambda: builder_states(plan))


# -- Ray backend ---------------------------------------------------------------------------------

_PLANS: dict[str, Plan] = {}
"""Plans rebuilt in a Ray worker process, by snapshot hash (a worker process runs many chunks)."""


def plan_snapshot(plan: Plan, extra_plugins: tuple[Any, ...]) -> dict[str, Any]:
    """What a Ray task needs to rebuild the plan's builders, edge sources and schema: the resolved
    config without the evaluations and joins (records arrive already joined and filtered)."""
    from cgc_framework.engine.registry import env_plugins_dirs

    config = plan.resolved()
    config["evaluations"] = {}
    config["data"] = {**config["data"], "join": [], "exclude_evaluation_test_molecules": False}
    text = json.dumps(config, sort_keys=True, default=str)
    return {"config": config, "base_dir": str(plan.base_dir), "extra_plugins": list(extra_plugins),
            "plugins_dirs": env_plugins_dirs(), "hash": hashlib.sha256(text.encode()).hexdigest()}


def _worker_plan(snapshot: dict[str, Any]) -> Plan:
    plan = _PLANS.get(snapshot["hash"])
    if plan is None:
        from cgc_framework.engine.compose import compose
        from cgc_framework.engine.config import CGCConfig
        from cgc_framework.engine.registry import load_registry

        registry = load_registry(tuple(snapshot["extra_plugins"]), plugins_dirs=snapshot["plugins_dirs"])
        plan = compose(CGCConfig.model_validate(snapshot["config"]), registry, Path(snapshot["base_dir"]),
                       source="<shard task>")
        _PLANS[snapshot["hash"]] = plan
    return plan


def build_chunk_task(snapshot: dict[str, Any], chunk: list, directory: str, index: int, key: str) -> dict[str, Any]:
    """One Ray task: build chunk ``index`` and write its shard (what :func:`_local_shards` does in-process)."""
    import torch

    torch.set_num_threads(1)
    import ray

    plan = _worker_plan(snapshot)
    meta = write_shard(Path(directory), index, key, _build_chunk(plan, chunk, open_cache(plan)),
                       lambda: builder_states(plan))
    return {**meta, "node": ray.get_runtime_context().get_node_id()}


def _ray_shards(plan: Plan, chunks: Iterable[tuple[int, list, dict | None]], directory: Path, key: str,
                extra_plugins: tuple[Any, ...]) -> Iterator[dict[str, Any]]:
    """Submit one task per chunk (at most two per cluster CPU in flight) and yield the shards'
    metadata in chunk order."""
    import ray

    from cgc_framework.engine.orchestrator import ray_session

    with ray_session(plan.config.trainer.ray_address):
        task = ray.remote(num_cpus=1, max_retries=2)(build_chunk_task)
        snapshot = ray.put(plan_snapshot(plan, extra_plugins))
        limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        pending: deque[tuple[str, Any]] = deque()
        for index, chunk, reused in chunks:
            pending.append(("done", reused) if reused is not None else
                           ("ref", task.remote(snapshot, chunk, str(directory), index, key)))
            while len(pending) > limit or (pending and pending[0][0] == "done"):
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())


def _result(entry: tuple[str, Any]) -> dict[str, Any]:
    import ray

    from cgc_framework.plugin.errors import PluginError

    kind, value = entry
    if kind == "done":
        return value
    try:
        return ray.get(value)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else None
        if isinstance(cause, PluginError):
            raise cause from None
        raise PluginError(f"building a shard on the Ray cluster failed: {cause or exc}") from None


__all__ = ["build_shards", "shard_key", "build_chunk_task", "plan_snapshot"]
