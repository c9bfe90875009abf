"""Atom and bond fields read from RDKit's binary molecule format (``Mol.ToBinary()``).

Why: reading a molecule through RDKit's Python API creates one Python wrapper object per atom and
per bond and pays a Boost.Python call per field; for a 22-atom molecule that is ~350 us, more than
parsing the SMILES. ``Mol.ToBinary()`` serializes the same fields in C++ in ~20 us, and the loop
below reads them back in ~20 us.

The format is RDKit's ``MolPickler`` (``Code/GraphMol/MolPickler.cpp``): a header (endian id,
version ``major.minor.patch``, atom and bond counts), then per atom ``atomic number (uint8), flags
(uint8), property flags (int32)`` followed by the fields whose property-flag bit is set (formal
charge, chiral tag, hybridization when not SP3, explicit H count, explicit valence, implicit
valence, radical electrons, isotope), then per bond ``begin, end (uint8 for <= 255 atoms), flags``
followed by bond type (when not single), direction and stereo (with its stereo atoms) when set,
then the ring set that sanitization computed (atom indices per ring).

Safety: :func:`decode` returns ``None`` for anything outside what it reads (more than 255 atoms,
query atoms or bonds, atom-map numbers, dummy labels, PDB residue info, isotopes, bond end-point
properties, no ring set, a pickle version before 13), and the caller then uses the Python API.
Before first use, :func:`fast_decode_enabled` checks the decoder against the Python API on a reference panel
(charges, stereo, radicals, explicit and implicit hydrogens, aromatic heteroatoms, hypervalent
atoms, fused and large rings); on any mismatch, for instance after a future RDKit changes the
format, the fast path is switched off for the process and a warning says so.
"""

from __future__ import annotations

import functools
import logging
from typing import NamedTuple, Sequence

import numpy as np
from rdkit import Chem

log = logging.getLogger(__name__)

_SP3 = int(Chem.rdchem.HybridizationType.SP3)
_SINGLE = int(Chem.rdchem.BondType.SINGLE)
_ATOM_UNSUPPORTED = 0x1E    # atom flags: query (bit 4), atom map (3), dummy label (2), monomer info (1)
_BOND_UNSUPPORTED = 0x11    # bond flags: query (bit 4), mol-file bond end points (0)
_RING_TAGS = frozenset({20, 66, 67, 68})   # MolPickler::Tags BEGINSSSR, BEGINSYMMSSSR, BEGINFASTFIND,
                                           # BEGINFINDOTHERORUNKNOWN; rings follow as uint32 count,
                                           # then per ring uint8 size and uint8 atom indices

ATOM_FIELDS = ("atomic_num", "chirality", "formal_charge", "num_hs", "num_radical_electrons",
               "hybridization", "is_aromatic")
"""Columns of :attr:`Fields.atoms`: RDKit's integer values (enums as ints, aromatic 0/1, total H
count = explicit + implicit), as uint8; the formal charge as its two's-complement byte (-1 -> 255)."""
BOND_FIELDS = ("bond_type", "stereo", "is_conjugated")
"""Columns of :attr:`Fields.bonds`, uint8 (RDKit's enum values, conjugated 0/1)."""


class Fields(NamedTuple):
    """Raw atom and bond fields of one molecule (``N`` atoms, ``B`` bonds)."""

    atoms: np.ndarray        # uint8 [N, 7], ATOM_FIELDS
    ends: np.ndarray         # int64 [B, 2], begin and end atom of each bond
    bonds: np.ndarray        # uint8 [B, 3], BOND_FIELDS
    rings: list[Sequence[int]]
    """atom indices of each ring of the ring set (``RingInfo.AtomRings()``; bytes from the binary
    reader, tuples from the API), in ring order: consecutive atoms, and the last and the first,
    are bonded."""

    def equals(self, other: Fields) -> bool:
        return (np.array_equal(self.atoms, other.atoms) and np.array_equal(self.ends, other.ends)
                and np.array_equal(self.bonds, other.bonds)
                and [tuple(r) for r in self.rings] == [tuple(r) for r in other.rings])


