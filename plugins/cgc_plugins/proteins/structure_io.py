"""Read a PDB / mmCIF / AlphaFold DB file into per-residue arrays with Biopython.

Only amino-acid residues from ATOM records (Biopython hetero flag ``' '``) become residues;
HETATM groups (ligands, ions, modified residues) and waters are excluded. Of alternate locations
Biopython keeps one per atom (the highest occupancy); insertion codes make distinct residues.
Every problem with a file raises :class:`~cgc_framework.plugin.records.RecordError` naming the file
(and the line, where Biopython's parser gives one).

A file cut at a line boundary parses cleanly into a smaller protein, so every file is also checked
for completeness (:func:`completeness`):

- **error** (``RecordError``, clearly truncated): a PDB file without an ``END`` record that ends
  inside a chain (its last coordinate record has no ``TER``/``ENDMDL``/``END`` after it) while the
  file shows it uses them (a ``HEADER``/``CRYST1``/``SEQRES`` record, or ``TER`` after earlier
  chains); or a PDB file without ``END`` whose ``SEQRES`` lists a chain that has no coordinates;
  an mmCIF file that ends inside its ``_atom_site`` loop although it closes categories with ``#``;
- **warning** (the structure is kept; the protein builder counts and names it): a PDB file without
  ``END`` that ends inside a chain but has no header or ``TER`` records to tell (written by a tool
  that omits them), or ends after a complete chain (``TER``); a gap in the atom serial numbers (atom
  records missing from the middle); an mmCIF file ending inside ``_atom_site`` without ``#`` closings.
"""

from __future__ import annotations

import gzip
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from Bio.PDB import FastMMCIFParser, PDBParser
from Bio.PDB.PDBExceptions import PDBConstructionException, PDBConstructionWarning

from cgc_framework.plugin import RecordError

from .residue_features import AA_INDEX, OTHER_AA

CIF_SUFFIXES = (".cif", ".mmcif", ".cif.gz", ".mmcif.gz")


@dataclass
class ResidueTable:
    """Residues of one structure, in file order (chain by chain).

    Attributes:
        path: the file read.
        model: the Biopython ``Model`` (kept for DSSP).
        chain: chain id per residue, ``[N]``.
        resseq: author residue number per residue, ``[N]`` int.
        icode: insertion code per residue (``" "`` when none), ``[N]``.
        resname: three-letter residue name, ``[N]``.
        aa: amino-acid index (:data:`.residue_features.AMINO_ACIDS`, 20 = other), int64 ``[N]``.
        ca: CA position in angstrom, float64 ``[N, 3]`` (atom centroid where CA is missing).
        ca_bfactor: B-factor of the CA (pLDDT in AlphaFold models), float32 ``[N]``.
        atom_xyz: heavy-atom positions, float64 ``[M, 3]``; ``atom_residue``: residue index ``[M]``.
        alphafold: whether the file is an AlphaFold DB model.
    """

    path: Path
    model: Any
    chain: list[str]
    resseq: np.ndarray
    icode: list[str]
    resname: list[str]
    aa: np.ndarray
    ca: np.ndarray
    ca_bfactor: np.ndarray
    atom_xyz: np.ndarray
    atom_residue: np.ndarray
    alphafold: bool
    ligands: "LigandTable | None" = None
    warnings: list[str] = field(default_factory=list)
    """Completeness warnings of the file (:func:`completeness`); the structure is used anyway."""

    def __len__(self) -> int:
        return len(self.chain)


@dataclass
class LigandTable:
    """Non-water HETATM groups of the selected chains (ligands, ions, modified residues), in file order.

    Attributes:
        chain, resseq, resname: per group, ``[L]``.
        atom_xyz: heavy-atom positions, float64 ``[M, 3]`` (angstrom); ``atom_ligand``: group index ``[M]``.
        atom_element: element symbol per heavy atom, ``[M]`` (upper case).
    """

    chain: list[str]
    resseq: np.ndarray
    resname: list[str]
    atom_xyz: np.ndarray
    atom_ligand: np.ndarray
    atom_element: list[str]

    def __len__(self) -> int:
        return len(self.chain)


