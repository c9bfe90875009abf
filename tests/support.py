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


def fit_losses(task, encoder, batch, steps: int = 40, lr: float = 1e-2) -> tuple[list[float], object]:
    """Train ``task`` and ``encoder`` on one fixed batch with Adam; the loss of every step and the
    last ``TaskOutput`` (for tests that a task learns: compare the first and last losses)."""
    import torch

    opt = torch.optim.Adam([*encoder.parameters(), *task.parameters()], lr=lr)
    losses = []
    for _ in range(steps):
        out = task(batch, encoder)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    return losses, out
