"""MoleculeNet classification sets through DeepChem's own loaders (scaffold split, ECFP4).

With internet DeepChem downloads the CSVs; offline, ``data_dir`` must hold them under DeepChem's
file names (the loader then skips the download). ``save_dir`` caches the featurized splits; by
default (:func:`molnet_cache_dir`) a folder under the system temporary directory keyed by the input
files and the DeepChem version, so the leakage guard (which lists the scaffold test molecules
before pretraining) and the evaluator that scores them featurize each set once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .params import CLASSIFICATION_SETS
from .params import TOXICITY_SETS as TOXICITY_SETS

#: DeepChem's file name of each MoleculeNet classification set (what its loaders read from data_dir).
MOLNET_FILES = {"tox21": "tox21.csv.gz", "toxcast": "toxcast_data.csv.gz", "sider": "sider.csv.gz",
                "clintox": "clintox.csv.gz", "bbbp": "BBBP.csv", "hiv": "HIV.csv", "bace": "bace.csv",
                "muv": "muv.csv.gz"}


def molnet_data_files(params: dict[str, Any]) -> dict[str, list[Path]]:
    """Files an evaluator with these params reads, by data set (``"*"``: files not tied to one set):
    a list parameter of MoleculeNet names (few-shot ``datasets``, zero-shot ``toxicity_sets``) means
    ``data_dir/<DeepChem file name>`` (DeepChem's download directory without ``data_dir``); any other
    parameter naming an existing file (also inside nested mappings) counts too. What the MoleculeNet
    evaluators return from :meth:`~cgc_framework.plugin.contracts.Evaluator.data_files`."""
    from cgc_framework.plugin.provenance import files_named_by

    files: dict[str, list[Path]] = {}
    molnet_keys = [k for k, v in params.items() if isinstance(v, list) and v
                   and all(isinstance(d, str) and d in MOLNET_FILES for d in v)]
    sets = list(dict.fromkeys(d for k in molnet_keys for d in params[k]))
    if sets:
        data_dir = params.get("data_dir")
        if data_dir is None:
            from deepchem.utils.data_utils import get_data_dir

            data_dir = get_data_dir()
        for d in sets:
            f = Path(data_dir) / MOLNET_FILES[d]
            files[d] = [f.resolve()] if f.is_file() else []
    other = [f for k, v in params.items() if k != "data_dir" and k not in molnet_keys for f in files_named_by(v)]
    if other:
        files["*"] = sorted(set(other))
    return files


@dataclass
class Split:
    """One split: SMILES, ECFP4 bits ``[N, 1024]``, labels ``[N, T]``, label-present mask ``[N, T]``."""

    smiles: np.ndarray
    ecfp: np.ndarray
    y: np.ndarray
    present: np.ndarray


@dataclass
class MolnetSet:
    name: str
    tasks: list[str]
    train: Split
    valid: Split
    test: Split


def _loader(name: str):
    import deepchem as dc

    fn = {"bbbp": "load_bbbp", "bace": "load_bace_classification"}.get(name, f"load_{name}")
    return getattr(dc.molnet, fn)


def molnet_cache_dir(data_dir: Path | None) -> Path:
    """``<tmp>/cgc-molnet/<key>``: the key hashes ``data_dir``'s file names, sizes and mtimes and
    the DeepChem version (a changed CSV or DeepChem gets a fresh folder)."""
    import deepchem as dc

    h = hashlib.sha256(str(getattr(dc, "__version__", "")).encode())
    if data_dir is None:
        h.update(b"download")
    else:
        for f in sorted(Path(data_dir).iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    path = Path(tempfile.gettempdir()) / "cgc-molnet" / h.hexdigest()[:16]
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_molnet(name: str, data_dir: Path | None, save_dir: Path | None = None, seed: int = 0) -> MolnetSet:
    """Load ``name`` with DeepChem's scaffold splitter (train/valid/test 80/10/10); ``save_dir``
    default: :func:`molnet_cache_dir`. (The scaffold split is deterministic; ``seed`` is unused.)"""
    if save_dir is None:
        save_dir = molnet_cache_dir(data_dir)
    if name not in CLASSIFICATION_SETS:
        raise ValueError(f"unknown MoleculeNet set {name!r}; choose from {', '.join(CLASSIFICATION_SETS)}")
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    logging.getLogger("deepchem").setLevel(logging.ERROR)
    kwargs = {"featurizer": "ECFP", "splitter": "scaffold", "save_dir": str(save_dir), "reload": True}
    if data_dir is not None:
        kwargs["data_dir"] = str(data_dir)
    # one process at a time featurizes a set into (or reads it from) the shared cache folder: parallel
    # sweep trials otherwise read shards another trial is still writing
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    with exclusive(Path(save_dir) / f".{name}.lock"):
        try:
            return _load(name, kwargs)
        except (OSError, ValueError, EOFError):  # a cache folder left half-written by a killed process
            return _load(name, {**kwargs, "save_dir": tempfile.mkdtemp(prefix="cgc-molnet-")})


def _load(name: str, kwargs: dict[str, Any]) -> MolnetSet:
    with contextlib.redirect_stdout(io.StringIO()):
        tasks, (train, valid, test), _ = _loader(name)(**kwargs)
    return MolnetSet(name, list(tasks), _split(train), _split(valid), _split(test))


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``lock_file`` (POSIX ``flock``; no lock where there is none): one
    process at a time fills a cache entry that parallel sweep trials share."""
    try:
        import fcntl
    except ImportError:  # Windows: no cross-process lock
        yield
        return
    with open(lock_file, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _split(ds) -> Split:
    # DeepChem drops molecules RDKit cannot featurize (and logs them); ids, X, y, w stay aligned.
    y = np.asarray(ds.y).astype(int)
    n = len(y)
    return Split(np.asarray(ds.ids), np.asarray(ds.X, dtype=np.float32), y.reshape(n, -1),
                 (np.asarray(ds.w) > 0).reshape(n, -1))


def scaffold_split_smiles(name: str, data_dir: Path | None, split: str = "test") -> list[str]:
    """SMILES of the scaffold ``split`` (test, valid) of ``name`` (what the leakage guard holds out)."""
    return [str(x) for x in getattr(load_molnet(name, data_dir), split).smiles]
