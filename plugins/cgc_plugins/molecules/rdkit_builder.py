"""SMILES -> atom/bond graph with RDKit (optionally with ETKDG 3D bond lengths)."""

from __future__ import annotations

import itertools
import re
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem
from rdkit.Chem.MolStandardize import rdMolStandardize
from torch_geometric.data import HeteroData

from cgc_framework.contracts import GraphBuilder
from cgc_framework.graph import GraphSchema
from cgc_framework.records import RecordError

from .features import ATOM_MASS_SCALE, ATOM_VOCAB, BOND_VOCAB, encode, lookup_tables, molecule_schema

_ATOM_LUT = lookup_tables(ATOM_VOCAB)
_BOND_LUT = lookup_tables(BOND_VOCAB)


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


def parse_smiles(smiles: str) -> Chem.Mol:
    """Parse and sanitize; raise ``RecordError`` with RDKit's own reason."""
    if not isinstance(smiles, str) or not smiles.strip():
        raise RecordError("empty SMILES")
    capture = getattr(rdBase, "CaptureErrorLog", None)
    if capture is not None:
        with capture() as log:
            mol = Chem.MolFromSmiles(smiles)
        messages = log.messages if mol is None else ""
    else:  # older RDKit: no captured reason
        with rdBase.BlockLogs():
            mol = Chem.MolFromSmiles(smiles)
        messages = ""
    if mol is None:
        raise RecordError(f"invalid SMILES: {_rdkit_reason(messages)}")
    if mol.GetNumAtoms() == 0:
        raise RecordError("SMILES has no atoms")
    return mol


def _rdkit_reason(messages: str) -> str:
    """RDKit's log lines without timestamps or repeats, on one line."""
    lines: list[str] = []
    for line in str(messages).splitlines():
        text = " ".join(line.split("]", 1)[-1].split()) if line.startswith("[") else " ".join(line.split())
        if text and text not in lines:
            lines.append(text)
    return "; ".join(lines) or "RDKit could not parse or sanitize it"


class RDKitMoleculeBuilder(GraphBuilder):
    """Molecule graph: one ``atom`` node per heavy atom, ``(atom, bond, atom)`` edges both ways,
    one ``compound`` node joined to every atom. Features: :func:`.features.molecule_schema`."""

    modality = "molecule"
    version = "2"

    def __init__(self, params: RDKitMoleculeParams | None = None):
        self.params = params or RDKitMoleculeParams()
        self._largest = rdMolStandardize.LargestFragmentChooser() if self.params.fragments == "largest" else None

    def schema(self) -> GraphSchema:
        return molecule_schema(with_distance=self.params.conformer_3d)

    def params_key(self) -> dict:
        return self.params.model_dump()

    def mol(self, smiles: str) -> Chem.Mol:
        mol = parse_smiles(smiles)
        # A SMILES without '.' is one connected fragment: skip the fragment search.
        if self._largest is not None and "." in smiles and len(Chem.GetMolFrags(mol)) > 1:
            mol = self._largest.choose(mol)
        return mol

    def build(self, value: str) -> HeteroData:
        mol = self.mol(value)
        lengths = bond_lengths(mol, self.params.conformer_seed) if self.params.conformer_3d else None
        return mol_to_graph(mol, lengths, has_isotopes=_ISOTOPE_LABEL.search(value) is not None)


def bond_lengths(mol: Chem.Mol, seed: int = 0) -> np.ndarray:
    """Length (angstrom) of each bond of ``mol`` (``[num_bonds]``, bond order) in one ETKDGv3
    conformer embedded with explicit hydrogens; raise ``RecordError`` when embedding fails."""
    withh = Chem.AddHs(mol)
    ps = AllChem.ETKDGv3()
    ps.randomSeed = seed
    if AllChem.EmbedMolecule(withh, ps) != 0:
        raise RecordError("ETKDG could not embed a 3D conformer (set conformer_3d: false to skip 3D)")
    pos = withh.GetConformer().GetPositions()  # heavy atoms keep their indices after AddHs
    ends = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()],
                    dtype=np.int64).reshape(-1, 2)
    return np.linalg.norm(pos[ends[:, 0]] - pos[ends[:, 1]], axis=1)


