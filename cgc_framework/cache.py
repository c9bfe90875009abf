"""Featurization cache: built subgraphs stored on disk, keyed by what determines them.

The key of one subgraph is the SHA-256 of the builder's registered name, class, ``version`` and
:meth:`~cgc_framework.contracts.GraphBuilder.params_key` plus a hash of the input's *content*:
the bytes of the files a builder names through an optional ``cache_inputs(value) -> list[Path]``
method (a structure file and its sidecars), else the value itself (a SMILES). Bumping the builder
version or changing a parameter therefore changes every key: stale entries are never read.

An entry is ``<root>/<builder>/<key[:2]>/<key>.tensors``: the tensors of
:func:`~cgc_framework.graph.graph_to_dict` as raw bytes after a JSON header
(:func:`write_tensors` / :func:`read_tensors`; no pickle, nothing executable), so reloading needs
neither RDKit nor Biopython. ``torch.load`` costs ~0.75 ms per small file, more than building a
molecule; this format reads one in ~0.05 ms. A rejected input is cached too, as
``<key>.err`` holding the reason. Writes go through a temporary file and ``os.replace``, so
processes featurizing in parallel may share one cache directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch, HeteroData

from .graph import graph_from_dict, graph_to_dict

ENTRY_SUFFIX = ".tensors"
CACHE_ENV = "CGC_FEATURE_CACHE"
"""Environment variable naming the cache directory when the config has no ``data.cache_dir``."""


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_digest(builder: Any, value: Any) -> str | None:
    """Hash of what ``builder`` reads for ``value``; ``None`` when an input file is missing
    (the builder then reports it; nothing is cached)."""
    inputs = getattr(builder, "cache_inputs", None)
    if inputs is not None:
        try:
            return "|".join(file_digest(Path(p)) for p in inputs(value))
        except OSError:
            return None
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(builder_name: str, builder: Any, value: Any) -> str | None:
    """The cache key of ``builder`` applied to ``value`` (64 hex characters) or ``None``."""
    content = content_digest(builder, value)
    if content is None:
        return None
    ident = {"builder": builder_name, "class": f"{type(builder).__module__}.{type(builder).__qualname__}",
             "version": str(getattr(builder, "version", "")), "params": builder.params_key(),
             "content": content}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


_MAGIC = b"CGCTENSORS1\n"
_ALIGN = 8


def write_tensors(fh, d: dict[str, dict[str, torch.Tensor]]) -> None:
    """Write ``{store: {attr: tensor}}`` as: magic line, uint32 header length, JSON header
    (``[store, attr, dtype, shape, offset, nbytes]`` per tensor), padding, the raw bytes (each
    tensor C-contiguous, native byte order, at an 8-byte-aligned offset of the payload)."""
    header, blobs, offset = [], [], 0
    for key, attrs in d.items():
        for attr, t in attrs.items():
            t = t.detach().cpu().contiguous()
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            header.append([key, attr, str(t.dtype).removeprefix("torch."), list(t.shape), offset, len(raw)])
            pad = -len(raw) % _ALIGN
            blobs.append(raw + b"\0" * pad)
            offset += len(raw) + pad
    text = json.dumps(header).encode()
    text += b" " * (-(len(_MAGIC) + 4 + len(text)) % _ALIGN)
    fh.write(_MAGIC + len(text).to_bytes(4, "little") + text)
    for blob in blobs:
        fh.write(blob)


def read_tensors(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Inverse of :func:`write_tensors`; the tensors share one buffer read from ``path``."""
    buf = bytearray(path.read_bytes())
    if not buf.startswith(_MAGIC):
        raise ValueError(f"{path}: not a cgc tensors file")
    start = len(_MAGIC) + 4
    size = int.from_bytes(buf[len(_MAGIC):start], "little")
    base = start + size
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, attr, dtype, shape, offset, nbytes in json.loads(buf[start:base]):
        dt = getattr(torch, dtype)
        if nbytes:
            t = torch.frombuffer(buf, dtype=torch.uint8, count=nbytes, offset=base + offset).view(dt).reshape(shape)
        else:
            t = torch.empty(shape, dtype=dt)
        out.setdefault(key, {})[attr] = t
    return out


