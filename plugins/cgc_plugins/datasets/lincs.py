"""LINCS Cell Painting plate dataset (cpg0004, Way et al. 2022): one record per treated well."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from cgc_framework.plugin import Dataset, Record, SkipLog

from .params import LincsPlateParams
from .tables import read_table, require_columns

EMBEDDED_DIR = Path(__file__).parent / "data" / "lincs_a549_SQ00015054"
EMBEDDED_PROFILES = EMBEDDED_DIR / "lincs_cpg0004_A549_48h_SQ00015054_normalized_feature_select.csv.gz"
EMBEDDED_COMPOUNDS = EMBEDDED_DIR / "compounds.csv.gz"
WELL_COLUMNS = ("Metadata_Plate", "Metadata_Well", "Metadata_broad_sample", "Metadata_mmoles_per_liter")


def as_number(value: Any) -> Any:
    """A table cell as a float; an empty cell is NaN and text that is no number stays text, so that
    the record checks reject the record naming the value (rather than a silent 0 or None)."""
    if value is None or value is pd.NA:
        return math.nan
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    if isinstance(value, bool):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


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
        wells = read_table(self.profiles_path, "profile table", usecols=meta_cols)
        require_columns(self.profiles_path, wells.columns, WELL_COLUMNS, "profile table",
                        "lincs_cellpainting reads LINCS cpg0004 plates (pycytominer level 4); for other "
                        "tables use the cellpainting_experiments dataset with a column map")
        compounds = read_table(self.compounds_path, "compound table")
        require_columns(self.compounds_path, compounds.columns, ("broad_sample", "smiles"), "compound table")
        compounds = compounds[[c for c in ("broad_sample", "pert_iname", "smiles") if c in compounds.columns]]
        return wells.merge(compounds.drop_duplicates("broad_sample"), left_on="Metadata_broad_sample",
                           right_on="broad_sample", how="left")

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
                        "dose_um": as_number(r["Metadata_mmoles_per_liter"]),
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
