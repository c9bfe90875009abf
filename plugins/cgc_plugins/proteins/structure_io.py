"""Read a PDB / mmCIF / AlphaFold DB file into per-residue arrays with Biopython.

Only amino-acid residues from ATOM records (Biopython hetero flag ``' '``) become residues;
HETATM groups (ligands, ions, modified residues) and waters are excluded. Of alternate locations
Biopython keeps one per atom (the highest occupancy); insertion codes make distinct residues.
Every problem with a file raises :class:`~cgc_framework.plugin.records.RecordError` naming the file
(and the line, where Biopython's parser gives one).
"""

from __future__ import annotations

import gzip
import io
import warnings
from dataclasses import dataclass
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
    """Biopython ``Structure`` of ``path`` (``.pdb``, ``.ent``, ``.cif``; optionally ``.gz``)."""
    if not path.is_file():
        raise RecordError(f"{path}: structure file not found")
    if path.stat().st_size == 0:
        raise RecordError(f"{path}: empty file (0 bytes); re-download the structure")
    is_cif = path.name.lower().endswith(CIF_SUFFIXES)
    kind = "mmCIF" if is_cif else "PDB"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PDBConstructionWarning)
            # FastMMCIFParser reads the same atoms as MMCIFParser ~4x faster (it skips the
            # header dictionary); it labels waters 'H_HOH' instead of 'W' (see WATER_NAMES).
            parser = FastMMCIFParser(QUIET=True) if is_cif else PDBParser(QUIET=True)
            with _open_text(path) as fh:
                structure = parser.get_structure(path.stem, fh)
    except (PDBConstructionException, ValueError, KeyError, IndexError, EOFError, OSError) as exc:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, KeyError):
            detail = f"missing mmCIF category/item {exc}"
        raise RecordError(f"{path}: cannot parse as {kind}: {detail} "
                          f"(truncated or not a {kind} file?)") from None
    if len(structure) == 0:
        raise RecordError(f"{path}: no ATOM/HETATM records (no model) in this {kind} file")
    return structure


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
    structure = parse_structure(path)
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
        atom_residue=np.concatenate(owner), alphafold=_looks_like_alphafold(path),
        ligands=None if not ligands else LigandTable(
            chain=lig_chain, resseq=np.array(lig_seq, dtype=np.int64), resname=lig_name,
            atom_xyz=np.concatenate(lig_xyz) if lig_xyz else np.zeros((0, 3)),
            atom_ligand=np.concatenate(lig_owner) if lig_owner else np.zeros(0, dtype=np.int64),
            atom_element=lig_elem))
