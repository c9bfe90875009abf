"""Shared fixtures.

Tests that need the real data sets of ``../shared/data`` use the ``shared_data`` fixture: it reads
the directory from the ``CGC_SHARED_DATA`` environment variable (``.ci/run`` sets it) and skips,
naming the data, where it is absent. Everything else runs on the embedded default data.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """One torch/OpenMP thread per test process (and per command a test starts), unless the caller
    chose: the suite runs in one process per core (``-n 2``), and a process spinning a thread on
    every core against its neighbour's threads runs several times slower."""
    threads = os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = os.environ.get("CGC_SHARED_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("needs the real data sets of ../shared/data: set CGC_SHARED_DATA to that directory")
    return Path(root)


@pytest.fixture(scope="session")
def registry_yaml() -> Path:
    return REPO / "registry.yaml"
