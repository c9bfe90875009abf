"""Read a cells x genes matrix and its cell / gene tables from an AnnData ``.h5ad`` file, in row chunks.

Two readers behind one interface (:class:`H5adMatrix`):

- ``anndata`` (``anndata.read_h5ad(path, backed="r")``) when the package is importable;
- ``h5py``: the AnnData on-disk format read directly (h5py only), for installs without ``anndata``
  (its current releases require pandas < 3). It reads both layouts AnnData has written: the
  encoded one of anndata >= 0.7/0.8 (``obs``/``var`` groups with ``encoding-type: dataframe``,
  ``categorical`` columns, ``csr_matrix``/``csc_matrix`` groups) and the legacy one of older files
  (compound ``obs``/``var`` datasets, categories in ``uns/<column>_categories``, ``h5sparse`` groups),
  such as scanpy's ``pbmc68k_reduced``.

``matrix`` selects the values: ``"X"``, ``"raw.X"`` (the raw matrix, with ``raw``'s own gene table)
or ``"layers/<name>"``. Sparse matrices are densified per chunk (implicit entries are 0). Values are
returned as float32 exactly as stored (NaN / inf included: callers count and mask them).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

Reader = Literal["auto", "anndata", "h5py"]


def anndata_available() -> bool:
    """Whether the ``anndata`` package can be imported."""
    return importlib.util.find_spec("anndata") is not None


def _text(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).tolist()]


class H5adMatrix:
    """One matrix of an ``.h5ad`` file, read lazily.

    Attributes:
        path: the file.
        matrix: ``"X"``, ``"raw.X"`` or ``"layers/<name>"``.
        reader: ``"anndata"`` or ``"h5py"`` (the one used).
        n_obs, n_vars: cells and genes of the matrix.
        var_names: ``[n_vars]`` gene names (the gene table's index).
        obs: one row per cell (index: the cell names), the file's ``obs`` columns (categoricals as
            their category labels, missing = NaN).
    """

    def __init__(self, path: str | Path, matrix: str = "X", reader: Reader = "auto"):
        self.path = Path(path)
        self.matrix = matrix
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such .h5ad file")
        if reader == "auto":
            reader = "anndata" if anndata_available() else "h5py"
        if reader == "anndata" and not anndata_available():
            raise ImportError("reader 'anndata' needs the anndata package: pip install anndata "
                              "(or use reader 'h5py')")
        self.reader: str = reader
        self._csr_cache: Any = None
        if reader == "anndata":
            self._open_anndata()
        else:
            self._open_h5py()
        if len(self.var_names) != self.n_vars:
            raise ValueError(f"{self.path}: matrix {matrix!r} has {self.n_vars} genes but its gene table "
                             f"has {len(self.var_names)} rows")
        if len(self.obs) != self.n_obs:
            raise ValueError(f"{self.path}: matrix {matrix!r} has {self.n_obs} cells but obs has {len(self.obs)} rows")

    # -- anndata -------------------------------------------------------------------------------

    def _open_anndata(self) -> None:
        import anndata

        try:
            ad = anndata.read_h5ad(self.path, backed="r")
        except Exception as exc:  # noqa: BLE001 - name the file and the reason
            raise ValueError(f"{self.path}: anndata cannot read it as .h5ad ({type(exc).__name__}: {exc})") from None
        self._ad = ad
        self.obs = pd.DataFrame(ad.obs).copy()
        self.obs.index = self.obs.index.astype(str)
        if self.matrix == "X":
            self._x, var = ad.X, ad.var_names
        elif self.matrix == "raw.X":
            if ad.raw is None:
                raise ValueError(f"{self.path}: the file has no raw matrix (matrix: raw.X); use matrix: X")
            self._x, var = ad.raw.X, ad.raw.var_names
        elif self.matrix.startswith("layers/"):
            name = self.matrix.split("/", 1)[1]
            if name not in ad.layers:
                raise ValueError(f"{self.path}: no layer {name!r}; layers: {', '.join(ad.layers) or 'none'}")
            self._x, var = ad.layers[name], ad.var_names
        else:
            raise ValueError(f"matrix must be 'X', 'raw.X' or 'layers/<name>', not {self.matrix!r}")
        if self._x is None:
            raise ValueError(f"{self.path}: the file has no X matrix")
        self.var_names = [str(v) for v in var]
        self.n_obs, self.n_vars = int(self._x.shape[0]), int(self._x.shape[1])

    # -- h5py ----------------------------------------------------------------------------------

    def _open_h5py(self) -> None:
        try:
            import h5py
        except ImportError:
            raise ImportError("reading .h5ad needs h5py (pip install 'cgc-framework[expression]') "
                              "or anndata (pip install anndata)") from None
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise ValueError(f"{self.path}: not an HDF5 (.h5ad) file ({exc})") from None
        self._h5 = f
        uns = f.get("uns")
        self.obs = _read_frame(f, "obs", uns)
        if self.matrix == "X":
            node, var = f.get("X"), _read_frame(f, "var", uns)
        elif self.matrix == "raw.X":
            if "raw" in f:
                node, var = f["raw"].get("X"), _read_frame(f["raw"], "var", None)
            elif "raw.X" in f:
                node, var = f["raw.X"], _read_frame(f, "raw.var", None)
            else:
                raise ValueError(f"{self.path}: the file has no raw matrix (matrix: raw.X); use matrix: X")
        elif self.matrix.startswith("layers/"):
            name = self.matrix.split("/", 1)[1]
            layers = f.get("layers")
            if layers is None or name not in layers:
                raise ValueError(f"{self.path}: no layer {name!r}; layers: {', '.join(layers or []) or 'none'}")
            node, var = layers[name], _read_frame(f, "var", uns)
        else:
            raise ValueError(f"matrix must be 'X', 'raw.X' or 'layers/<name>', not {self.matrix!r}")
        if node is None:
            raise ValueError(f"{self.path}: the file has no {self.matrix} matrix")
        self.var_names = list(var.index)
        self._node = node
        if isinstance(node, h5py.Dataset):
            if node.ndim != 2:
                raise ValueError(f"{self.path}: {self.matrix} is not a 2-D matrix (shape {node.shape})")
            self._sparse = None
            self.n_obs, self.n_vars = map(int, node.shape)
        else:
            fmt = node.attrs.get("encoding-type", node.attrs.get("h5sparse_format", ""))
            fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
            shape = node.attrs.get("shape", node.attrs.get("h5sparse_shape"))
            if fmt.startswith("csr"):
                self._sparse = "csr"
            elif fmt.startswith("csc"):
                self._sparse = "csc"
            else:
                raise ValueError(f"{self.path}: {self.matrix} is an HDF5 group of unknown encoding {fmt!r} "
                                 f"(expected a dense dataset or a csr/csc sparse matrix)")
            if shape is None:
                raise ValueError(f"{self.path}: sparse {self.matrix} has no shape attribute")
            self.n_obs, self.n_vars = int(shape[0]), int(shape[1])

    # -- rows ----------------------------------------------------------------------------------

    def rows(self, start: int, stop: int) -> np.ndarray:
        """float32 ``[stop - start, n_vars]``: the cells ``start .. stop - 1`` as stored (dense)."""
        start, stop = max(0, start), min(self.n_obs, stop)
        if stop <= start:
            return np.zeros((0, self.n_vars), np.float32)
        if self.reader == "anndata":
            block = self._x[start:stop]
            if hasattr(block, "toarray"):
                block = block.toarray()
            return np.asarray(block, dtype=np.float32)
        node = self._node
        if self._sparse is None:
            return np.asarray(node[start:stop], dtype=np.float32)
        if self._sparse == "csr":
            ptr = np.asarray(node["indptr"][start:stop + 1], dtype=np.int64)
            data = np.asarray(node["data"][ptr[0]:ptr[-1]], dtype=np.float32)
            idx = np.asarray(node["indices"][ptr[0]:ptr[-1]], dtype=np.int64)
            out = np.zeros((stop - start, self.n_vars), np.float32)
            row = np.repeat(np.arange(stop - start), np.diff(ptr))
            out[row, idx] = data
            return out
        if self._csr_cache is None:  # CSC: rows cut across every column; read it once
            from scipy.sparse import csc_matrix

            self._csr_cache = csc_matrix((node["data"][:], node["indices"][:], node["indptr"][:]),
                                         shape=(self.n_obs, self.n_vars)).tocsr()
        return np.asarray(self._csr_cache[start:stop].toarray(), dtype=np.float32)

    def chunks(self, chunk: int = 1024, limit: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, float32 [n, n_vars])`` over the cells in order (the first ``limit`` only)."""
        end = self.n_obs if limit is None else min(self.n_obs, limit)
        for start in range(0, end, chunk):
            yield start, self.rows(start, min(end, start + chunk))

    def close(self) -> None:
        h5 = getattr(self, "_h5", None)
        if h5 is not None:
            h5.close()
        ad = getattr(self, "_ad", None)
        if ad is not None and getattr(ad, "file", None) is not None:
            ad.file.close()

    def __enter__(self) -> H5adMatrix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _attr(node: Any, name: str, default: Any = None) -> Any:
    v = node.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def _read_frame(parent: Any, name: str, uns: Any) -> pd.DataFrame:
    """An AnnData dataframe (``obs`` / ``var``) in either on-disk layout (module docstring)."""
    import h5py

    node = parent.get(name)
    if node is None:
        raise ValueError(f"{parent.file.filename}: no {name!r} table")
    if isinstance(node, h5py.Dataset):  # legacy: one compound dataset, 'index' field
        arr = node[()]
        names = arr.dtype.names or ()
        index = _text(arr["index"]) if "index" in names else [str(i) for i in range(len(arr))]
        cols: dict[str, Any] = {}
        for c in names:
            if c == "index":
                continue
            values = arr[c]
            cats = uns.get(f"{c}_categories") if uns is not None else None
            if cats is not None and np.issubdtype(values.dtype, np.integer):
                cols[c] = _categorical(values, _text(cats[()]))
            elif values.dtype.kind == "S":
                cols[c] = _text(values)
            else:
                cols[c] = values
        return pd.DataFrame(cols, index=pd.Index(index, dtype=object))
    index_col = _attr(node, "_index", "_index")
    order = node.attrs.get("column-order", [])
    order = _text(order) if len(order) else []
    legacy_cats = node.get("__categories")
    index = _text(_column(node[index_col], None)) if index_col in node else [str(i) for i in range(_length(node))]
    cols = {}
    for c in order:
        cats = legacy_cats.get(c) if legacy_cats is not None else None
        cols[c] = _column(node[c], None if cats is None else _text(cats[()]))
    return pd.DataFrame(cols, index=pd.Index(index, dtype=object))


