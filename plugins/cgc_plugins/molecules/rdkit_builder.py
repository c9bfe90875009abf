"""SMILES -> atom/bond graph with RDKit (optionally with ETKDG 3D bond lengths)."""

from __future__ import annotations

import contextlib
import gc
import re
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem
from rdkit.Chem.MolStandardize import rdMolStandardize
from torch_geometric.data import HeteroData

from cgc_framework.plugin import GraphBuilder, GraphSchema, RecordError, hetero_data
from cgc_framework.plugin.records import smiles_problem

from .descriptors import descriptor_row, fingerprint_bits
from .features import ATOM_MASS_SCALE, ATOM_VOCAB, BOND_VOCAB, byte_tables, encode, molecule_schema
from .params import RDKitMoleculeParams
from .rdkit_pickle import ATOM_FIELDS, BOND_FIELDS, Fields, api_fields, decode, fast_decode_enabled

_ATOM_TABLE = byte_tables(ATOM_VOCAB)
_BOND_TABLE = byte_tables(BOND_VOCAB)
_DECODED_ATOM_COLUMNS = [list(ATOM_VOCAB).index(f) for f in ATOM_FIELDS]
assert list(BOND_VOCAB)[:3] == list(BOND_FIELDS)


def parse_smiles(smiles: str) -> Chem.Mol:
    """Parse and sanitize; raise ``RecordError`` with RDKit's own reason.

    A SMILES with whitespace inside (``"CC O"``, a tab) is rejected rather than cut at the space
    (RDKit would take the rest as the molecule's name): the record field convention
    :func:`cgc_framework.plugin.records.smiles_problem`. A CXSMILES extension (``"CCO |&1:1|"``)
    and surrounding whitespace are accepted."""
    if not isinstance(smiles, str) or not smiles.strip():
        raise RecordError("empty SMILES")
    problem = smiles_problem(smiles)
    if problem is not None:
        raise RecordError(problem)
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
        raise RecordError(f"invalid SMILES: {rdkit_reason(messages)}")
    if mol.GetNumAtoms() == 0:
        raise RecordError("SMILES has no atoms")
    return mol


def rdkit_reason(messages: str, default: str = "RDKit could not parse or sanitize it") -> str:
    """RDKit's log lines without timestamps or repeats, on one line (``default`` when it logged none)."""
    lines: list[str] = []
    for line in str(messages).splitlines():
        text = " ".join(line.split("]", 1)[-1].split()) if line.startswith("[") else " ".join(line.split())
        if text and text not in lines:
            lines.append(text)
    return "; ".join(lines) or default


class RDKitMoleculeBuilder(GraphBuilder):
    """Molecule graph: one ``atom`` node per heavy atom, ``(atom, bond, atom)`` edges both ways,
    one ``compound`` node joined to every atom. Features: :func:`.features.molecule_schema`."""

    modality = "molecule"
    version = "3"   # 3: a SMILES with whitespace inside is rejected (was cut at the space)

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
        graph = self.build_many([value])[0]
        if isinstance(graph, RecordError):
            raise graph
        return graph

    def build_many(self, values: Sequence[str]) -> list[HeteroData | RecordError]:
        """Graphs of many SMILES at once: the same graphs as :meth:`build`, with the NumPy work
        done once for all molecules (per-molecule array calls cost more than the arithmetic).

        Python's cyclic garbage collector is paused while the chunk is built: the chunk allocates
        ~40 collector-tracked objects per molecule (tensors, PyG stores), none of them in a
        reference cycle, and repeated collections over the growing set of graphs cost ~20% of
        the time (measured on HIV). The objects are collected as usual afterwards.
        """
        with _collector_paused():
            return self._build_many(values)

    def _build_many(self, values: Sequence[str]) -> list[HeteroData | RecordError]:
        out: list[HeteroData | RecordError] = [None] * len(values)  # type: ignore[list-item]
        read: list[MoleculeFields] = []
        where: list[int] = []
        mols: list[Chem.Mol] = []
        for k, value in enumerate(values):
            try:
                mol = self.mol(value)
                lengths = bond_lengths(mol, self.params.conformer_seed) if self.params.conformer_3d else None
            except RecordError as exc:
                out[k] = exc
                continue
            read.append(read_molecule(mol, lengths, has_isotopes=_ISOTOPE_LABEL.search(value) is not None))
            where.append(k)
            mols.append(mol)
        for k, graph, mol in zip(where, graphs_of(read), mols):
            if self.params.descriptors:
                graph.mol_descriptors = torch.tensor([descriptor_row(mol)], dtype=torch.float32)  # [1, D]
            if self.params.fingerprint_bits:
                packed = fingerprint_bits(mol, self.params.fingerprint_bits)
                graph.mol_fingerprint = torch.frombuffer(bytearray(packed), dtype=torch.uint8).view(1, -1)  # [1, N/8]
            out[k] = graph
        return out


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


