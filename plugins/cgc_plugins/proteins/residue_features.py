"""Residue vocabularies, physicochemical scales and the protein graph schema.

Categorical features have an explicit "other/unknown" bucket at index ``len(vocab)``.
Physicochemical scales are per amino acid (side chain), from the literature cited per table;
a non-standard residue gets the "other" identity and zeros on every scale.
"""

from __future__ import annotations

import numpy as np

from cgc_framework.plugin import EdgeTypeSpec, FeatureSpec, GraphSchema, NodeTypeSpec
from cgc_framework.plugin.roles import TARGET, TARGET_PART

AMINO_ACIDS = ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
               "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")
AA_INDEX = {name: i for i, name in enumerate(AMINO_ACIDS)}
OTHER_AA = len(AMINO_ACIDS)  # index 20: UNK and any other residue name in ATOM records

SECONDARY_STRUCTURE = ("helix", "strand", "coil")
"""3-state reduction of DSSP: H, G, I -> helix; E, B -> strand; T, S, P, '-', ' ' -> coil.
Index 3 is "unknown" (DSSP gave no assignment for the residue)."""
SS_UNKNOWN = len(SECONDARY_STRUCTURE)
DSSP_TO_3 = {"H": 0, "G": 0, "I": 0, "E": 1, "B": 1, "T": 2, "S": 2, "P": 2, "-": 2, " ": 2}

# Kyte & Doolittle (1982) hydropathy.
HYDROPATHY = dict(zip(AMINO_ACIDS, (1.8, -4.5, -3.5, -3.5, 2.5, -3.5, -3.5, -0.4, -3.2, 4.5,
                                    3.8, -3.9, 1.9, 2.8, -1.6, -0.8, -0.7, -0.9, -1.3, 4.2)))
# Net side-chain charge at pH 7 (His pKa ~6.0-6.5: mostly neutral, +0.1).
CHARGE = dict(zip(AMINO_ACIDS, (0, 1, 0, -1, 0, 0, -1, 0, 0.1, 0,
                                0, 1, 0, 0, 0, 0, 0, 0, 0, 0)))
# Zamyatnin (1972) residue volume in A^3.
VOLUME = dict(zip(AMINO_ACIDS, (88.6, 173.4, 114.1, 111.1, 108.5, 143.8, 138.4, 60.1, 153.2, 166.7,
                                166.7, 168.6, 162.9, 189.9, 112.7, 89.0, 116.1, 227.8, 193.6, 140.0)))
# Grantham (1974) polarity.
POLARITY = dict(zip(AMINO_ACIDS, (8.1, 10.5, 11.6, 13.0, 5.5, 10.5, 12.3, 9.0, 10.4, 5.2,
                                  4.9, 11.3, 5.7, 5.2, 8.0, 9.2, 8.6, 5.4, 6.2, 5.9)))

PHYSCHEM_COLUMNS = ("hydropathy", "charge", "volume", "polarity")
PHYSCHEM_SCALE = np.array([1.0, 1.0, 100.0, 10.0])   # stored value = raw / scale
PHYSCHEM_TABLE = np.zeros((len(AMINO_ACIDS) + 1, 4), dtype=np.float32)  # last row: other -> 0
for _i, _aa in enumerate(AMINO_ACIDS):
    PHYSCHEM_TABLE[_i] = np.array([HYDROPATHY[_aa], CHARGE[_aa], VOLUME[_aa], POLARITY[_aa]]) / PHYSCHEM_SCALE

RESIDUE_CONTINUOUS = (
    FeatureSpec.continuous("hydropathy", unit="Kyte-Doolittle", description="side-chain hydropathy, -4.5..4.5"),
    FeatureSpec.continuous("charge", unit="e", description="net side-chain charge at pH 7 (His +0.1)"),
    FeatureSpec.continuous("volume", unit="100 A^3", description="residue volume (Zamyatnin) / 100"),
    FeatureSpec.continuous("polarity", unit="Grantham / 10", description="Grantham polarity / 10"),
    FeatureSpec.continuous("conservation", description="per-residue conservation from the sidecar CSV "
                                                       "(0 where missing; see conservation_mask)"),
    FeatureSpec.continuous("conservation_mask", description="1 = conservation measured, 0 = missing"),
    FeatureSpec.continuous("plddt", unit="pLDDT 0-100", description="AlphaFold per-residue confidence "
                                                                    "(B-factor of the CA; 0 where missing)"),
    FeatureSpec.continuous("plddt_mask", description="1 = AlphaFold model (pLDDT present), 0 = missing"),
)
RESIDUE_CATEGORICAL = (
    FeatureSpec.categorical("amino_acid", len(AMINO_ACIDS) + 1, "20 standard residues + other (UNK, ...)"),
    FeatureSpec.categorical("secondary_structure", len(SECONDARY_STRUCTURE) + 1,
                            "helix, strand, coil (DSSP 3-state or backbone geometry) + unknown"),
)