def _length(node: Any) -> int:
    for v in node.values():
        return len(v) if hasattr(v, "__len__") else 0
    return 0


def _column(node: Any, categories: list[str] | None) -> Any:
    import h5py

    if isinstance(node, h5py.Group):
        kind = _attr(node, "encoding-type", "")
        if kind == "categorical":
            return _categorical(node["codes"][()], _text(node["categories"][()]) if node["categories"].dtype.kind in "SOU"
                                else list(node["categories"][()]))
        if kind in ("nullable-integer", "nullable-boolean", "nullable-string-array"):
            values = node["values"][()]
            values = _text(values) if values.dtype.kind in "SO" else values.astype(object)
            mask = node["mask"][()].astype(bool)
            return [None if m else v for v, m in zip(values, mask)]
        raise ValueError(f"{node.file.filename}: column {node.name} has an unsupported encoding {kind!r}")
    values = node[()]
    if categories is not None:
        return _categorical(values, categories)
    if values.dtype.kind in "SO":
        return _text(values)
    return values


def _categorical(codes: np.ndarray, categories: list[Any]) -> pd.Categorical:
    codes = np.asarray(codes).astype(np.int64)
    codes[(codes < 0) | (codes >= len(categories))] = -1
    return pd.Categorical.from_codes(codes, categories=list(categories))


__all__ = ["H5adMatrix", "anndata_available"]
