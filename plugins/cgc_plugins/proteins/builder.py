"""Structure file -> residue graph (Biopython + a SciPy KD-tree)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch_geometric.data import HeteroData

from cgc_framework.plugin import GraphBuilder, GraphSchema, RecordError

from .params import BiopythonProteinParams
from .residue_features import HALOGENS, LIGAND_ELEMENTS, PHYSCHEM_TABLE, SS_UNKNOWN, protein_schema
from .secondary_structure import dssp_available, dssp_states, geometry_states
from .structure_io import CIF_SUFFIXES, ResidueTable, _open_text, completeness, read_residues

log = logging.getLogger(__name__)


class BiopythonProteinBuilder(GraphBuilder):
    """Protein graph: one ``residue`` node per amino-acid residue, one ``protein`` node.

    Output (``N`` residues): ``residue.x`` float32 ``[N, 8]`` (hydropathy, charge, volume/100,
    polarity/10, conservation, conservation_mask, pLDDT, pLDDT_mask), ``residue.x_cat`` int64
    ``[N, 2]`` (amino acid, 3-state secondary structure); ``near``/``next`` edges with the
    distance in angstrom ``[E, 1]``; ``protein.ss_method`` int64 ``[1]`` (0 = DSSP, 1 = geometry).

    A clearly truncated file is rejected; a file that may be incomplete is built and counted, with
    the warning, in :meth:`describe` (rule: :mod:`.structure_io`). Files are checked when built
    and, with a featurization cache, when their cache key is computed, so a cache hit is counted too.
    """

    modality = "protein"
    version = "2"   # 2: clearly truncated files are rejected (were built smaller)

    def __init__(self, params: BiopythonProteinParams | None = None):
        self.params = params or BiopythonProteinParams()
        mode = self.params.secondary_structure
        if mode == "auto":
            mode = "dssp" if dssp_available(self.params.dssp_executable) else "geometry"
        elif mode == "dssp" and not dssp_available(self.params.dssp_executable):
            raise ValueError(f"secondary_structure: dssp, but '{self.params.dssp_executable}' is not "
                             f"installed (Debian/Ubuntu: apt-get install dssp); use 'auto' or 'geometry'")
        self.ss_method: str = mode
        self.structure_warnings: dict[str, str] = {}
        """Structure file -> its completeness warning(s), for every file built or looked up so far."""
        self._checked: set[tuple[str, int, int]] = set()
        log.info("biopython_protein: secondary structure from %s", "DSSP (mkdssp)" if mode == "dssp"
                 else "the backbone-geometry fallback (P-SEA-like; mkdssp not used)")

    def schema(self) -> GraphSchema:
        return protein_schema(ligands=self.params.ligands)

    def params_key(self) -> dict:
        return {**self.params.model_dump(mode="json"), "ss_method": self.ss_method}

    def describe(self) -> dict:
        """What a run summary should say about this builder (secondary structure method; files built
        although they may be incomplete, with the warning: the first 20)."""
        out: dict = {"secondary_structure": "dssp" if self.ss_method == "dssp" else "backbone-geometry fallback"}
        if self.structure_warnings:
            out["structures that may be incomplete (used)"] = len(self.structure_warnings)
            out["incomplete? (file: warning; first 20)"] = dict(list(self.structure_warnings.items())[:20])
        return out

    def state(self) -> dict:
        return {"structure_warnings": dict(self.structure_warnings)}

    def merge_state(self, state: dict) -> None:
        for path, warning in state.get("structure_warnings", {}).items():
            self.structure_warnings.setdefault(path, warning)

    def _warn(self, path: Path, notes: list[str]) -> None:
        if notes and str(path) not in self.structure_warnings:
            self.structure_warnings[str(path)] = "; ".join(notes)
            log.warning("biopython_protein: %s: %s", path, "; ".join(notes))

    def sidecar(self, value: str | Path) -> Path | None:
        """The conservation sidecar CSV of structure ``value``, if one exists."""
        if self.params.conservation_dir is None:
            return None
        name = Path(value).name
        for suffix in (".gz", ".cif", ".mmcif", ".pdb", ".ent"):
            name = name[: -len(suffix)] if name.lower().endswith(suffix) else name
        candidate = self.params.conservation_dir / f"{name}.csv"
        return candidate if candidate.is_file() else None

    def cache_inputs(self, value: str | Path) -> list[Path]:
        """Files whose bytes determine the output (the featurization cache hashes them). The file's
        completeness warnings are recorded here too (a cache hit does not build it)."""
        path = Path(value)
        stat = path.stat() if path.is_file() else None
        key = (str(path), stat.st_size, stat.st_mtime_ns) if stat is not None else None
        if key is not None and key not in self._checked:
            self._checked.add(key)
            try:
                with _open_text(path) as fh:
                    _, notes = completeness(fh.read(), path.name.lower().endswith(CIF_SUFFIXES))
                self._warn(path, notes)
            except (OSError, EOFError, UnicodeDecodeError):
                pass                                  # build() reports an unreadable file
        side = self.sidecar(value)
        return [Path(value)] + ([side] if side is not None else [])

    def build(self, value: str | Path) -> HeteroData:
        table = read_residues(value, self.params.chains, self.params.model_index, ligands=self.params.ligands)
        self._warn(table.path, table.warnings)
        data = table_to_graph(table, self._ss(table), self._conservation(table, value),
                              self._plddt(table), self.params, 0 if self.ss_method == "dssp" else 1)
        if self.params.ligands:
            add_ligands(data, table, self.params.ligand_cutoff)
        return data

    def _ss(self, table: ResidueTable) -> np.ndarray:
        if self.ss_method == "dssp":
            try:
                return dssp_states(table, self.params.dssp_executable)
            except Exception as exc:  # mkdssp rejects some files: fall back, but say so
                raise RecordError(f"{table.path}: mkdssp failed ({type(exc).__name__}: {exc}); "
                                  f"set secondary_structure: geometry to use the fallback") from None
        return geometry_states(table, self.params.chain_break)

    def _plddt(self, table: ResidueTable) -> np.ndarray | None:
        use = self.params.plddt == "bfactor" or (self.params.plddt == "auto" and table.alphafold)
        return table.ca_bfactor if use else None

    def _conservation(self, table: ResidueTable, value: str | Path) -> np.ndarray | None:
        """Conservation per residue with NaN where the sidecar has no row; None without sidecar."""
        path = self.sidecar(value)
        if path is None:
            return None
        scores: dict[tuple[str, int, str], float] = {}
        with open(path, newline="") as fh:
            for line_no, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    key = (row["chain"].strip(), int(row["residue_number"]),
                           (row.get("insertion_code") or " ").strip() or " ")
                    scores[key] = float(row["conservation"])
                except (KeyError, ValueError, TypeError) as exc:
                    raise RecordError(f"{path}:{line_no}: bad conservation row ({exc}); expected columns "
                                      f"chain,residue_number[,insertion_code],conservation") from None
        return np.array([scores.get((c, int(r), i.strip() or " "), np.nan)
                         for c, r, i in zip(table.chain, table.resseq, table.icode)], dtype=np.float32)


def table_to_graph(table: ResidueTable, ss: np.ndarray, conservation: np.ndarray | None,
                   plddt: np.ndarray | None, params: BiopythonProteinParams, ss_method: int) -> HeteroData:
    """Tensors of one structure in the order of :func:`.residue_features.protein_schema`."""
    n = len(table)
    x = np.zeros((n, 8), dtype=np.float32)
    x[:, :4] = PHYSCHEM_TABLE[table.aa]
    if conservation is not None:
        known = np.isfinite(conservation)
        x[known, 4] = conservation[known]
        x[:, 5] = known
    if plddt is not None:
        x[:, 6] = plddt
        x[:, 7] = 1.0
    x_cat = np.stack([table.aa, np.where(ss < 0, SS_UNKNOWN, ss)], axis=1)
    near_index, near_dist = _near_edges(table, params)
    next_index, next_dist = _next_edges(table, params.chain_break)
    res = torch.arange(n)
    zeros = torch.zeros(n, dtype=torch.long)
    return HeteroData({
        "residue": {"x": torch.from_numpy(x), "x_cat": torch.from_numpy(x_cat), "num_nodes": n},
        "protein": {"x": torch.zeros(1, 0), "x_cat": torch.zeros(1, 0, dtype=torch.long), "num_nodes": 1,
                    "ss_method": torch.tensor([ss_method])},
        ("residue", "near", "residue"): _edge_store(near_index, near_dist),
        ("residue", "next", "residue"): _edge_store(next_index, next_dist),
        ("residue", "in", "protein"): {"edge_index": torch.stack([res, zeros])},
        ("protein", "has", "residue"): {"edge_index": torch.stack([zeros, res])},
    })


def _edge_store(index: np.ndarray, dist: np.ndarray) -> dict:
    return {"edge_index": torch.from_numpy(index), "edge_attr": torch.from_numpy(dist.reshape(-1, 1)),
            "edge_attr_cat": torch.zeros(index.shape[1], 0, dtype=torch.long)}


def _both_directions(i: np.ndarray, j: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = np.stack([np.concatenate([i, j]), np.concatenate([j, i])]).astype(np.int64)
    return index, np.concatenate([d, d]).astype(np.float32)


def _near_edges(table: ResidueTable, params: BiopythonProteinParams) -> tuple[np.ndarray, np.ndarray]:
    """Residue pairs within ``params.cutoff`` angstrom (``[2, E]``, ``[E]``), each pair both ways."""
    if params.contact == "ca":
        pairs = cKDTree(table.ca).query_pairs(params.cutoff, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        d = np.linalg.norm(table.ca[i] - table.ca[j], axis=1)
        return _both_directions(i, j, d)
    tree = cKDTree(table.atom_xyz)
    sparse = tree.sparse_distance_matrix(tree, params.cutoff, output_type="ndarray")
    ri, rj = table.atom_residue[sparse["i"]], table.atom_residue[sparse["j"]]
    keep = ri < rj
    ri, rj, dist = ri[keep], rj[keep], sparse["v"][keep]
    n = len(table)
    key = ri * n + rj
    order = np.lexsort((dist, key))                 # per residue pair, the closest atom pair first
    key, dist = key[order], dist[order]
    first = np.concatenate([[True], key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=bool)
    return _both_directions(key[first] // n, key[first] % n, dist[first])


def _next_edges(table: ResidueTable, chain_break: float) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive residues of one chain whose CAs are within ``chain_break`` angstrom."""
    if len(table) < 2:
        return np.zeros((2, 0), dtype=np.int64), np.zeros(0, dtype=np.float32)
    d = np.linalg.norm(np.diff(table.ca, axis=0), axis=1)
    chain = np.array(table.chain)
    ok = (chain[1:] == chain[:-1]) & (d <= chain_break)
    i = np.nonzero(ok)[0]
    return _both_directions(i, i + 1, d[ok])