def decode(binary: bytes) -> Fields | None:
    """The fields of a ``Mol.ToBinary()`` pickle, or ``None`` where it is not supported.

    Atom and bond records repeat (a molecule corpus has a few hundred distinct ones), so each
    record's bytes are decoded once per process and looked up afterwards.
    """
    b = binary
    if len(b) < 30 or b[8] | b[9] << 8 < 13:            # pickle major version (int32, little endian)
        return None
    n = b[20] | b[21] << 8 | b[22] << 16 | b[23] << 24
    nb = b[24] | b[25] << 8 | b[26] << 16 | b[27] << 24
    if n > 255:                                       # atom indices are then int32
        return None
    i = 30                                            # after the coordinates flag and BEGINATOM tag
    atoms = bytearray()
    memo = _ATOM_MEMO
    for _ in range(n):
        end = i + 6 + _FIELD_BYTES[b[i + 2]]
        record = b[i:end]
        out = memo.get(record)
        if out is None:
            out = _atom_record(record)
            if len(memo) < _MEMO_SIZE:
                memo[record] = out
        if not out:
            return None
        atoms += out
        i = end
    i += 1                                            # BEGINBOND tag
    ends = bytearray()
    bonds = bytearray()
    memo = _BOND_MEMO
    for _ in range(nb):
        ends += b[i:i + 2]
        flags = b[i + 2]
        if flags & 0x13:                              # stereo, or what decode declines
            if flags & _BOND_UNSUPPORTED:
                return None
            bond_type = b[i + 3] if flags & 8 else _SINGLE
            at = i + 3 + (flags >> 3 & 1) + (flags >> 2 & 1)
            bonds += bytes((bond_type, b[at], flags >> 5 & 1))
            i = at + 2 + b[at + 1]                    # stereo, count of stereo atoms, the atoms
            continue
        end = i + 3 + (flags >> 3 & 1) + (flags >> 2 & 1)   # bond type (not single), direction
        record = b[i + 2:end]
        out = memo.get(record)
        if out is None:
            out = memo[record] = bytes((b[i + 3] if flags & 8 else _SINGLE, 0, flags >> 5 & 1))
        bonds += out
        i = end
    if i >= len(b) or b[i] not in _RING_TAGS:          # ring information is written after sanitizing
        return None
    num_rings = b[i + 1] | b[i + 2] << 8 | b[i + 3] << 16 | b[i + 4] << 24
    i += 5
    rings: list[bytes] = []
    for _ in range(num_rings):
        size = b[i]
        rings.append(b[i + 1:i + 1 + size])
        i += 1 + size
    if i > len(b):
        return None
    return Fields(np.frombuffer(atoms, dtype=np.uint8).reshape(n, 7),
                  np.frombuffer(ends, dtype=np.uint8).reshape(nb, 2).astype(np.int64),
                  np.frombuffer(bonds, dtype=np.uint8).reshape(nb, 3), rings)


_FIELD_BYTES = [bin(p & 0xFE).count("1") for p in range(256)]
"""Bytes of optional fields after an atom record's 6-byte head, by the low property-flag byte."""
_MEMO_SIZE = 1 << 16
_ATOM_MEMO: dict[bytes, bytes] = {}
_BOND_MEMO: dict[bytes, bytes] = {}


def _atom_record(record: bytes) -> bytes:
    """One atom record (head and optional fields) as the 7 bytes of ``ATOM_FIELDS``; ``b""`` when
    it carries what :func:`decode` declines."""
    z, flags, props = record[0], record[1], record[2] | record[3] << 8
    if flags & _ATOM_UNSUPPORTED or props & 0xFF01 or record[4] or record[5]:   # isotope, unknown
        return b""
    fields = iter(record[6:])
    charge = next(fields) if props & 2 else 0         # signed char, kept as its byte
    chiral = next(fields) if props & 4 else 0
    hybridization = next(fields) if props & 8 else _SP3
    hs = next(fields) if props & 16 else 0
    if props & 32:                                    # explicit valence: not a feature
        next(fields)
    if props & 64:                                    # implicit valence = implicit H count, unless
        implicit = next(fields)                       # the atom has "no implicit" set
        hs += 0 if flags & 32 else implicit
    radicals = next(fields) if props & 128 else 0
    return bytes((z, chiral, charge, hs, radicals, hybridization, flags >> 6 & 1))


