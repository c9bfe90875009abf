"""SMILES -> atom/bond graph with RDKit."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from rdkit import Chem, rdBase
from rdkit.Chem.MolStandardize import rdMolStandardize
from torch_geometric.data import HeteroData

from cgc_framework.contracts import GraphBuilder
from cgc_framework.graph import GraphSchema
from cgc_framework.records import RecordError

from .features import ATOM_MASS_SCALE, ATOM_VOCAB, BOND_VOCAB, index_tables, molecule_schema

_ATOM_INDEX = index_tables(ATOM_VOCAB)
_BOND_INDEX = index_tables(BOND_VOCAB)


class RDKitMoleculeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fragments: Literal["keep", "largest"] = "largest"
    """``largest``: keep the largest fragment (drops salts and solvents, e.g. ``.Cl``);
    ``keep``: build every fragment as one disconnected graph."""


def parse_smiles(smiles: str) -> Chem.Mol:
    """Parse and sanitize; raise ``RecordError`` with RDKit's own reason."""
    if not isinstance(smiles, str) or not smiles.strip():
        raise RecordError("empty SMILES")
    capture = getattr(rdBase, "CaptureErrorLog", None)
    if capture is not None:
        with capture() as log:
            mol = Chem.MolFromSmiles(smiles)
        messages = log.messages
    else:  # older RDKit: no captured reason
        with rdBase.BlockLogs():
            mol = Chem.MolFromSmiles(smiles)
        messages = ""
    if mol is None:
        reason = " ".join(str(messages).split()) or "RDKit could not parse or sanitize it"
        raise RecordError(f"invalid SMILES: {reason}")
    if mol.GetNumAtoms() == 0:
        raise RecordError("SMILES has no atoms")
    return mol


class RDKitMoleculeBuilder(GraphBuilder):
    """Molecule graph: one ``atom`` node per heavy atom, ``(atom, bond, atom)`` edges both ways."""

    modality = "molecule"
    version = "1"

    def __init__(self, params: RDKitMoleculeParams | None = None):
        self.params = params or RDKitMoleculeParams()
        self._largest = rdMolStandardize.LargestFragmentChooser() if self.params.fragments == "largest" else None

    def schema(self) -> GraphSchema:
        return molecule_schema()

    def params_key(self) -> dict:
        return self.params.model_dump()

    def mol(self, smiles: str) -> Chem.Mol:
        mol = parse_smiles(smiles)
        if self._largest is not None and len(Chem.GetMolFrags(mol)) > 1:
            mol = self._largest.choose(mol)
        return mol

    def build(self, value: str) -> HeteroData:
        return mol_to_graph(self.mol(value))


def _idx(table: dict, value: object) -> int:
    return table.get(value, len(table))


def mol_to_graph(mol: Chem.Mol) -> HeteroData:
    """Tensors of one RDKit molecule, in the order of :func:`molecule_schema`."""
    atom_rows, masses = [], []
    ai = _ATOM_INDEX
    for atom in mol.GetAtoms():
        atom_rows.append((
            _idx(ai["atomic_num"], atom.GetAtomicNum()),
            _idx(ai["chirality"], atom.GetChiralTag()),
            _idx(ai["degree"], atom.GetDegree()),
            _idx(ai["formal_charge"], atom.GetFormalCharge()),
            _idx(ai["num_hs"], atom.GetTotalNumHs()),
            _idx(ai["num_radical_electrons"], atom.GetNumRadicalElectrons()),
            _idx(ai["hybridization"], atom.GetHybridization()),
            _idx(ai["is_aromatic"], atom.GetIsAromatic()),
            _idx(ai["is_in_ring"], atom.IsInRing()),
        ))
        masses.append(atom.GetMass() / ATOM_MASS_SCALE)
    src, dst, bond_rows = [], [], []
    bi = _BOND_INDEX
    for bond in mol.GetBonds():
        u, v = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        row = (_idx(bi["bond_type"], bond.GetBondType()), _idx(bi["stereo"], bond.GetStereo()),
               _idx(bi["is_conjugated"], bond.GetIsConjugated()), _idx(bi["is_in_ring"], bond.IsInRing()))
        src += [u, v]
        dst += [v, u]
        bond_rows += [row, row]
    data = HeteroData()
    data["atom"].x = torch.tensor(masses, dtype=torch.float32).unsqueeze(1)
    data["atom"].x_cat = torch.tensor(atom_rows, dtype=torch.long).reshape(-1, len(ATOM_VOCAB))
    data["atom"].num_nodes = len(atom_rows)
    e = data["atom", "bond", "atom"]
    e.edge_index = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
    e.edge_attr = torch.zeros(len(bond_rows), 0)
    e.edge_attr_cat = torch.tensor(bond_rows, dtype=torch.long).reshape(-1, len(BOND_VOCAB))
    n = len(atom_rows)
    data["compound"].x = torch.zeros(1, 0)
    data["compound"].x_cat = torch.zeros(1, 0, dtype=torch.long)
    data["compound"].num_nodes = 1
    atoms = torch.arange(n)
    zeros = torch.zeros(n, dtype=torch.long)
    data["atom", "in", "compound"].edge_index = torch.stack([atoms, zeros])
    data["compound", "has", "atom"].edge_index = torch.stack([zeros, atoms])
    return data
