"""Params of the molecule plugin's components; light imports only, so validating a config does not
import RDKit or torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RDKitMoleculeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fragments: Literal["keep", "largest"] = "largest"
    """``largest``: keep the largest fragment (drops salts and solvents, e.g. ``.Cl``);
    ``keep``: build every fragment as one disconnected graph."""
    conformer_3d: bool = False
    """Embed one ETKDGv3 conformer and add each bond's length (angstrom) as a continuous bond
    feature. Off by default: it costs ~10-50 ms per molecule and can fail for strained cages
    (such a molecule is then a skipped record with the reason)."""
    conformer_seed: int = Field(0, ge=0, description="random seed of the ETKDG embedding")
    descriptors: bool = Field(
        False, description="set the graph attribute mol_descriptors [1, 20]: RDKit 2D descriptors (weight, logP, "
                           "TPSA, ring and H-bond counts, ...), signed-log scaled; targets of descriptor_prediction, "
                           "never input features")
    fingerprint_bits: int = Field(
        0, ge=0, multiple_of=8, description="0, or set the graph attribute mol_fingerprint: ECFP4 folded to this many "
                                            "bits, packed (uint8 [1, bits/8]); a target of molecule_properties, "
                                            "never an input feature")