def api_fields(mol: Chem.Mol) -> Fields:
    """The same fields through RDKit's Python API (the reference and the fallback; any size)."""
    atoms = [(a.GetAtomicNum(), int(a.GetChiralTag()), a.GetFormalCharge(), a.GetTotalNumHs(),
              a.GetNumRadicalElectrons(), int(a.GetHybridization()), int(a.GetIsAromatic()))
             for a in map(mol.GetAtomWithIdx, range(mol.GetNumAtoms()))]
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), int(b.GetBondType()), int(b.GetStereo()),
              int(b.GetIsConjugated()))
             for b in map(mol.GetBondWithIdx, range(mol.GetNumBonds()))]
    a = np.array(atoms, dtype=np.int64).reshape(-1, 7)
    a[:, 2] &= 0xFF                                   # two's-complement byte of the charge
    bd = np.array(bonds, dtype=np.int64).reshape(-1, 5)
    return Fields(np.minimum(a, 255).astype(np.uint8), bd[:, :2].copy(),
                  np.minimum(bd[:, 2:], 255).astype(np.uint8), list(mol.GetRingInfo().AtomRings()))


REFERENCE_PANEL = (
    "CC(=O)Oc1ccccc1C(=O)O",                  # aspirin
    "Cn1c(=O)c2c(ncn2C)n(C)c1=O",             # caffeine: aromatic N with and without H
    "C[C@H](N)C(=O)O", "C[C@@H](O)CC",        # tetrahedral stereo, both tags
    "C/C=C/C", "F/C=C\\Cl",                  # double-bond stereo
    "[NH4+].[Cl-]", "C[N+](C)(C)C", "[O-][n+]1ccccc1", "CC(=O)[O-]",   # charges
    "[CH3]", "[CH2]C", "[O]",                 # radicals
    "[nH]1cccc1", "c1ccsc1", "c1cc[se]c1",  # aromatic heteroatoms, explicit H
    "OS(=O)(=O)O", "FP(F)(F)(F)F", "F[S](F)(F)(F)(F)F", "[Xe]",   # hypervalent, noble gas
    "C#N", "C=C=C", "[H][H]", "[2H]C", "[C-]#[O+]",             # sp, cumulene, explicit H atoms
    "C1CC2CCC1CC2", "c1ccc2ccccc2c1", "C1CCCCCCCCCCCCCCC1",      # bridged, fused, macrocycle
    "[Fe+2]", "O=[Mn](=O)(=O)[O-]", "B(F)(F)F", "[SiH4]",         # metals, boron, silicon
)


@functools.cache
def fast_decode_enabled() -> bool:
    """True when :func:`decode` agrees with :func:`api_fields` on every molecule of the panel
    (molecules it declines, e.g. with isotopes, are not counted against it)."""
    try:
        for smiles in REFERENCE_PANEL:
            mol = Chem.MolFromSmiles(smiles)
            decoded = decode(mol.ToBinary())
            if decoded is not None and not decoded.equals(api_fields(mol)):
                log.warning("RDKit %s: the binary-molecule reader disagrees with the Python API on %s; "
                            "using the (slower) Python API for molecule features",
                            Chem.rdBase.rdkitVersion, smiles)
                return False
    except Exception as exc:  # noqa: BLE001 - any failure only switches the fast path off
        log.warning("RDKit %s: binary-molecule reader unavailable (%s); using the Python API",
                    Chem.rdBase.rdkitVersion, exc)
        return False
    return True
