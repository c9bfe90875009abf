"""Atom and bond vocabularies for molecule graphs (OGB/PyG-style, each with an "other" bucket).

A categorical value outside its vocabulary maps to the last index, ``len(vocab)``: so a feature
with vocabulary ``V`` has ``num_classes = len(V) + 1``. :func:`byte_tables` turns the
vocabularies into one NumPy table indexed by RDKit's raw value as a byte, so a whole molecule is
encoded with one gather (see :mod:`.rdkit_builder`).
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem

from cgc_framework.plugin import EdgeTypeSpec, FeatureSpec, GraphSchema, NodeTypeSpec
from cgc_framework.plugin.roles import MOLECULE, MOLECULE_PART

HYB = Chem.rdchem.HybridizationType
BT = Chem.rdchem.BondType
CHI = Chem.rdchem.ChiralType
ST = Chem.rdchem.BondStereo

ATOM_VOCAB: dict[str, list] = {
    "atomic_num": list(range(1, 119)),
    "chirality": [CHI.CHI_UNSPECIFIED, CHI.CHI_TETRAHEDRAL_CW, CHI.CHI_TETRAHEDRAL_CCW],
    "degree": list(range(0, 11)),
    "formal_charge": list(range(-5, 6)),
    "num_hs": list(range(0, 9)),
    "num_radical_electrons": list(range(0, 5)),
    "hybridization": [HYB.S, HYB.SP, HYB.SP2, HYB.SP3, HYB.SP3D, HYB.SP3D2],
    "is_aromatic": [False, True],
    "is_in_ring": [False, True],
}
ATOM_DESCRIPTIONS = {
    "atomic_num": "element, Z = 1..118",
    "chirality": "RDKit chiral tag (unspecified, CW, CCW)",
    "degree": "number of explicit neighbours, 0..10",
    "formal_charge": "formal charge, -5..+5",
    "num_hs": "total hydrogens (implicit + explicit), 0..8",
    "num_radical_electrons": "radical electrons, 0..4",
    "hybridization": "S, SP, SP2, SP3, SP3D, SP3D2",
    "is_aromatic": "aromatic atom",
    "is_in_ring": "atom in any ring",
}
BOND_VOCAB: dict[str, list] = {
    "bond_type": [BT.SINGLE, BT.DOUBLE, BT.TRIPLE, BT.AROMATIC],
    "stereo": [ST.STEREONONE, ST.STEREOANY, ST.STEREOZ, ST.STEREOE, ST.STEREOCIS, ST.STEREOTRANS],
    "is_conjugated": [False, True],
    "is_in_ring": [False, True],
}
BOND_DESCRIPTIONS = {
    "bond_type": "single, double, triple, aromatic",
    "stereo": "none, any, Z, E, cis, trans",
    "is_conjugated": "conjugated bond",
    "is_in_ring": "bond in any ring",
}

ATOM_MASS_SCALE = 100.0  # the continuous mass feature is in units of 100 Da


def byte_tables(vocab: dict[str, list]) -> np.ndarray:
    """int64 ``[F, 256]``: row ``f``, column ``v`` is the vocabulary index of raw value ``v`` of
    feature ``f`` given as a byte, so a whole ``[N, F]`` uint8 block is encoded with one gather
    (:func:`encode`). A feature whose vocabulary has negative values (the formal charge) reads the
    byte as signed (255 is -1); every byte outside the vocabulary maps to ``len(vocab[f])``, the
    "other" bucket."""
    table = np.empty((len(vocab), 256), dtype=np.int64)
    for f, values in enumerate(vocab.values()):
        table[f] = len(values)
        for i, v in enumerate(values):
            table[f, int(v) & 0xFF] = i
    return table


_COLUMNS = np.arange(64)


def encode(raw: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Raw values as bytes, uint8 ``[N, F]`` -> vocabulary indices, int64 ``[N, F]``."""
    return table[_COLUMNS[: table.shape[0]], raw]


def molecule_schema(with_distance: bool = False) -> GraphSchema:
    """Schema of the molecule builders; ``with_distance`` adds the 3D bond length (angstrom)."""
    atom = NodeTypeSpec(
        tuple(FeatureSpec.categorical(n, len(v) + 1, ATOM_DESCRIPTIONS[n]) for n, v in ATOM_VOCAB.items())
        + (FeatureSpec.continuous("mass", unit="100 Da", description="atomic mass / 100"),),
        name="atom", description="heavy atoms of the compound (RDKit)", role=MOLECULE_PART)
    distance = ((FeatureSpec.continuous("distance", unit="angstrom",
                                        description="bond length in the ETKDG conformer"),)
                if with_distance else ())
    bond = EdgeTypeSpec(
        tuple(FeatureSpec.categorical(n, len(v) + 1, BOND_DESCRIPTIONS[n]) for n, v in BOND_VOCAB.items())
        + distance,
        src="atom", rel="bond", dst="atom", description="covalent bonds, both directions")
    compound = NodeTypeSpec((), name="compound", role=MOLECULE,
                            description="one node per molecule; no input features of its own")
    membership = [EdgeTypeSpec((), src="atom", rel="in", dst="compound", description="atom of the molecule"),
                  EdgeTypeSpec((), src="compound", rel="has", dst="atom", description="reverse of atom-in")]
    return GraphSchema.of([atom, compound], [bond] + membership)