class CachedRejection(Exception):
    """The cache holds a rejection for this input; ``reason`` is the builder's message."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class GraphCache:
    """On-disk store of built subgraphs under ``root`` (created on first write)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, builder_name: str, key: str, suffix: str) -> Path:
        return self.root / builder_name / key[:2] / f"{key}{suffix}"

    def get(self, builder_name: str, key: str) -> HeteroData | None:
        """The cached subgraph, ``None`` on a miss; raises :class:`CachedRejection` for a cached
        rejection."""
        path = self._path(builder_name, key, ENTRY_SUFFIX)
        try:
            d = read_tensors(path)
        except FileNotFoundError:
            err = self._path(builder_name, key, ".err")
            if err.is_file():
                self.hits += 1
                raise CachedRejection(err.read_text()) from None
            self.misses += 1
            return None
        self.hits += 1
        return graph_from_dict(d)

    def put(self, builder_name: str, key: str, data: HeteroData) -> None:
        self._write(self._path(builder_name, key, ENTRY_SUFFIX), lambda fh: write_tensors(fh, graph_to_dict(data)))

    def put_rejection(self, builder_name: str, key: str, reason: str) -> None:
        self._write(self._path(builder_name, key, ".err"), lambda fh: fh.write(reason.encode()))

    def _write(self, path: Path, writer) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                writer(fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.root.rglob(f"*{ENTRY_SUFFIX}")) if self.root.is_dir() else 0


# -- packed shards: many graphs as concatenated tensors + offsets -----------------------------
#
# A shard is ``torch.save`` of plain tensors (read with ``weights_only=True``, optionally
# memory-mapped): per store key (node type, ``"src|rel|dst"``, ``"__graph__"``) and attribute the
# graphs' tensors concatenated along their cat dimension (1 for ``edge_index``, else 0) plus an
# int64 offsets vector ``<attr>__ptr`` ``[G + 1]``; per node type ``__nodes__ptr`` ``[G + 1]`` holds
# the node offsets. ``edge_index`` keeps each graph's local node numbering.

PACKED_FORMAT = 2
_NODES = "__nodes__ptr"


def _cat_dim(attr: str) -> int:
    return 1 if attr == "edge_index" else 0


def _ptr(sizes: list[int]) -> torch.Tensor:
    out = torch.zeros(len(sizes) + 1, dtype=torch.long)
    if sizes:
        torch.cumsum(torch.tensor(sizes, dtype=torch.long), 0, out=out[1:])
    return out


