"""Params of the protein plugin's components; light imports only, so validating a config does not
import Biopython, SciPy or torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cgc_framework.plugin.params import ExistingPath


class BiopythonProteinParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chains: list[str] | None = Field(None, description="chain ids to keep; null = every protein chain")
    model_index: int = Field(0, ge=0, description="model of an NMR/multi-model file")
    contact: Literal["ca", "closest_atom"] = Field(
        "ca", description="'near' edges: CA-CA distance, or closest heavy-atom distance, under the cutoff")
    cutoff: float = Field(8.0, gt=0, le=30, description="'near' edge cutoff in angstrom")
    chain_break: float = Field(4.2, gt=0, description="consecutive CAs farther apart (angstrom) are a "
                                                      "break: no 'next' edge (missing residues)")
    secondary_structure: Literal["auto", "dssp", "geometry"] = Field(
        "auto", description="auto: DSSP when mkdssp is installed, else the backbone-geometry fallback")
    dssp_executable: str = "mkdssp"
    conservation_dir: ExistingPath | None = Field(
        None, description="folder of per-structure sidecar CSVs '<file stem>.csv' with columns "
                          "chain,residue_number[,insertion_code],conservation")
    plddt: Literal["auto", "bfactor", "none"] = Field(
        "auto", description="auto: CA B-factor as pLDDT for AlphaFold models only; bfactor: always")
    ligands: bool = Field(False, description="keep non-water HETATM groups as 'ligand' nodes with "
                                             "contacts to residues (off by default)")
    ligand_cutoff: float = Field(4.5, gt=0, le=15, description="ligand-residue contact: closest "
                                                               "heavy-atom distance in angstrom")