def mol_to_graph(mol: Chem.Mol, lengths: np.ndarray | None = None, *,
                 has_isotopes: bool = True) -> HeteroData:
    """Tensors of one RDKit molecule, in the order of :func:`.features.molecule_schema`.

    ``atom.x_cat`` int64 ``[N, 9]``, ``atom.x`` float32 ``[N, 1]`` (mass / 100 Da);
    ``bond.edge_attr_cat`` int64 ``[2B, 4]`` (edge ``2k`` is bond ``k`` forward, ``2k+1`` reverse),
    ``bond.edge_attr`` float32 ``[2B, 0]`` or ``[2B, 1]`` (``lengths`` in angstrom).

    ``has_isotopes=False`` (the caller knows the SMILES has no isotope label such as ``[13C]``)
    takes masses from the periodic-table lookup instead of one ``GetMass`` call per atom; the
    values are the same (RDKit's ``Atom.GetMass`` is the standard atomic weight for isotope 0).

    Cost model: creating RDKit's Python atom/bond wrappers and each per-atom call is the floor
    (~3-4 us per atom on this machine), so per-atom calls are kept to 7 per atom and 5 per bond:
    degree comes from the bond list (``bincount``), ring membership from one ``RingInfo`` call,
    masses from a table, and the categorical columns are encoded with one NumPy gather each.
    """
    n = mol.GetNumAtoms()
    nb = mol.GetNumBonds()
    # One pass over the atoms: 7 raw values per atom (enums are ints; NumPy converts them).
    # GetAtomWithIdx over a range: mol.GetAtoms()'s Python-level sequence wrapper is slower.
    raw = np.empty((n, 9), dtype=np.int64)
    raw[:, [0, 1, 3, 4, 5, 6, 7]] = np.array(
        [(a.GetAtomicNum(), a.GetChiralTag(), a.GetFormalCharge(), a.GetTotalNumHs(),
          a.GetNumRadicalElectrons(), a.GetHybridization(), a.GetIsAromatic())
         for a in map(mol.GetAtomWithIdx, range(n))],
        dtype=np.int64).reshape(n, 7)
    bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), b.GetBondType(), b.GetStereo(),
                       b.GetIsConjugated()) for b in map(mol.GetBondWithIdx, range(nb))],
                     dtype=np.int64).reshape(nb, 5)
    ends = bonds[:, :2]
    raw[:, 2] = np.bincount(ends.ravel(), minlength=n)             # degree = explicit neighbours
    rings = mol.GetRingInfo()
    in_ring = np.zeros(n, dtype=np.int64)
    atom_rings = rings.AtomRings()
    if atom_rings:
        in_ring[np.fromiter(itertools.chain.from_iterable(atom_rings), dtype=np.int64)] = 1
    raw[:, 8] = in_ring
    if has_isotopes:
        mass = np.array([a.GetMass() for a in map(mol.GetAtomWithIdx, range(n))], dtype=np.float64)
    else:
        mass = _ATOMIC_WEIGHT[np.clip(raw[:, 0], 0, len(_ATOMIC_WEIGHT) - 1)]
    bond_raw = np.empty((nb, 4), dtype=np.int64)
    bond_raw[:, :3] = bonds[:, 2:]
    bond_ring = np.zeros(nb, dtype=np.int64)
    bond_rings = rings.BondRings()
    if bond_rings:
        bond_ring[np.fromiter(itertools.chain.from_iterable(bond_rings), dtype=np.int64)] = 1
    bond_raw[:, 3] = bond_ring
    bond_cat = np.repeat(encode(bond_raw, *_BOND_LUT), 2, axis=0)
    edge_index = np.empty((2, 2 * nb), dtype=np.int64)
    edge_index[0, 0::2], edge_index[1, 0::2] = ends[:, 0], ends[:, 1]
    edge_index[0, 1::2], edge_index[1, 1::2] = ends[:, 1], ends[:, 0]
    if lengths is None:
        edge_attr = torch.zeros(2 * nb, 0)
    else:
        edge_attr = torch.from_numpy(np.repeat(lengths.astype(np.float32), 2).reshape(-1, 1))
    member = np.zeros((2, n), dtype=np.int64)                        # row 0: atom index, row 1: 0
    member[0] = np.arange(n)
    member_t = torch.from_numpy(member)
    return HeteroData({
        "atom": {"x": torch.from_numpy((mass / ATOM_MASS_SCALE).astype(np.float32).reshape(n, 1)),
                 "x_cat": torch.from_numpy(encode(raw, *_ATOM_LUT)), "num_nodes": n},
        "compound": {"x": torch.zeros(1, 0), "x_cat": torch.zeros(1, 0, dtype=torch.long), "num_nodes": 1},
        ("atom", "bond", "atom"): {"edge_index": torch.from_numpy(edge_index),
                                   "edge_attr": edge_attr,
                                   "edge_attr_cat": torch.from_numpy(bond_cat)},
        ("atom", "in", "compound"): {"edge_index": member_t},
        ("compound", "has", "atom"): {"edge_index": member_t.flip(0)},
    })


_ATOMIC_WEIGHT = np.array([Chem.GetPeriodicTable().GetAtomicWeight(z) for z in range(119)], dtype=np.float64)
"""Standard atomic weight (Da) by atomic number 0..118, as ``Atom.GetMass`` gives for isotope 0."""

_ISOTOPE_LABEL = re.compile(r"\[\d")
"""An isotope label in SMILES: a bracket atom starting with a mass number, e.g. ``[13C]``, ``[2H]``."""
