"""A run's experiment graphs as fixed-size shards: written while records stream in, read while training.

Featurization cuts the record stream (after the record checks) into chunks of ``data.shard_size``
records; chunk ``i`` becomes ``shard-<i>.pt``, a :class:`~cgc_framework.engine.shards.PackedGraphs` of
the chunk's kept graphs (plain tensors), plus ``shard-<i>.json`` (its record ids, skipped records and
omitted subgraphs, the SHA-256 of the ``.pt`` file and the shard key), written last. ``manifest.json``
lists the shards once all exist. The driver holds one chunk at a time (``featurize_on: local``) or the
chunks in flight (``featurize_on: ray``: one Ray task per chunk, on any node of the cluster; the
directory must then be on storage every node reaches, as the run directory already must be).
Both backends run the same per-chunk function, so they write the same bytes (tested).

The shard key hashes everything that determines the graphs (dataset, joins, record limit, leakage
guard and the evaluations it reads, builders, edge sources, schema, shard size). A shard whose
``.json`` carries the current key and whose file matches its hash is reused: an interrupted or
``--resume``-d run featurizes only the chunks it lacks.

:class:`ShardedGraphs` reads the shards lazily (memory-mapped, at most ``max_open`` at a time), and
:class:`WindowedSampler` orders an epoch window by window (a seeded permutation of the shards, then a
seeded permutation of the graphs of each window of ``data.shuffle_window`` shards), so a worker only
touches the shards of the current window: memory is bounded by the window, not the data set. The
order depends on the seed and epoch only; each of ``W`` ranks takes every ``W``-th position, as
:class:`torch.utils.data.DistributedSampler` does, so 1 worker x batch B and W workers x batch B/W
take the same global batches. With one shard the order is exactly ``DistributedSampler``'s.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections import OrderedDict
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch_geometric.data import Batch, HeteroData

from cgc_framework.engine.shards import PackedGraphs
from cgc_framework.plugin.errors import CGCError
from cgc_framework.plugin.records import SkipLog, SkippedRecord

SHARD_FORMAT = 1
MANIFEST = "manifest.json"


class ShardError(CGCError):
    """A shard directory that cannot be read: names the file and how to rebuild it."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


# -- writing ---------------------------------------------------------------------------------------