class PackedGraphs:
    """``G`` graphs stored as concatenated tensors plus offsets (a sequence of ``HeteroData``).

    ``packed[i]`` materializes graph ``i`` (views into the shard's tensors); :meth:`collate`
    builds a mini-batch of several graphs directly from the concatenated tensors, equal to
    ``torch_geometric.data.Batch.from_data_list([packed[i] for i in indices])`` (same tensors,
    ``batch``/``ptr`` vectors, ``num_graphs``, slice and increment dictionaries) without creating
    one ``HeteroData`` per graph. Every graph must have the same store keys and attributes (as a
    run's graphs do after :meth:`~cgc_framework.graph.GraphSchema.conform`).
    """

    def __init__(self, tensors: dict[str, dict[str, torch.Tensor]], count: int):
        self.tensors = tensors
        self.count = count
        self._kinds = {k: ("graph" if k == "__graph__" else "edge" if "|" in k else "node") for k in tensors}

    # -- construction / IO --------------------------------------------------------------------
    @classmethod
    def from_graphs(cls, graphs: list[HeteroData]) -> "PackedGraphs":
        dicts = [graph_to_dict(g) for g in graphs]
        packed: dict[str, dict[str, torch.Tensor]] = {}
        if dicts:
            first = dicts[0]
            layout = {k: set(v) for k, v in first.items()}
            for i, d in enumerate(dicts):
                if {k: set(v) for k, v in d.items()} != layout:
                    diff = sorted(set(layout) ^ set(d)) or sorted(
                        f"{k}.{a}" for k in layout for a in layout[k] ^ set(d.get(k, {})))
                    raise ValueError(f"cannot pack graphs with different stores/attributes: graph {i} "
                                     f"differs from graph 0 in {', '.join(diff[:5])}")
            for key, attrs in first.items():
                if "|" not in key and key != "__graph__":
                    packed.setdefault(key, {})[_NODES] = _ptr([int(g[key].num_nodes or 0) for g in graphs])
                for attr in attrs:
                    dim = _cat_dim(attr)
                    parts = [d[key][attr] for d in dicts]
                    packed.setdefault(key, {})[attr] = torch.cat(parts, dim=dim)
                    packed[key][f"{attr}__ptr"] = _ptr([p.size(dim) for p in parts])
        return cls(packed, len(dicts))

    def save(self, path: str | Path) -> None:
        """Write the shard (plain tensors; ``torch.load(weights_only=True)`` reads it)."""
        torch.save({"format": torch.tensor([PACKED_FORMAT]), "count": torch.tensor([self.count]),
                    "graphs": self.tensors}, path)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> "PackedGraphs":
        """Read a shard written by :meth:`save`; ``mmap`` maps the file instead of reading it
        (pages are read when a batch touches them). Needs neither RDKit nor Biopython."""
        blob = torch.load(path, weights_only=True, mmap=mmap)
        fmt = int(blob.get("format", torch.tensor([1]))[0])
        if fmt != PACKED_FORMAT:
            raise ValueError(f"{path}: packed shard format {fmt}, this version reads {PACKED_FORMAT}; "
                             f"delete the shard to rebuild it")
        return cls(blob["graphs"], int(blob["count"][0]))

    # -- sequence of graphs ---------------------------------------------------------------------
    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> HeteroData:
        if not -self.count <= i < self.count:
            raise IndexError(f"graph {i} of a shard of {self.count}")
        i %= self.count
        data = HeteroData()
        for key, attrs in self.tensors.items():
            kind = self._kinds[key]
            store = data if kind == "graph" else data[tuple(key.split("|"))] if kind == "edge" else data[key]
            for attr, t in attrs.items():
                if attr.endswith("__ptr"):
                    continue
                ptr = attrs[f"{attr}__ptr"]
                store[attr] = t.narrow(_cat_dim(attr), int(ptr[i]), int(ptr[i + 1] - ptr[i]))
            if kind == "node":
                store.num_nodes = int(attrs[_NODES][i + 1] - attrs[_NODES][i])
        return data

    def __iter__(self):
        return (self[i] for i in range(self.count))

    # -- batches by slicing -------------------------------------------------------------------
    def collate(self, indices) -> Batch:
        """Mini-batch of graphs ``indices`` (any order, repeats allowed), built by gathering rows
        of the concatenated tensors; equal to PyG's ``Batch.from_data_list`` of those graphs.

        Offsets and gathers run in NumPy (single-threaded: torch's parallel kernels stall on a
        loaded machine); attributes sharing an offsets vector share one gather index."""
        idx = np.asarray(indices.tolist() if isinstance(indices, torch.Tensor) else list(indices), dtype=np.int64)
        b = int(idx.size)
        out = _new_hetero_batch()
        slice_dict: dict = {}
        inc_dict: dict = {}
        no_inc = torch.zeros(b, dtype=torch.long)   # shared: PyG only reads the increments
        node_off: dict[str, np.ndarray] = {}         # per node type: offset of each batch graph [b]
        node_cnt: dict[str, np.ndarray] = {}
        layout = self._layout()
        for key, kind, _, _, nptr in layout:
            if kind == "node":
                cnt = nptr[idx + 1] - nptr[idx]
                node_cnt[key] = cnt
                node_off[key] = np.cumsum(cnt) - cnt
        for key, kind, skey, attrs, _ in layout:
            values, sd, idd = {}, {}, {}
            groups: dict[int, tuple] = {}       # attributes sharing one offsets vector gather alike
            for attr, t, dim, ptr, featureless in attrs:
                if id(ptr) not in groups:
                    start, cnt = ptr[idx], ptr[idx + 1] - ptr[idx]
                    csum = np.cumsum(cnt)
                    total = int(csum[-1]) if b else 0
                    gather = np.repeat(start - (csum - cnt), cnt) + np.arange(total)
                    slices = torch.from_numpy(np.concatenate([[0], csum]).astype(np.int64))
                    groups[id(ptr)] = (cnt, total, gather, slices)
                cnt, total, gather, slices = groups[id(ptr)]
                if featureless:                                   # nothing to gather
                    value = t.new_empty((total, 0) if dim == 0 else (0, total))
                else:
                    value = _take(t, gather, dim)
                inc = no_inc
                if kind == "edge" and attr == "edge_index":
                    src, _, dst = skey
                    shift = np.stack([node_off[src], node_off[dst]])            # [2, b]
                    value = torch.from_numpy(value.numpy() + np.repeat(shift, cnt, axis=1))
                    inc = torch.from_numpy(np.ascontiguousarray(shift.T)).reshape(b, 2, 1)
                values[attr] = value
                sd[attr] = slices
                idd[attr] = inc
            if kind == "graph":
                for attr, value in values.items():
                    out[attr] = value
                slice_dict.update(sd)
                inc_dict.update(idd)
                continue
            store = out.get_edge_store(*skey) if kind == "edge" else out.get_node_store(skey)
            if kind == "node":
                cnt = node_cnt[key]
                values["num_nodes"] = int(cnt.sum())
                values["batch"] = torch.from_numpy(np.repeat(np.arange(b, dtype=np.int64), cnt))
                values["ptr"] = torch.from_numpy(np.concatenate([[0], np.cumsum(cnt)]).astype(np.int64))
                store._num_nodes = cnt.tolist()
            store._mapping.update(values)
            slice_dict[skey] = sd
            inc_dict[skey] = idd
        out._num_graphs = b
        out._slice_dict = slice_dict
        out._inc_dict = inc_dict
        return out

    def _layout(self) -> list[tuple]:
        """Per store: ``(key, kind, PyG key, [(attr, tensor, cat dim, offsets, featureless)],
        node offsets or None)``, computed once."""
        if getattr(self, "_layout_cache", None) is None:
            np_ptr = self._np_ptr()
            layout = []
            for key, attrs in self.tensors.items():
                kind = self._kinds[key]
                entries = []
                for attr, t in attrs.items():
                    if attr.endswith("__ptr"):
                        continue
                    dim = _cat_dim(attr)
                    entries.append((attr, t, dim, np_ptr[key][f"{attr}__ptr"],
                                    t.dim() == 2 and t.size(1 - dim) == 0))
                layout.append((key, kind, tuple(key.split("|")) if kind == "edge" else key, entries,
                               np_ptr[key][_NODES] if kind == "node" else None))
            self._layout_cache = layout
        return self._layout_cache

    def _np_ptr(self) -> dict[str, dict[str, np.ndarray]]:
        """The offset vectors as NumPy arrays (converted once)."""
        if getattr(self, "_ptr_cache", None) is None:
            cache: dict[str, dict[str, np.ndarray]] = {}
            for k, attrs in self.tensors.items():
                seen: list[np.ndarray] = []
                cache[k] = {}
                for a, t in attrs.items():
                    if not a.endswith("__ptr"):
                        continue
                    arr = t.numpy()
                    same = next((s for s in seen if s.shape == arr.shape and np.array_equal(s, arr)), None)
                    if same is None:
                        seen.append(arr)
                    cache[k][a] = arr if same is None else same     # equal offsets: one shared array
            self._ptr_cache = cache
        return self._ptr_cache


