"""Whole-molecule descriptors computed by RDKit: targets for molecule-level self-supervision.

``rdkit_molecule`` with ``descriptors: true`` sets the graph attribute ``mol_descriptors`` (float32
``[1, D]``, one row per molecule) to the values below, in this order, each passed through
``sign(v) * log1p(|v|)`` so that sizes and counts of large and small molecules live on one scale.
They are never input features: the ``molecule_properties`` task regresses them from the
molecule-level embedding (as GROVER and MolE do with semantic molecule properties), which teaches
the encoder the physico-chemistry that fingerprints do not spell out. All are 2D and fast (~0.1 ms
per molecule together); none needs a conformer. With ``fingerprint_bits: N`` the builder also sets
``mol_fingerprint`` (uint8 ``[1, N/8]``, the ECFP4 bits packed), which the same task predicts (the
substructures a fingerprint names).
"""

from __future__ import annotations

import math
from typing import Callable

from rdkit import Chem
from rdkit.Chem import Crippen, Descriptors, rdMolDescriptors

DESCRIPTORS: tuple[tuple[str, Callable[[Chem.Mol], float]], ...] = (
    ("mol_weight", Descriptors.MolWt),
    ("logp", Crippen.MolLogP),
    ("molar_refractivity", Crippen.MolMR),
    ("tpsa", rdMolDescriptors.CalcTPSA),
    ("labute_asa", rdMolDescriptors.CalcLabuteASA),
    ("heavy_atoms", lambda m: m.GetNumHeavyAtoms()),
    ("heteroatoms", rdMolDescriptors.CalcNumHeteroatoms),
    ("h_bond_donors", rdMolDescriptors.CalcNumHBD),
    ("h_bond_acceptors", rdMolDescriptors.CalcNumHBA),
    ("rotatable_bonds", rdMolDescriptors.CalcNumRotatableBonds),
    ("rings", rdMolDescriptors.CalcNumRings),
    ("aromatic_rings", rdMolDescriptors.CalcNumAromaticRings),
    ("aliphatic_rings", rdMolDescriptors.CalcNumAliphaticRings),
    ("saturated_rings", rdMolDescriptors.CalcNumSaturatedRings),
    ("heterocycles", rdMolDescriptors.CalcNumHeterocycles),
    ("fraction_csp3", rdMolDescriptors.CalcFractionCSP3),
    ("stereocenters", lambda m: rdMolDescriptors.CalcNumAtomStereoCenters(m)),
    ("amide_bonds", rdMolDescriptors.CalcNumAmideBonds),
    ("formal_charge", lambda m: Chem.GetFormalCharge(m)),
    ("halogens", lambda m: sum(a.GetAtomicNum() in (9, 17, 35, 53) for a in m.GetAtoms())),
)
NAMES = tuple(name for name, _ in DESCRIPTORS)


def fingerprint_bits(mol: Chem.Mol, n_bits: int) -> bytes:
    """ECFP4 (Morgan radius 2) of ``mol`` folded to ``n_bits`` bits, packed 8 per byte (``n_bits / 8``
    bytes, most significant bit first: ``numpy.unpackbits`` restores the bit vector)."""
    import numpy as np
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    gen = _GENERATORS.get(n_bits)
    if gen is None:
        gen = _GENERATORS[n_bits] = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=n_bits)
    arr = np.zeros((n_bits,), dtype=np.uint8)
    DataStructs.ConvertToNumpyArray(gen.GetFingerprint(mol), arr)
    return np.packbits(arr).tobytes()


_GENERATORS: dict = {}


def descriptor_row(mol: Chem.Mol) -> list[float]:
    """The :data:`DESCRIPTORS` of ``mol``, each as ``sign(v) * log1p(|v|)`` (NaN -> 0)."""
    out = []
    for _, fn in DESCRIPTORS:
        v = float(fn(mol))
        out.append(0.0 if not math.isfinite(v) else math.copysign(math.log1p(abs(v)), v))
    return out


__all__ = ["DESCRIPTORS", "NAMES", "descriptor_row", "fingerprint_bits"]