def write_shard(directory: Path, index: int, key: str, results: Iterable[tuple[str, Any, Any, list]],
                builder_state: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write chunk ``index`` from its build results ``(record id, graph or None, RecordRejected or
    None, omitted SkippedRecords)`` (one per record, in record order); returns the shard's metadata
    (what ``shard-<i>.json`` holds, without the ids). A chunk whose records were all skipped gets
    metadata and no ``.pt`` file. ``builder_state()``, called once the chunk is built, gives the
    builders' state so far (``featurize.builder_states``), kept in the metadata."""
    graphs: list[HeteroData] = []
    ids: list[str] = []
    skips, omitted = SkipLog(), SkipLog()
    records = 0
    for record_id, graph, rejected, omissions in results:
        records += 1
        omitted.entries.extend(omissions)
        if rejected is None:
            graphs.append(graph)
            ids.append(record_id)
        else:
            skips.add(record_id, rejected.component, rejected.field, rejected.value, rejected.reason)
    name = shard_name(index)
    pt = directory / f"{name}.pt"
    sha = None
    if graphs:
        buffer = io.BytesIO()   # not the temporary file: torch.save names its archive after the file
        PackedGraphs.from_graphs(graphs).save(buffer)
        _write_atomic(pt, lambda p: p.write_bytes(buffer.getbuffer()))
        sha = hashlib.sha256(buffer.getbuffer()).hexdigest()
    else:
        pt.unlink(missing_ok=True)
    meta = {"format": SHARD_FORMAT, "key": key, "index": index, "records": records, "graphs": len(graphs),
            "sha256": sha, "skipped": [list(astuple(e)) for e in skips.entries],
            "omitted": [list(astuple(e)) for e in omitted.entries],
            "builder_state": builder_state() if builder_state is not None else {}}
    _write_atomic(directory / f"{name}.json",
                  lambda p: p.write_text(json.dumps({**meta, "ids": ids})))
    return meta


def reusable_shard(directory: Path, index: int, key: str, *, verify: bool = True) -> dict[str, Any] | None:
    """The metadata of shard ``index`` when it was written under ``key`` and its file is intact
    (SHA-256 checked when ``verify``); ``None`` otherwise (the chunk is rebuilt)."""
    name = shard_name(index)
    try:
        meta = json.loads((directory / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or meta.get("format") != SHARD_FORMAT:
        return None
    pt = directory / f"{name}.pt"
    if meta["graphs"]:
        if not pt.is_file() or (verify and file_sha256(pt) != meta["sha256"]):
            return None
    meta.pop("ids", None)
    return {**meta, "reused": True}


def write_manifest(directory: Path, key: str, shard_size: int, metas: list[dict[str, Any]],
                   records_read: int) -> None:
    """List the shards (in order) once every one exists; :class:`ShardedGraphs` opens this file."""
    manifest = {"format": SHARD_FORMAT, "key": key, "shard_size": shard_size, "records_read": records_read,
                "graphs": sum(m["graphs"] for m in metas),
                "shards": [{"name": shard_name(m["index"]), "records": m["records"], "graphs": m["graphs"],
                            "sha256": m["sha256"]} for m in metas]}
    _write_atomic(directory / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=1)))


def clear_shards(directory: Path) -> None:
    """Remove every shard file of ``directory`` (before a run writes new ones)."""
    for p in list(directory.glob("shard-*.pt")) + list(directory.glob("shard-*.json")):
        p.unlink(missing_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)


# -- reading ---------------------------------------------------------------------------------------

class ShardedGraphs(Sequence[HeteroData]):
    """The graphs of a shard directory as one sequence, read lazily.

    ``graphs[i]`` is graph ``i`` in record order; :meth:`collate` builds a mini-batch of any indices
    (equal to ``Batch.from_data_list`` of those graphs). At most ``max_open`` shards are open
    (memory-mapped) at once, least recently used closed first.
    """

    def __init__(self, directory: str | Path, *, max_open: int = 2, mmap: bool = True):
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ShardError(f"{path}: not a readable shard manifest ({type(exc).__name__}: {exc}); "
                             f"featurize again (cgc-run writes <run>/data/shards/)") from None
        if manifest.get("format") != SHARD_FORMAT:
            raise ShardError(f"{path}: shard format {manifest.get('format')}, this version reads {SHARD_FORMAT}; "
                             f"delete the directory to featurize again")
        self.key: str = manifest["key"]
        self.records_read: int = manifest["records_read"]
        entries = [s for s in manifest["shards"] if s["graphs"]]
        self.names = [s["name"] for s in entries]
        self.shard_counts = [int(s["graphs"]) for s in entries]
        self.offsets = np.concatenate([[0], np.cumsum(self.shard_counts, dtype=np.int64)]).astype(np.int64)
        self.max_open = max(1, max_open)
        self.mmap = mmap
        self._open: OrderedDict[int, PackedGraphs] = OrderedDict()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def shard(self, s: int) -> PackedGraphs:
        """Shard ``s`` (opened on first use; the least recently used one is closed beyond ``max_open``)."""
        if s in self._open:
            self._open.move_to_end(s)
            return self._open[s]
        path = self.directory / f"{self.names[s]}.pt"
        try:
            packed = PackedGraphs.load(path, mmap=self.mmap)
        except Exception as exc:  # noqa: BLE001 - truncated, deleted, not a shard: name it
            raise ShardError(f"{path}: cannot read this shard ({type(exc).__name__}: {str(exc)[:200]}); "
                             f"run again with --resume to rebuild the damaged shards") from None
        self._open[s] = packed
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return packed

    def _locate(self, idx: np.ndarray) -> np.ndarray:
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"graph index out of range for {n} graphs")
        return np.searchsorted(self.offsets, idx % n if n else idx, side="right") - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"graph {i} of {n}")
        i %= n
        s = int(self._locate(np.array([i]))[0])
        return self.shard(s)[i - int(self.offsets[s])]

    def __iter__(self) -> Iterator[HeteroData]:
        for s in range(len(self.names)):
            yield from self.shard(s)

    def collate(self, indices: Sequence[int] | torch.Tensor) -> Batch:
        """Mini-batch of graphs ``indices`` (any order, across shards), equal to PyG's
        ``Batch.from_data_list``. Graphs of several shards are gathered per shard, joined, then
        collated in the requested order."""
        idx = np.asarray(indices.tolist() if isinstance(indices, torch.Tensor) else list(indices), dtype=np.int64)
        idx = idx % len(self) if len(self) else idx
        where = self._locate(idx)
        shards = np.unique(where)
        if shards.size == 1:
            s = int(shards[0])
            return self.shard(s).collate(idx - self.offsets[s])
        parts, picked = [], []
        for s in shards.tolist():
            sel = np.nonzero(where == s)[0]
            parts.append(self.shard(s).take(idx[sel] - self.offsets[s]))
            picked.append(sel)
        position = np.empty(idx.size, dtype=np.int64)
        position[np.concatenate(picked)] = np.arange(idx.size)
        return PackedGraphs.concat(parts).collate(position)

    @property
    def record_ids(self) -> list[str]:
        """The record id of every graph, in order (read from the shards' ``.json`` files)."""
        ids: list[str] = []
        for name in self.names:
            ids.extend(json.loads((self.directory / f"{name}.json").read_text())["ids"])
        return ids


# -- epoch order -----------------------------------------------------------------------------------

@dataclass
class WindowedSampler:
    """The per-rank graph order of an epoch, ``DistributedSampler``-compatible (``set_epoch``,
    ``__iter__``, ``__len__``; ``drop_last=False`` padding with the order's first indices).

    Args:
        counts: graphs per shard, in shard order.
        window: shards shuffled together (``data.shuffle_window``).
    """

    counts: Sequence[int]
    num_replicas: int = 1
    rank: int = 0
    seed: int = 0
    window: int = 8
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    def global_order(self) -> np.ndarray:
        """The epoch's order of all graphs (independent of the number of ranks)."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        if len(self.counts) <= 1:   # DistributedSampler's permutation, exactly
            return torch.randperm(self.total, generator=g).numpy()
        offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        shards = torch.randperm(len(self.counts), generator=g).numpy()
        out = []
        for w in range(0, len(shards), max(1, self.window)):
            members = np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in shards[w:w + self.window]])
            out.append(members[torch.randperm(members.size, generator=g).numpy()])
        return np.concatenate(out)

    def __len__(self) -> int:
        return math.ceil(self.total / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()
        size = len(self) * self.num_replicas
        if size > order.size:   # pad with the first indices (repeated if needed), as DistributedSampler
            order = np.concatenate([order, np.resize(order, size - order.size)])
        return iter(order[self.rank:size:self.num_replicas].tolist())


def skipped_records(rows: Iterable[Sequence[str]]) -> list[SkippedRecord]:
    """``shard-<i>.json`` rows as :class:`~cgc_framework.plugin.records.SkippedRecord` entries."""
    return [SkippedRecord(*map(str, r)) for r in rows]


__all__ = ["ShardedGraphs", "WindowedSampler", "ShardError", "write_shard", "reusable_shard", "write_manifest",
           "clear_shards", "shard_name", "MANIFEST"]