def _open_text(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


WATER_NAMES = frozenset({"HOH", "WAT", "DOD", "H2O"})
"""Water residue names: never ligands, whatever the parser's hetero flag says."""


def _looks_like_alphafold(path: Path) -> bool:
    if path.name.upper().startswith("AF-"):
        return True
    with _open_text(path) as fh:
        head = fh.read(4096)
    return "ALPHAFOLD" in head.upper()


def parse_structure(path: Path):
    """Biopython ``Structure`` of ``path`` (``.pdb``, ``.ent``, ``.cif``; optionally ``.gz``); a
    clearly truncated file raises ``RecordError`` (:func:`completeness`)."""
    return _parse(path)[0]


def _parse(path: Path) -> tuple[Any, list[str]]:
    """``(structure, completeness warnings)`` of ``path``."""
    if not path.is_file():
        raise RecordError(f"{path}: structure file not found")
    if path.stat().st_size == 0:
        raise RecordError(f"{path}: empty file (0 bytes); re-download the structure")
    is_cif = path.name.lower().endswith(CIF_SUFFIXES)
    kind = "mmCIF" if is_cif else "PDB"
    try:
        with _open_text(path) as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}: a binary file, not a {kind} structure (byte {exc.start} is not text); "
                          f"wrong file, or a compressed file without .gz?") from None
    except (OSError, EOFError) as exc:
        raise RecordError(f"{path}: cannot read as a {kind} text file ({type(exc).__name__}: {exc}); "
                          f"a damaged file, or named .gz without being gzip-compressed?") from None
    if "\0" in text[:4096]:
        raise RecordError(f"{path}: a binary file, not a {kind} structure (wrong file or extension?)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PDBConstructionWarning)
            # FastMMCIFParser reads the same atoms as MMCIFParser ~4x faster (it skips the
            # header dictionary); it labels waters 'H_HOH' instead of 'W' (see WATER_NAMES).
            parser = FastMMCIFParser(QUIET=True) if is_cif else PDBParser(QUIET=True)
            structure = parser.get_structure(path.stem, io.StringIO(text))
    except (PDBConstructionException, ValueError, KeyError, IndexError, EOFError, OSError) as exc:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, KeyError):
            detail = f"missing mmCIF category/item {exc}"
        raise RecordError(f"{path}: cannot parse as {kind}: {detail} "
                          f"({_other_format(text, is_cif) or f'truncated or not a {kind} file?'})") from None
    if len(structure) == 0:
        other = _other_format(text, is_cif)
        raise RecordError(f"{path}: no ATOM/HETATM records (no model) in this {kind} file{f' ({other})' if other else ''}")
    error, notes = completeness(text, is_cif)
    if error:
        raise RecordError(f"{path}: {error}")
    return structure, notes


_COORD = ("ATOM  ", "HETATM")


def _other_format(text: str, is_cif: bool) -> str:
    """A hint when ``text`` looks like the other format than its file name says."""
    if not is_cif and "_atom_site." in text:
        return "is it an mmCIF file named .pdb? name it .cif"
    if is_cif and "_atom_site." not in text and ("\nATOM  " in text or text.startswith(("ATOM  ", "HEADER"))):
        return "is it a PDB file named .cif? name it .pdb"
    return ""


def completeness(text: str, is_cif: bool = False) -> tuple[str | None, list[str]]:
    """``(error, warnings)`` about whether ``text`` (a whole PDB / mmCIF file) was cut short: the
    rule is in the module docstring. ``error`` is ``None`` when the file may be used."""
    lines = text.splitlines()
    return _cif_completeness(lines) if is_cif else _pdb_completeness(lines)


def _pdb_completeness(lines: list[str]) -> tuple[str | None, list[str]]:
    last = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith(_COORD)), None)
    if last is None:
        return None, []
    notes = _serial_gaps(lines)
    tail = {line[:6].strip() for line in lines[last + 1:]}
    if "END" in tail:
        return None, notes
    first = next(i for i, line in enumerate(lines) if line.startswith(_COORD))
    formal = any(line.startswith(("HEADER", "CRYST1", "SEQRES")) for line in lines[:first]) or \
        any(line.startswith("TER") for line in lines[first:last])
    chains = {line[21] for line in lines if line.startswith("ATOM  ") and len(line) > 21}
    listed = sorted({line[11] for line in lines if line.startswith("SEQRES") and len(line) > 11} - chains)
    where = f"line {last + 1} ({' '.join(lines[last][:27].split())})"
    lost = f"; SEQRES lists chain(s) {', '.join(listed)}, which have no coordinates" if listed else ""
    if not tail & {"TER", "ENDMDL"}:
        if formal or listed:
            return (f"truncated: the file ends inside a chain at {where}, with no TER or END record after it"
                    f"{lost}. A complete PDB file ends with END: re-download or re-export the structure"), notes
        return None, notes + [f"no TER or END record after the last coordinates ({where}): cannot tell whether "
                              f"the file is complete"]
    if listed:
        return (f"truncated: no END record, and SEQRES lists chain(s) {', '.join(listed)}, which have no "
                f"coordinates (the file stops after {where}): re-download or re-export the structure"), notes
    return None, notes + [f"no END record: the file may have been cut after a complete chain ({where})"]


def _serial_gaps(lines: list[str]) -> list[str]:
    """A warning for the first jump in the atom serial numbers (ATOM/HETATM/TER records in file
    order); a restart (a new MODEL) is no gap; files with non-numeric (hybrid-36) serials are not checked."""
    prev, prev_line = None, 0
    for i, line in enumerate(lines):
        if not line.startswith(("ATOM", "HETATM", "TER")):
            continue
        field_ = line[6:11].strip()
        if not field_:
            continue
        if not field_.isdigit():
            return []
        serial = int(field_)
        if prev is not None and serial > prev + 1:
            return [f"atom serial numbers jump from {prev} (line {prev_line}) to {serial} (line {i + 1}): "
                    f"{serial - prev - 1} atom record(s) missing from the middle of the file?"]
        prev, prev_line = serial, i + 1
    return []


