"""A seeded structural causal model (SCM) of Cell Painting experiments with a confounder, whose
true interventional effects are known analytically (the do-calculus check of proposal §2.4.3).

Variables (``F`` = the embedded LINCS plate's CellProfiler feature names, or the first
``n_features`` of them; every vector is in robust-z units like the real profiles):

* plates ``b = 0 .. n_plates - 1`` with batch ``B_b = b mod 2`` — the **confounder**;
* control (pre-intervention) state of plate ``b``:
  ``c_b = B_b * beta + plate_sd * eta_b``, ``beta ~ batch_sd * N(0, I_F)``, ``eta_b ~ N(0, I_F)``;
* compounds: ``n_compounds`` real compounds (SMILES, ids, MoA, targets) of the embedded LINCS
  compound table, sorted by Broad id; compound ``k`` belongs to group ``k mod 2`` and has the true
  effect vector ``tau_k = effect_sd * sum_r a_kr w_r / sqrt(R)`` with ``R = effect_rank`` shared
  effect programmes ``w_r ~ N(0, I_F)`` and loadings ``a_kr ~ N(0, 1)`` (low rank, like real
  morphological responses, which share a few axes);
* treatment assignment (confounded): on a plate of batch ``B``, a well gets, with probability
  ``confounding``, a compound drawn uniformly from group ``B``, else one from the other group;
  its dose is drawn uniformly from ``doses_um``;
* outcome: ``y = c_b + h(d) * tau_k + noise_sd * eps``, ``eps ~ N(0, I_F)``, with the Hill
  function ``h(d) = d^n / (d^n + EC50^n)`` (``n = hill``, ``EC50 = ec50_um``).

Hence the true interventional effect is ``E[y | do(k, d), control c] - c = h(d) * tau_k`` for every
control state ``c``, while the observational regression of ``y`` on (compound, dose) alone converges
to ``E[y | k, d] = E[c_B | k] + h(d) * tau_k`` (:meth:`SCMCellPainting.observational_mean`): biased by
the batch the compound was mostly given in. A model that conditions on the control state can
identify the effect; a purely correlational one cannot.

Records look like :class:`~cgc_plugins.datasets.experiment.CellPaintingExperiments` records (same
fields, :class:`~cgc_plugins.cells.profile_builder.CellProfile` with the plate's control state), plus
``batch`` (the confounder ``B``, for analysis; no builder reads it). Seeded: the same params give
the same records on every machine; plates are generated one at a time (streaming).
"""

from __future__ import annotations

import zlib
from functools import cached_property
from typing import Any, Iterator

import numpy as np
import pandas as pd

from cgc_framework.plugin import Dataset, Record, SkipLog
from cgc_plugins.cells.feature_names import is_feature_column
from cgc_plugins.cells.profile_builder import CellProfile

from .experiment import assign_split, fold_of, group_key
from .lincs import EMBEDDED_COMPOUNDS, EMBEDDED_PROFILES
from .params import SCMParams
from .params import SplitParams as SplitParams

ROWS = "ABCDEFGHIJKLMNOP"