class MoleculeFields(NamedTuple):
    """What :func:`graphs_of` needs of one molecule."""

    fields: Fields
    mass: np.ndarray | None
    """atomic masses / ``ATOM_MASS_SCALE``, float32 ``[N]``; ``None``: standard atomic weights."""
    lengths: np.ndarray | None
    """bond lengths (angstrom) ``[B]`` in bond order, or ``None`` without 3D."""


def read_molecule(mol: Chem.Mol, lengths: np.ndarray | None = None, *,
                  has_isotopes: bool = True) -> MoleculeFields:
    """Raw fields of one molecule: from ``Mol.ToBinary()`` (:mod:`.rdkit_pickle`, checked against
    RDKit's Python API on a reference panel), else through the API.

    Cost model: reading atoms and bonds through the API (one wrapper object and one Boost.Python
    call per field) costs more than parsing the SMILES; the binary reader costs ~2 us per atom.
    Masses are the standard atomic weights (what ``Atom.GetMass`` gives for isotope 0) unless the
    molecule may carry isotopes (``has_isotopes``, e.g. ``[13C]``; the binary reader declines
    those): then one ``GetMass`` call per atom.
    """
    fields = decode(mol.ToBinary()) if fast_decode_enabled() else None
    mass = None
    if fields is None:
        fields = api_fields(mol)
        if has_isotopes:
            mass = np.array([a.GetMass() for a in mol.GetAtoms()], dtype=np.float64) / ATOM_MASS_SCALE
            mass = mass.astype(np.float32)
    return MoleculeFields(fields, mass, lengths)


def mol_to_graph(mol: Chem.Mol, lengths: np.ndarray | None = None, *,
                 has_isotopes: bool = True) -> HeteroData:
    """The graph of one RDKit molecule (see :func:`graphs_of`)."""
    return graphs_of([read_molecule(mol, lengths, has_isotopes=has_isotopes)])[0]


