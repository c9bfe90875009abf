"""Featurization cache: built subgraphs stored on disk, keyed by what determines them.

The key of one subgraph is the SHA-256 of the builder's registered name, class, ``version`` and
:meth:`~cgc_framework.contracts.GraphBuilder.params_key` plus a hash of the input's *content*:
the bytes of the files a builder names through an optional ``cache_inputs(value) -> list[Path]``
method (a structure file and its sidecars), else the value itself (a SMILES). Bumping the builder
version or changing a parameter therefore changes every key: stale entries are never read.

An entry is ``<root>/<builder>/<key[:2]>/<key>.pt`` written with ``torch.save`` of
:func:`~cgc_framework.graph.graph_to_dict` and read with ``torch.load(weights_only=True)`` (no
pickle), so reloading needs neither RDKit nor Biopython. A rejected input is cached too, as
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

import torch
from torch_geometric.data import HeteroData

from .graph import graph_from_dict, graph_to_dict

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
        path = self._path(builder_name, key, ".pt")
        try:
            d = torch.load(path, weights_only=True)
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
        self._write(self._path(builder_name, key, ".pt"), lambda fh: torch.save(graph_to_dict(data), fh))

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
        return sum(1 for _ in self.root.rglob("*.pt")) if self.root.is_dir() else 0


# -- packed shards: many graphs in one file (one torch.load instead of one per graph) ----------

def save_packed(path: str | Path, graphs: list[HeteroData]) -> None:
    """Store ``graphs`` in one file: per ``(type, attribute)`` the tensors concatenated along
    their node/edge dimension (dim 1 for ``edge_index``, else dim 0) plus per-graph sizes.
    Every graph must have the same types and attributes (as a run's graphs do after
    :meth:`~cgc_framework.graph.GraphSchema.conform`)."""
    dicts = [graph_to_dict(g) for g in graphs]
    packed: dict[str, dict[str, torch.Tensor]] = {}
    if dicts:
        for key, attrs in dicts[0].items():
            for attr in attrs:
                dim = 1 if attr == "edge_index" else 0
                parts = [d[key][attr] for d in dicts]
                packed.setdefault(key, {})[attr] = torch.cat(parts, dim=dim)
                packed[key][f"{attr}__sizes"] = torch.tensor([p.size(dim) for p in parts], dtype=torch.long)
    torch.save({"count": torch.tensor([len(dicts)]), "graphs": packed}, path)


def load_packed(path: str | Path) -> list[HeteroData]:
    """Inverse of :func:`save_packed` (tensors of each graph are views into the shard's)."""
    blob = torch.load(path, weights_only=True)
    n = int(blob["count"][0])
    per_graph: list[dict[str, dict[str, torch.Tensor]]] = [{} for _ in range(n)]
    for key, attrs in blob["graphs"].items():
        for attr, tensor in attrs.items():
            if attr.endswith("__sizes"):
                continue
            dim = 1 if attr == "edge_index" else 0
            for d, part in zip(per_graph, torch.split(tensor, attrs[f"{attr}__sizes"].tolist(), dim=dim)):
                d.setdefault(key, {})[attr] = part
    return [graph_from_dict(d) for d in per_graph]
