"""What the evaluators share: molecule keys for leakage accounting, and the run's model as a
:class:`cgc_framework.engine.pretrained.Pretrained` (the one path from SMILES to embeddings, which
``cgc-embed`` uses too).

Molecule identity across data sets is the InChIKey connectivity block (``InChIKey14``: the first
14 characters of the standard InChIKey; stereo, isotopes and protonation ignored), computed by
RDKit from the SMILES on both sides.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
from torch_geometric.data import HeteroData

from cgc_framework.plugin import Dataset, HeldOutMolecules, Plan, SkipLog

if TYPE_CHECKING:
    from cgc_framework.engine.pretrained import Pretrained


@lru_cache(maxsize=200_000)
def inchikey14(smiles: str | None) -> str | None:
    """Connectivity block of the InChIKey (stereo and protonation ignored), or None if unparsable
    (the experiment datasets' own key, :func:`~cgc_plugins.datasets.experiment.inchikey14_of`)."""
    from cgc_plugins.datasets.experiment import inchikey14_of

    return inchikey14_of(smiles)


def dataset_with_splits(plan: Plan, include_splits: list[str]) -> Dataset:
    """A fresh copy of the run's dataset (its own params and split) yielding only the records of
    ``include_splits`` — the raw dataset, not the leakage-guarded one pretraining read."""
    try:
        return plan.create_dataset(include_splits=list(include_splits))
    except ValueError:
        raise ValueError(f"dataset '{plan.dataset_spec.info.name}' has no include_splits parameter: "
                         "its held-out records cannot be selected") from None


def held_out(keys_and_where: Iterable[tuple[str | None, str]]) -> HeldOutMolecules:
    """:class:`HeldOutMolecules` keyed by InChIKey14 (first ``where`` wins for a repeated key)."""
    keys: dict[str, str] = {}
    for key, where in keys_and_where:
        if key is not None:
            keys.setdefault(key, where)
    return HeldOutMolecules(keys, inchikey14)


def pretraining_inchikeys(plan: Any) -> set[str]:
    """InChIKey14 of every molecule in the run's pretraining corpus: the records of
    ``plan.dataset`` (after the leakage guard, when it is on) — the leakage reference."""
    keys = set()
    for record in plan.dataset.records(SkipLog()):
        key = inchikey14(plan.molecule_value(record))
        if key:
            keys.add(key)
    return keys


def molecule_graphs(pre: Pretrained, smiles: Iterable[str]) -> tuple[list[HeteroData], np.ndarray]:
    """Graphs of the SMILES the run's molecule builder accepts (conformed to the checkpoint's
    schema) and the boolean mask ``[len(smiles)]`` of those (callers exclude the rejected ones for
    every method alike)."""
    graphs = pre.build(list(smiles), "molecule", skip_invalid=True)
    ok = np.array([g is not None for g in graphs], dtype=bool)
    return [g for g in graphs if g is not None], ok


def embed_molecules(pre: Pretrained, graphs: list[HeteroData]) -> np.ndarray:
    """Molecule-level embeddings ``[len(graphs), hidden_dim]`` (float32) of ``pre``'s encoder."""
    return pre.embed_graphs(graphs, "molecule").numpy().astype(np.float32)


def leakage_rows(dataset: str, splits: dict[str, Iterable[str]], seen: set[str]) -> list[dict[str, Any]]:
    """Tidy rows: per split, molecules and how many of them (InChIKey14) the pretraining corpus held."""
    rows = []
    for split, smiles in splits.items():
        smiles = list(smiles)
        rows.append({"dataset": dataset, "split": split, "molecules": len(smiles),
                     "seen_in_pretraining": sum(inchikey14(s) in seen for s in smiles)})
    return rows


def guard_note(plan: Any) -> str:
    """One sentence on the leakage guard of ``plan``: on (with what it left out) or off."""
    dataset = plan.dataset
    if not plan.config.data.exclude_evaluation_test_molecules:
        return ("The leakage guard is off (`data.exclude_evaluation_test_molecules: false`): the counts "
                "above are molecules the pretraining saw.")
    dropped = getattr(dataset, "dropped", None)
    if dropped is None:
        return "The leakage guard is on (no evaluation of this run holds molecules out)."
    if dropped == 0:
        return ("The leakage guard (`data.exclude_evaluation_test_molecules`) is on; no pretraining record "
                "held an evaluation's held-out molecule, so it left none out.")
    return (f"The leakage guard (`data.exclude_evaluation_test_molecules`) left {dropped} pretraining "
            f"records of {len(dataset.dropped_molecules)} held-out molecules out of pretraining "
            f"(`skipped_records.csv`, component `leakage_guard`).")
