"""What data a component read: the files behind its parameters, and their checksums.

``cgc-bench`` records the sha256 of every file a trial read (the pretraining dataset's and each
evaluation's, :meth:`~cgc_framework.plugin.contracts.Evaluator.data_files`), so a results table says
which bytes its numbers came from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (cached per path, size and modification time)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def files_named_by(obj: Any, depth: int = 0) -> list[Path]:
    """Existing files named by ``obj``: a path, a list of paths, a mapping, or the attributes /
    fields of an object (two levels deep, e.g. a dataset and its params model). Directories are not
    expanded: a component's working or cache directory is not its data."""
    if isinstance(obj, (str, Path)):
        if isinstance(obj, str) and (len(obj) > 4096 or "\n" in obj):
            return []
        try:
            p = Path(obj).expanduser()
            return [p.resolve()] if p.is_file() else []
        except (OSError, ValueError):
            return []
    if isinstance(obj, (list, tuple)):
        return [f for v in obj for f in files_named_by(v, depth)]
    if isinstance(obj, dict):
        return [f for v in obj.values() for f in files_named_by(v, depth + 1)] if depth < 3 else []
    if depth >= 2:
        return []
    if isinstance(obj, BaseModel):
        return [f for name in type(obj).model_fields for f in files_named_by(getattr(obj, name), depth + 1)]
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return [f for v in vars(obj).values() for f in files_named_by(v, depth + 1)]
    return []


__all__ = ["files_named_by", "sha256_file"]
