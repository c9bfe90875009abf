"""Packed training shards: many graphs as concatenated tensors plus offsets.

A shard is ``torch.save`` of plain tensors (read with ``weights_only=True``, optionally
memory-mapped): per store key (node type, ``"src|rel|dst"``, ``"__graph__"``) and attribute the
graphs' tensors concatenated along their cat dimension (1 for ``edge_index``, else 0) plus an
int64 offsets vector ``<attr>__ptr`` ``[G + 1]``; per node type ``__nodes__ptr`` ``[G + 1]`` holds
the node offsets. ``edge_index`` keeps each graph's local node numbering.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch_geometric.data import Batch, HeteroData

from cgc_framework.plugin.graph import graph_to_dict

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
    run's graphs do after :meth:`~cgc_framework.plugin.graph.GraphSchema.conform`).
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

    @classmethod
    def concat(cls, shards: list[PackedGraphs]) -> PackedGraphs:
        """One shard holding the graphs of ``shards`` in order (each built by :meth:`from_graphs`
        from graphs of one layout). ``ValueError`` when their layouts differ."""
        shards = [s for s in shards if s.count]
        if len(shards) <= 1:
            return shards[0] if shards else cls({}, 0)
        layout = {k: set(v) for k, v in shards[0].tensors.items()}
        for i, s in enumerate(shards[1:], start=1):
            if {k: set(v) for k, v in s.tensors.items()} != layout:
                raise ValueError(f"cannot concatenate packed shards with different stores/attributes (shard {i})")
        out: dict[str, dict[str, torch.Tensor]] = {}
        for key, attrs in layout.items():
            for attr in attrs:
                parts = [s.tensors[key][attr] for s in shards]
                if attr.endswith("__ptr"):  # offsets: shift each shard's by the total before it
                    shifted, total = [parts[0]], int(parts[0][-1])
                    for p in parts[1:]:
                        shifted.append(p[1:] + total)
                        total += int(p[-1])
                    out.setdefault(key, {})[attr] = torch.cat(shifted)
                else:
                    out.setdefault(key, {})[attr] = torch.cat(parts, dim=_cat_dim(attr))
        return cls(out, sum(s.count for s in shards))

    def take(self, indices) -> PackedGraphs:
        """A new shard of graphs ``indices`` (any order, repeats allowed), gathered from the
        concatenated tensors (copies; local node numbering kept)."""
        idx = np.asarray(indices.tolist() if isinstance(indices, torch.Tensor) else list(indices), dtype=np.int64)
        np_ptr = self._np_ptr()
        out: dict[str, dict[str, torch.Tensor]] = {}
        for key, attrs in self.tensors.items():
            gathers: dict[int, tuple[np.ndarray, torch.Tensor]] = {}   # one per offsets vector
            for attr, t in attrs.items():
                ptr = np_ptr[key][attr if attr.endswith("__ptr") else f"{attr}__ptr"]
                if id(ptr) not in gathers:
                    start, cnt = ptr[idx], ptr[idx + 1] - ptr[idx]
                    csum = np.cumsum(cnt)
                    gather = np.repeat(start - (csum - cnt), cnt) + np.arange(int(csum[-1]) if idx.size else 0)
                    gathers[id(ptr)] = (gather, torch.from_numpy(np.concatenate([[0], csum]).astype(np.int64)))
                gather, new_ptr = gathers[id(ptr)]
                out.setdefault(key, {})[attr] = new_ptr if attr.endswith("__ptr") else _take(t, gather, _cat_dim(attr))
        return PackedGraphs(out, int(idx.size))

    def save(self, path: str | Path | BinaryIO) -> None:
        """Write the shard to a file or binary stream (plain tensors; ``torch.load(weights_only=True)``
        reads it)."""
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
