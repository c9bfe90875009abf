"""MoleculeNet classification sets through DeepChem's own loaders (scaffold split, ECFP4).

With internet DeepChem downloads the CSVs; offline, ``data_dir`` must hold them under DeepChem's
file names (the loader then skips the download). ``save_dir`` caches the featurized splits.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSIFICATION_SETS = ("tox21", "toxcast", "sider", "clintox", "bbbp", "hiv", "bace", "muv")
TOXICITY_SETS = ("tox21", "toxcast", "sider", "clintox")


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


def load_molnet(name: str, data_dir: Path | None, save_dir: Path, seed: int = 0) -> MolnetSet:
    """Load ``name`` with DeepChem's scaffold splitter (train/valid/test 80/10/10)."""
    if name not in CLASSIFICATION_SETS:
        raise ValueError(f"unknown MoleculeNet set {name!r}; choose from {', '.join(CLASSIFICATION_SETS)}")
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    logging.getLogger("deepchem").setLevel(logging.ERROR)
    kwargs = {"featurizer": "ECFP", "splitter": "scaffold", "save_dir": str(save_dir), "reload": True}
    if data_dir is not None:
        kwargs["data_dir"] = str(data_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        tasks, (train, valid, test), _ = _loader(name)(**kwargs)
    return MolnetSet(name, list(tasks), _split(train), _split(valid), _split(test))


def _split(ds) -> Split:
    # DeepChem drops molecules RDKit cannot featurize (and logs them); ids, X, y, w stay aligned.
    y = np.asarray(ds.y).astype(int)
    n = len(y)
    return Split(np.asarray(ds.ids), np.asarray(ds.X, dtype=np.float32), y.reshape(n, -1),
                 (np.asarray(ds.w) > 0).reshape(n, -1))
