"""LINCS Cell Painting plate dataset (cpg0004, Way et al. 2022): one record per treated well."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from cgc_framework.plugin import Dataset, Record, SkipLog

from .params import LincsPlateParams

EMBEDDED_DIR = Path(__file__).parent / "data" / "lincs_a549_SQ00015054"
EMBEDDED_PROFILES = EMBEDDED_DIR / "lincs_cpg0004_A549_48h_SQ00015054_normalized_feature_select.csv.gz"
EMBEDDED_COMPOUNDS = EMBEDDED_DIR / "compounds.csv.gz"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class LincsPlateDataset(Dataset):
    """Treated wells of LINCS Cell Painting plates, joined to compound SMILES.

    Record id: ``<plate>:<well>``. Fields: ``smiles`` (``None`` when the compound table has none),
    ``compound_id`` (Broad sample id), ``compound_name``, ``dose_um`` (µM), ``moa``, ``target``,
    ``plate``, ``well``, ``cell_line``. DMSO wells are controls, not experiments: they are counted
    in :meth:`describe` and not yielded.
    """

    def __init__(self, params: LincsPlateParams | None = None):
        p = params or LincsPlateParams()
        self.profiles_path = Path(p.profiles or EMBEDDED_PROFILES)
        self.compounds_path = Path(p.compounds or EMBEDDED_COMPOUNDS)
        self.embedded = p.profiles is None
        self._counts: dict[str, int] = {}

    def _read(self) -> pd.DataFrame:
        meta_cols = lambda c: c.startswith("Metadata_")  # noqa: E731 - only metadata is needed here
        wells = pd.read_csv(self.profiles_path, usecols=meta_cols)
        compounds = pd.read_csv(self.compounds_path, usecols=["broad_sample", "pert_iname", "smiles"])
        return wells.merge(compounds, left_on="Metadata_broad_sample", right_on="broad_sample", how="left")

    def records(self, skips: SkipLog) -> Iterator[Record]:
        df = self._read()
        control = (df["Metadata_broad_sample"] == "DMSO") | (df.get("Metadata_pert_type") == "control")
        self._counts = {"wells": len(df), "control_wells": int(control.sum())}
        for row in df[~control].itertuples(index=False):
            r = row._asdict()
            smiles = r.get("smiles")
            yield Record(
                id=f"{r['Metadata_Plate']}:{r['Metadata_Well']}",
                fields={"smiles": smiles if isinstance(smiles, str) else None,
                        "compound_id": r["Metadata_broad_sample"],
                        "compound_name": r.get("pert_iname"),
                        "dose_um": float(r["Metadata_mmoles_per_liter"]),
                        "moa": r.get("Metadata_moa"), "target": r.get("Metadata_target"),
                        "plate": r["Metadata_Plate"], "well": r["Metadata_Well"],
                        "cell_line": r.get("Metadata_cell_id")})

    def describe(self) -> dict[str, Any]:
        info = {"profiles": f"{self.profiles_path.name} (sha256 {sha256(self.profiles_path)[:12]}…)",
                "compounds": self.compounds_path.name,
                "source": "LINCS Cell Painting cpg0004 (Way et al. 2022), CC0 1.0"
                          + (" — embedded default subset, see cgc_plugins/datasets/data/README.md"
                             if self.embedded else "")}
        if self._counts:
            info["wells"] = (f"{self._counts['wells']} ({self._counts['control_wells']} DMSO control "
                             f"wells, not experiments)")
        return info
