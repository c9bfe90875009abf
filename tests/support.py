"""Helpers shared by tests (``from tests.support import ...``); fixtures are in ``conftest.py``."""

from __future__ import annotations

#: ``--set`` overrides for tests of pretraining machinery: every well of the embedded plate (the
#: default run holds ~20% of compounds out for its evaluations) and no evaluations.
MACHINERY = ["data.dataset.params.include_splits=[train, val, test]", "evaluations={}"]


def cli_sets(overrides: list[str]) -> list[str]:
    """``["--set", o1, "--set", o2, ...]`` for a ``cgc-run`` command line."""
    return [arg for o in overrides for arg in ("--set", o)]


def one_stage(epochs: int) -> str:
    """A ``--set`` override replacing the default three stages by masked recovery alone, for tests
    of machinery (orchestration, faults, evaluators) that need a short, predictable step count."""
    return f"stages=[{{name: mask, epochs: {epochs}, weights: {{mask: 1.0}}}}]"