def _cif_completeness(lines: list[str]) -> tuple[str | None, list[str]]:
    end = len(lines) - 1
    while end >= 0 and not lines[end].strip():
        end -= 1
    k = end
    while k >= 0 and not lines[k].startswith(("_", "loop_", "#", "data_")):
        k -= 1
    if k < 0 or k == end or not lines[k].startswith("_atom_site."):
        return None, []
    where = f"line {end + 1} ({' '.join(lines[end].split()[:8])})"
    if any(line.startswith("#") for line in lines[:k]):
        return (f"truncated: the file ends inside its _atom_site loop at {where}, with no '#' closing it "
                f"(it closes its other categories with '#'): re-download or re-export the structure"), []
    return None, [f"the file ends inside its _atom_site loop ({where}): cannot tell whether it is complete"]


def read_residues(path: str | Path, chains: Sequence[str] | None = None, model_index: int = 0,
                  ligands: bool = False) -> ResidueTable:
    """Parse ``path`` and collect the amino-acid residues of model ``model_index``.

    Args:
        chains: chain ids to keep (``None``: every chain with amino-acid residues).
        ligands: also collect the non-water HETATM groups of those chains (``table.ligands``).
    Raises:
        RecordError: missing/empty/unparsable file, no protein chain (or none of ``chains``),
            non-finite coordinates.
    """
    path = Path(path)
    structure, notes = _parse(path)
    models = list(structure)
    if model_index >= len(models):
        raise RecordError(f"{path}: has {len(models)} model(s); model index {model_index} requested")
    model = models[model_index]
    wanted = set(chains) if chains else None
    chain_ids, resseq, icode, resname, aa, ca, bfac = [], [], [], [], [], [], []
    xyz, owner = [], []
    present = []
    lig_chain, lig_seq, lig_name, lig_xyz, lig_owner, lig_elem = [], [], [], [], [], []
    for chain in model:
        residues = [r for r in chain if r.id[0] == " "]
        if residues:
            present.append(chain.id)
        if wanted is not None and chain.id not in wanted:
            continue
        if ligands:
            for res in chain:
                if not res.id[0].startswith("H_") or res.resname.strip() in WATER_NAMES:
                    continue                          # " " = amino acid, "W" = water (PDB)
                atoms = [a for a in res if a.element not in ("H", "D")] or list(res)
                coords = np.array([a.coord for a in atoms], dtype=np.float64).reshape(-1, 3)
                if not np.isfinite(coords).all():
                    raise RecordError(f"{path}: non-finite (NaN/inf) coordinates in HETATM group "
                                      f"{chain.id}:{res.id[1]} {res.resname}")
                lig_owner.append(np.full(len(coords), len(lig_chain)))
                lig_chain.append(chain.id)
                lig_seq.append(res.id[1])
                lig_name.append(res.resname.strip())
                lig_xyz.append(coords)
                lig_elem.extend((a.element or "").strip().upper() for a in atoms)
        if not residues:
            continue
        for res in residues:
            atoms = [a for a in res if a.element != "H" and a.element != "D"] or list(res)
            coords = np.array([a.coord for a in atoms], dtype=np.float64)
            if not np.isfinite(coords).all():
                raise RecordError(f"{path}: non-finite (NaN/inf) coordinates in residue "
                                  f"{chain.id}:{res.id[1]}{res.id[2].strip()} {res.resname}")
            idx = len(chain_ids)
            chain_ids.append(chain.id)
            resseq.append(res.id[1])
            icode.append(res.id[2])
            resname.append(res.resname)
            aa.append(AA_INDEX.get(res.resname, OTHER_AA))
            if "CA" in res:
                ca.append(res["CA"].coord)
                bfac.append(res["CA"].bfactor)
            else:
                ca.append(coords.mean(axis=0))
                bfac.append(np.mean([a.bfactor for a in atoms]))
            xyz.append(coords)
            owner.append(np.full(len(coords), idx))
    if not chain_ids:
        if not present:
            raise RecordError(f"{path}: no protein chain (no amino-acid ATOM records; "
                              f"only HETATM/water?)")
        raise RecordError(f"{path}: none of the requested chains {sorted(wanted or [])} has amino-acid "
                          f"residues; chains present: {', '.join(present)}")
    return ResidueTable(
        path=path, model=model, chain=chain_ids, resseq=np.array(resseq, dtype=np.int64), icode=icode,
        resname=resname, aa=np.array(aa, dtype=np.int64), ca=np.array(ca, dtype=np.float64),
        ca_bfactor=np.array(bfac, dtype=np.float32), atom_xyz=np.concatenate(xyz),
        atom_residue=np.concatenate(owner), alphafold=_looks_like_alphafold(path), warnings=notes,
        ligands=None if not ligands else LigandTable(
            chain=lig_chain, resseq=np.array(lig_seq, dtype=np.int64), resname=lig_name,
            atom_xyz=np.concatenate(lig_xyz) if lig_xyz else np.zeros((0, 3)),
            atom_ligand=np.concatenate(lig_owner) if lig_owner else np.zeros(0, dtype=np.int64),
            atom_element=lig_elem))