def graphs_of(molecules: Sequence[MoleculeFields]) -> list[HeteroData]:
    """Tensors of each molecule, in the order of :func:`.features.molecule_schema`.

    Per graph (``N`` atoms, ``B`` bonds): ``atom.x_cat`` int64 ``[N, 9]``, ``atom.x`` float32
    ``[N, 1]`` (mass / 100 Da); ``bond.edge_attr_cat`` int64 ``[2B, 4]`` (edge ``2k`` is bond ``k``
    forward, ``2k+1`` reverse), ``bond.edge_attr`` float32 ``[2B, 0]`` or ``[2B, 1]`` (lengths in
    angstrom); ``compound`` one node; ``(atom, in, compound)`` and ``(compound, has, atom)``.

    All molecules are concatenated and each step is one array operation: degree from the bond
    list (``bincount``), ring membership from the ring set (a bond is in a ring iff it joins ring
    neighbours), masses from a table, the categorical columns with one gather each; then every
    graph gets its own copies of its rows.
    """
    if not molecules:
        return []
    fields = [m.fields for m in molecules]
    n = [len(f.atoms) for f in fields]
    nb = [len(f.ends) for f in fields]
    astart = np.zeros(len(n) + 1, dtype=np.int64)
    np.cumsum(n, out=astart[1:])
    total = int(astart[-1])
    one = len(fields) == 1                                          # no concatenation, no copies
    atoms = fields[0].atoms if one else np.concatenate([f.atoms for f in fields])
    ends = fields[0].ends if one else np.concatenate([f.ends for f in fields])   # local atom indices
    gends = ends + np.repeat(astart[:-1], nb)[:, None]             # indices in the concatenation
    raw = np.empty((total, 9), dtype=np.uint8)                     # ATOM_VOCAB order
    raw[:, _DECODED_ATOM_COLUMNS] = atoms
    raw[:, 2] = np.minimum(np.bincount(gends.ravel(), minlength=total), 255)   # degree
    raw[:, 8] = 0                                                  # is_in_ring
    bond_raw = np.empty((len(ends), 4), dtype=np.uint8)            # BOND_VOCAB order
    bond_raw[:, :3] = fields[0].bonds if one else np.concatenate([f.bonds for f in fields])
    bond_raw[:, 3] = 0
    ring_atoms, ring_neighbours = _ring_arrays(fields, astart)
    if len(ring_atoms):
        raw[ring_atoms, 8] = 1
        ring_keys = np.sort(np.minimum(ring_atoms, ring_neighbours) * total
                            + np.maximum(ring_atoms, ring_neighbours))
        bond_keys = gends.min(axis=1) * total + gends.max(axis=1)
        found = np.minimum(np.searchsorted(ring_keys, bond_keys), len(ring_keys) - 1)
        bond_raw[:, 3] = ring_keys[found] == bond_keys
    if all(m.mass is None for m in molecules):
        mass = _SCALED_WEIGHT[atoms[:, 0]]
    else:
        mass = np.concatenate([_SCALED_WEIGHT[f.atoms[:, 0]] if m.mass is None else m.mass
                               for f, m in zip(fields, molecules)])
    x = mass.reshape(total, 1)
    x_cat = encode(raw, _ATOM_TABLE)
    bond_cat = np.repeat(encode(bond_raw, _BOND_TABLE), 2, axis=0)
    edge_index = np.empty((2, 2 * len(ends)), dtype=np.int64)
    edge_index[:, 0::2] = ends.T
    edge_index[:, 1::2] = ends.T[::-1]
    with_lengths = molecules[0].lengths is not None
    if with_lengths:
        edge_attr = np.repeat(np.concatenate([m.lengths for m in molecules]).astype(np.float32), 2).reshape(-1, 1)
    graphs = []
    a1 = b1 = 0
    for size, bonds in zip(n, nb):
        a0, a1, b0, b1 = a1, a1 + size, b1, b1 + 2 * bonds
        if size <= _MEMBER.shape[1]:
            member, has = _MEMBER[:, :size].copy(), _MEMBER[::-1, :size].copy()
        else:
            member = np.stack([np.arange(size), np.zeros(size, dtype=np.int64)])
            has = member[::-1].copy()
        graphs.append(hetero_data({
            "atom": {"x": torch.from_numpy(x if one else x[a0:a1].copy()),
                     "x_cat": torch.from_numpy(x_cat if one else x_cat[a0:a1].copy()),
                     "num_nodes": size},
            "compound": {"x": _NO_FEATURES, "x_cat": _NO_CATEGORIES, "num_nodes": 1},
            ("atom", "bond", "atom"): {
                "edge_index": torch.from_numpy(edge_index if one else edge_index[:, b0:b1].copy()),
                "edge_attr": (torch.from_numpy(edge_attr if one else edge_attr[b0:b1].copy())
                              if with_lengths else torch.empty(2 * bonds, 0)),
                "edge_attr_cat": torch.from_numpy(bond_cat if one else bond_cat[b0:b1].copy())},
            ("atom", "in", "compound"): {"edge_index": torch.from_numpy(member)},
            ("compound", "has", "atom"): {"edge_index": torch.from_numpy(has)},
        }))
    return graphs


def _ring_arrays(fields: Sequence[Fields], astart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ring atom of every molecule (index in the concatenation; an atom of two rings appears
    twice) and its next atom along the ring (the last atom's next is the first)."""
    flat: list[int] = []
    sizes: list[int] = []
    offsets: list[int] = []
    for f, a0 in zip(fields, astart.tolist()):
        for ring in f.rings:
            flat.extend(ring)
            sizes.append(len(ring))
            offsets.append(a0)
    if not flat:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    size = np.array(sizes)
    ring_atoms = np.array(flat, dtype=np.int64) + np.repeat(offsets, size)
    following = np.arange(1, len(flat) + 1)
    ring_end = np.cumsum(size)
    following[ring_end - 1] = ring_end - size                      # wrap to the ring's first atom
    return ring_atoms, ring_atoms[following]


_NO_FEATURES = torch.empty(1, 0)
_NO_CATEGORIES = torch.empty(1, 0, dtype=torch.long)
"""The compound node's (empty) feature tensors, shared by every graph: they hold no values."""

_MEMBER = np.stack([np.arange(256), np.zeros(256, dtype=np.int64)])
"""``(atom, in, compound)`` edges of up to 256 atoms: row 0 atom index, row 1 compound 0."""
_SCALED_WEIGHT = np.array([Chem.GetPeriodicTable().GetAtomicWeight(min(z, 118)) / ATOM_MASS_SCALE
                           for z in range(256)], dtype=np.float32)
"""Standard atomic weight / ``ATOM_MASS_SCALE`` by atomic number (0..118; indexed by a byte), as
``Atom.GetMass`` gives for isotope 0."""

_ISOTOPE_LABEL = re.compile(r"\[\d")
"""An isotope label in SMILES: a bracket atom starting with a mass number, e.g. ``[13C]``, ``[2H]``."""