def add_ligands(data: HeteroData, table: ResidueTable, cutoff: float) -> None:
    """Add ``ligand`` nodes (one per non-water HETATM group of ``table.ligands``) to ``data``.

    ``ligand.x`` float32 ``[L, 8]``: heavy atoms / 10, fractions of C, N, O, S, P, halogen, other;
    ``ligand.x_cat`` int64 ``[L, 1]``: kind (0 ion = one heavy atom, 1 molecule). Edges
    ``(ligand, contacts, residue)`` and reverse for every ligand-residue pair with a heavy-atom
    pair closer than ``cutoff`` angstrom, ``edge_attr`` ``[E, 1]`` = that closest distance.
    """
    lig = table.ligands
    n_lig = 0 if lig is None else len(lig)
    x = np.zeros((n_lig, 8), dtype=np.float32)
    kind = np.zeros((n_lig, 1), dtype=np.int64)
    index = np.zeros((2, 0), dtype=np.int64)
    dist = np.zeros(0, dtype=np.float32)
    if n_lig:
        owner = lig.atom_ligand
        counts = np.bincount(owner, minlength=n_lig).astype(np.float32)
        elem = np.array(lig.atom_element, dtype=object)
        cols = [elem == e for e in LIGAND_ELEMENTS]
        cols.append(np.isin(elem, list(HALOGENS)))
        cols.append(~np.any(cols, axis=0))
        x[:, 0] = counts / 10.0
        for c, mask in enumerate(cols, start=1):
            x[:, c] = np.bincount(owner[mask], minlength=n_lig) / np.maximum(counts, 1)
        kind[:, 0] = np.where(counts > 1, 1, 0)
        sparse = cKDTree(lig.atom_xyz).sparse_distance_matrix(cKDTree(table.atom_xyz), cutoff,
                                                              output_type="ndarray")
        li, ri, d = owner[sparse["i"]], table.atom_residue[sparse["j"]], sparse["v"]
        n = len(table)
        key = li * n + ri
        order = np.lexsort((d, key))                # per (ligand, residue), the closest atom pair first
        key, d = key[order], d[order]
        first = np.concatenate([[True], key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=bool)
        index = np.stack([key[first] // n, key[first] % n]).astype(np.int64)
        dist = d[first].astype(np.float32)
    data["ligand"].x = torch.from_numpy(x)
    data["ligand"].x_cat = torch.from_numpy(kind)
    data["ligand"].num_nodes = n_lig
    contacts = {"edge_attr": torch.from_numpy(dist.reshape(-1, 1)),
                "edge_attr_cat": torch.zeros(index.shape[1], 0, dtype=torch.long)}
    data["ligand", "contacts", "residue"].edge_index = torch.from_numpy(index)
    data["residue", "contacts", "ligand"].edge_index = torch.from_numpy(index[::-1].copy())
    for key_ in (("ligand", "contacts", "residue"), ("residue", "contacts", "ligand")):
        for k, v in contacts.items():
            data[key_][k] = v.clone()
    lig_idx = torch.arange(n_lig)
    zeros = torch.zeros(n_lig, dtype=torch.long)
    data["ligand", "in", "protein"].edge_index = torch.stack([lig_idx, zeros])
    data["protein", "has", "ligand"].edge_index = torch.stack([zeros, lig_idx])