class SCMCellPainting(Dataset):
    """Registered as ``scm_cellpainting``; see the module docstring.

    Attributes (the ground truth): ``features`` (``F`` names), ``compounds`` (table rows),
    ``effects`` ``[C, F]`` (``tau``), ``batch_shift`` ``[F]`` (``beta``), ``controls`` ``[P, F]`` (``c_b``).
    """

    def __init__(self, params: SCMParams | None = None):
        self.p = p = params or SCMParams()
        header = pd.read_csv(EMBEDDED_PROFILES, nrows=0).columns
        feats = [c for c in header if is_feature_column(c)]
        self.features: tuple[str, ...] = tuple(feats[: p.n_features] if p.n_features else feats)
        table = pd.read_csv(EMBEDDED_COMPOUNDS)
        table = table[table.smiles.notna()].drop_duplicates("smiles").sort_values("broad_sample")
        if len(table) < p.n_compounds:
            raise ValueError(f"n_compounds={p.n_compounds}: the embedded table has {len(table)} compounds with SMILES")
        self.compounds = table.head(p.n_compounds).reset_index(drop=True)
        self.compound_ids: list[str] = list(self.compounds.broad_sample.astype(str))
        self.groups = np.arange(p.n_compounds) % 2
        rng = np.random.default_rng([p.seed, 0])
        f = len(self.features)
        loadings = rng.standard_normal((p.n_compounds, p.effect_rank))
        programmes = rng.standard_normal((p.effect_rank, f))
        self.effects = (p.effect_sd * loadings @ programmes / np.sqrt(p.effect_rank)).astype(np.float64)
        self.batch_shift = (p.batch_sd * rng.standard_normal(f)).astype(np.float64)
        self.batches = np.arange(p.n_plates) % 2
        self.controls = np.stack([b * self.batch_shift + p.plate_sd * rng.standard_normal(f)
                                  for b in self.batches]).astype(np.float64)
        self.split_counts: dict[str, int] = {}

    # -- ground truth --------------------------------------------------------------------------

    def hill_response(self, dose_um: float | np.ndarray) -> float | np.ndarray:
        """``h(d) = d^n / (d^n + EC50^n)`` (0 at d = 0, 1/2 at EC50, -> 1)."""
        d = np.asarray(dose_um, dtype=float) ** self.p.hill
        out = d / (d + self.p.ec50_um ** self.p.hill)
        return float(out) if np.ndim(out) == 0 else out

    def index(self, compound_id: str) -> int:
        return self.compound_ids.index(str(compound_id))

    def true_effect(self, compound_id: str, dose_um: float) -> np.ndarray:
        """``E[y | do(compound, dose), c] - c = h(d) tau_k``, ``[F]`` (independent of ``c``)."""
        return self.hill_response(dose_um) * self.effects[self.index(compound_id)]

    def interventional_mean(self, compound_id: str, dose_um: float, control: np.ndarray) -> np.ndarray:
        """``E[y | do(compound, dose)]`` on the control state ``control`` ``[F]``."""
        return np.asarray(control, float) + self.true_effect(compound_id, dose_um)

    def plate_weights(self, compound_id: str) -> np.ndarray:
        """``P(plate b | compound)`` ``[P]`` under the assignment mechanism (equal wells per plate)."""
        k = self.index(compound_id)
        n_same = np.array([(self.groups == b).sum() for b in self.batches])
        n_other = np.array([(self.groups != b).sum() for b in self.batches])
        w = np.where(self.groups[k] == self.batches, self.p.confounding / n_same,
                     (1 - self.p.confounding) / np.maximum(n_other, 1))
        return w / w.sum()

    def observational_mean(self, compound_id: str, dose_um: float) -> np.ndarray:
        """``E[y | compound, dose] = sum_b P(b | compound) c_b + h(d) tau_k``, ``[F]``: the limit of a
        correlational regressor that does not condition on the control state or the batch."""
        return self.plate_weights(compound_id) @ self.controls + self.true_effect(compound_id, dose_um)

    # -- records ---------------------------------------------------------------------------------

    def _fields(self, k: int) -> dict[str, Any]:
        row = self.compounds.iloc[k]
        get = lambda c: row[c] if c in row and isinstance(row[c], str) else None  # noqa: E731
        from .experiment import inchikey14_of

        smiles = get("smiles")
        return {"compound_id": self.compound_ids[k], "compound_name": get("pert_iname"), "smiles": smiles,
                "inchikey": get("InChIKey"), "moa": get("moa"), "target": get("target"), "cell_line": "SCM",
                "source": "scm", "time_h": None, "activity": None, "active": True,
                "compound_key": inchikey14_of(smiles) or self.compound_ids[k]}

    def records(self, skips: SkipLog) -> Iterator[Record]:
        p = self.p
        self.split_counts = {}
        groups = [np.flatnonzero(self.groups == g) for g in (0, 1)]
        for b in range(p.n_plates):
            rng = np.random.default_rng([p.seed, 1, b])
            batch = int(self.batches[b])
            plate = f"SCM{p.seed}-P{b:02d}"
            for w in range(p.wells_per_plate):
                favoured = rng.random() < p.confounding
                pool = groups[batch] if favoured else groups[1 - batch]
                k = int(rng.choice(pool))
                dose = float(p.doses_um[int(rng.integers(len(p.doses_um)))])
                y = self.controls[b] + self.hill_response(dose) * self.effects[k] \
                    + p.noise_sd * rng.standard_normal(len(self.features))
                well = f"{ROWS[w // 24 % 16]}{w % 24 + 1:02d}"
                rid = f"{plate}:{well}"
                fields = self._fields(k)
                fields.update(dose_um=dose, plate=plate, well=well, batch=batch)
                group = group_key(fields, p.split)
                part = assign_split(group, p.split, rid)
                self.split_counts[part] = self.split_counts.get(part, 0) + 1
                if part not in p.include_splits:
                    continue
                fields["split"] = part
                if p.split.folds is not None:
                    fields["fold"] = fold_of(group, p.split)
                fields["cell_profile"] = CellProfile(self.features, y.astype(np.float32),
                                                     self.controls[b].astype(np.float32), dose, plate)
                yield Record(rid, fields)

    @cached_property
    def _checksum(self) -> str:
        blob = np.concatenate([self.effects.ravel(), self.controls.ravel()]).astype(np.float32).tobytes()
        return f"{zlib.crc32(blob):08x}"

    def describe(self) -> dict[str, Any]:
        p = self.p
        return {"source": "synthetic structural causal model with a plate/batch confounder (scm_cellpainting); "
                          "compounds and feature names are real (embedded LINCS plate), responses are simulated",
                "model": (f"y = c_b + h(d) tau_k + {p.noise_sd:g} eps; c_b = B_b beta + {p.plate_sd:g} eta_b; "
                          f"P(compound of group B | batch B) = {p.confounding:g}; h = Hill(EC50 {p.ec50_um:g} uM, "
                          f"n {p.hill:g})"),
                "size": (f"{p.n_compounds} compounds x {len(p.doses_um)} doses, {p.n_plates} plates x "
                         f"{p.wells_per_plate} wells, {len(self.features)} features, seed {p.seed} "
                         f"(truth crc32 {self._checksum})"),
                f"split by {p.split.by} (seed {p.split.seed})": self.split_counts}