def _take(t: torch.Tensor, gather: np.ndarray, dim: int) -> torch.Tensor:
    """Rows (``dim`` 0) or columns (``dim`` 1) ``gather`` of ``t``, gathered by NumPy: torch's
    ``index_select`` goes multi-threaded above a size threshold, which stalls by one to two orders
    of magnitude on a machine whose cores are busy (measured: 7.7k vs 179k graphs/s)."""
    try:
        return torch.from_numpy(np.take(t.numpy(), gather, axis=dim))
    except TypeError:           # dtypes without a NumPy equivalent (bfloat16)
        return t.index_select(dim, torch.from_numpy(gather))


_HETERO_BATCH: type | None = None


def _new_hetero_batch() -> Batch:
    """An empty ``Batch`` of ``HeteroData`` (PyG's dynamic class, created once: its metaclass
    inspects the base class's signature on every ``Batch(_base_cls=...)`` call)."""
    global _HETERO_BATCH
    if _HETERO_BATCH is None:
        _HETERO_BATCH = type(Batch(_base_cls=HeteroData))
    return type.__call__(_HETERO_BATCH)


def save_packed(path: str | Path, graphs: list[HeteroData]) -> None:
    """Store ``graphs`` in one shard (see :class:`PackedGraphs`)."""
    PackedGraphs.from_graphs(graphs).save(path)


def load_packed(path: str | Path, mmap: bool = False) -> list[HeteroData]:
    """Every graph of a shard as its own ``HeteroData`` (views into the shard's tensors).
    To train, prefer :meth:`PackedGraphs.load` and :meth:`PackedGraphs.collate`."""
    return list(PackedGraphs.load(path, mmap=mmap))