LIGAND_ELEMENTS = ("C", "N", "O", "S", "P")
HALOGENS = frozenset({"F", "CL", "BR", "I"})
LIGAND_CONTINUOUS = (
    FeatureSpec.continuous("heavy_atoms", unit="10 atoms", description="heavy atoms of the HETATM group / 10"),
    *(FeatureSpec.continuous(f"frac_{e}", description=f"fraction of the group's heavy atoms that are {e}")
      for e in LIGAND_ELEMENTS),
    FeatureSpec.continuous("frac_halogen", description="fraction that are F, Cl, Br or I"),
    FeatureSpec.continuous("frac_other", description="fraction of any other element (metals, B, Se, ...)"),
)
LIGAND_KINDS = ("ion", "molecule")
"""``ion``: one heavy atom (Cl-, Mg2+, Zn2+, ...); ``molecule``: two or more. Index 2 = other."""
LIGAND_CATEGORICAL = (
    FeatureSpec.categorical("ligand_kind", len(LIGAND_KINDS) + 1, "ion (1 heavy atom), molecule (>= 2) + other"),
)


def protein_schema(ligands: bool = False) -> GraphSchema:
    """``residue`` (x ``[N, 8]``, x_cat ``[N, 2]``), ``protein`` (no features) and the
    ``near`` / ``next`` / membership edges; residue-residue edges carry the CA distance (angstrom).
    ``ligands`` adds the ``ligand`` node type (x ``[L, 8]``, x_cat ``[L, 1]``) with
    ``(ligand, contacts, residue)`` / ``(residue, contacts, ligand)`` edges (closest heavy-atom
    distance, angstrom) and ``(ligand, in, protein)`` / ``(protein, has, ligand)`` membership."""
    residue = NodeTypeSpec(RESIDUE_CATEGORICAL + RESIDUE_CONTINUOUS, name="residue", role=TARGET_PART,
                           description="amino-acid residues of the selected chains (ATOM records)")
    # identical to the drug_target edge source's declaration, so the two schema fragments merge
    protein = NodeTypeSpec((), name="protein", description="target protein (structure)", role=TARGET)
    dist = (FeatureSpec.continuous("distance", unit="angstrom",
                                   description="CA-CA distance (closest heavy-atom distance for "
                                               "'near' edges in closest_atom mode)"),)
    edges = [
        EdgeTypeSpec(dist, src="residue", rel="near", dst="residue",
                     description="spatial proximity under the cutoff, both directions"),
        EdgeTypeSpec(dist, src="residue", rel="next", dst="residue",
                     description="sequence neighbours in one chain (no edge across a chain break), both directions"),
        EdgeTypeSpec((), src="residue", rel="in", dst="protein", description="residue of the structure"),
        EdgeTypeSpec((), src="protein", rel="has", dst="residue", description="reverse of residue-in"),
    ]
    nodes = [residue, protein]
    if ligands:
        nodes.append(NodeTypeSpec(LIGAND_CATEGORICAL + LIGAND_CONTINUOUS, name="ligand", role=TARGET_PART,
                                  description="non-water HETATM group (ligand, ion, modified residue)"))
        contact = (FeatureSpec.continuous("distance", unit="angstrom",
                                          description="closest heavy-atom distance ligand-residue"),)
        edges += [
            EdgeTypeSpec(contact, src="ligand", rel="contacts", dst="residue",
                         description="residue with a heavy atom within ligand_cutoff of the ligand"),
            EdgeTypeSpec(contact, src="residue", rel="contacts", dst="ligand",
                         description="reverse of (ligand, contacts, residue)"),
            EdgeTypeSpec((), src="ligand", rel="in", dst="protein", description="ligand of the structure"),
            EdgeTypeSpec((), src="protein", rel="has", dst="ligand", description="reverse of ligand-in"),
        ]
    return GraphSchema.of(nodes, edges)
