"""Compound-target structure pairs: records carrying a SMILES and a protein ``structure_path``.

Joins a structure index (``file``, ``uniprot``, ``gene_symbol``; e.g. ``../shared/data/proteins/
index.csv``) with a compound-target table (the Drug Repurposing Hub edge list
``repurposing_compound_target_edges.tsv``: ``pert_iname``, ``broad_cpd_id``, ``inchikey``,
``smiles``, ``target_gene_symbol``, ``moa``) on the gene symbol. One record per (compound, structure
of one of its annotated targets), so a run with the ``molecule`` (``rdkit_molecule``) and
``protein`` (``biopython_protein``) modalities and the ``drug_target`` edge source gets experiment
graphs in which the compound's atoms and the target's residues are joined through the shared
``protein`` node (linking rule: ``docs/featurization.md``, "Linking structures to drug-target
protein nodes").

Gene symbols are compared as the first whitespace-separated token, upper case (``Ptgs2 (mouse
COX-2)`` -> ``PTGS2``), the same rule as the ``drug_target`` edge source.

Default: the embedded tables (``data/targets/proteins_index.csv`` and the Repurposing Hub subset of
the embedded LINCS plate) with the three embedded structures in ``data/structures/`` (ABL1 1iep,
AR 1e3g, EGFR 3w32), so a run works offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from cgc_framework.plugin import Dataset, Record, SkipLog

from .params import StructurePairsParams
from .tables import read_table, require_columns

DATA = Path(__file__).parent / "data"
EMBEDDED_INDEX = DATA / "targets" / "proteins_index.csv"
EMBEDDED_STRUCTURES = DATA / "structures"
EMBEDDED_EDGES = DATA / "targets" / "repurposing_compound_target_edges.tsv"

INDEX_COLUMNS = ("file", "uniprot", "gene_symbol")
EDGE_COLUMNS = ("broad_cpd_id", "smiles", "target_gene_symbol")


def gene_key(symbol: object) -> str:
    """Normalized gene symbol: first token, upper case (``''`` for a missing value)."""
    text = str(symbol).strip() if isinstance(symbol, str) else ""
    return text.split()[0].upper() if text else ""


class StructurePairsDataset(Dataset):
    """One record per (compound, structure of an annotated target of it).

    Record id ``<broad_cpd_id>@<structure file>``. Fields: ``smiles``, ``compound_id`` (Broad
    compound id), ``compound_name``, ``inchikey``, ``moa``, ``target`` (the gene symbol),
    ``structure_path`` (absolute path), ``uniprot``, ``gene_symbol`` (the structure's, as in the
    index). Index rows whose file is absent and compounds without SMILES are added to the skip log.
    """

    def __init__(self, params: StructurePairsParams | None = None):
        p = self.p = params or StructurePairsParams()
        self.index_path = Path(p.index or EMBEDDED_INDEX)
        if p.structures_dir is not None:
            self.structures_dir = Path(p.structures_dir)
        else:
            self.structures_dir = EMBEDDED_STRUCTURES if p.index is None else self.index_path.parent
        self.edges_path = Path(p.compound_targets or EMBEDDED_EDGES)
        self._counts: dict[str, int] = {}

    def _read(self, path: Path, sep: str, needed: tuple[str, ...], what: str, param: str) -> pd.DataFrame:
        df = read_table(path, what, sep=sep, dtype=str)
        require_columns(path, df.columns, needed, what, f"Give a table with these columns as "
                                                       f"data.dataset.params.{param}", sep=sep)
        return df

    def records(self, skips: SkipLog) -> Iterator[Record]:
        index = self._read(self.index_path, ",", INDEX_COLUMNS, "structure index", "index")
        edges = self._read(self.edges_path, "\t", EDGE_COLUMNS, "compound-target table", "compound_targets")
        wanted = {gene_key(g) for g in self.p.genes} if self.p.genes else None
        by_gene: dict[str, list[dict[str, Any]]] = {}
        for row in edges.to_dict(orient="records"):
            by_gene.setdefault(gene_key(row["target_gene_symbol"]), []).append(row)
        counts: dict[str, Any] = {"index_rows": len(index), "structures_missing": 0,
                                  "structures_without_compounds": 0, "records": 0}
        unpaired: dict[str, str] = {}
        found: set[str] = set()
        for s in index.to_dict(orient="records"):
            gene = gene_key(s["gene_symbol"])
            if wanted is not None and gene not in wanted:
                continue
            found.add(gene)
            path = self.structures_dir / str(s["file"])
            if not path.is_file():
                counts["structures_missing"] += 1
                skips.add(f"structure:{s['file']}", "structure_pairs", "structure_path", str(path),
                          f"structure file not found in {self.structures_dir}")
                continue
            compounds = by_gene.get(gene, [])
            if not compounds:
                counts["structures_without_compounds"] += 1
                unpaired[str(s["file"])] = (f"gene {gene!r} (gene_symbol {s['gene_symbol']!r}) is no target_gene_symbol "
                                            f"of {self.edges_path.name}" if gene else "the index row has no gene_symbol")
                continue
            seen: set[str] = set()
            for c in compounds:
                cid = str(c["broad_cpd_id"])
                if cid in seen:
                    continue
                if self.p.max_compounds_per_structure and len(seen) >= self.p.max_compounds_per_structure:
                    break
                seen.add(cid)
                rid = f"{cid}@{s['file']}"
                smiles = c.get("smiles")
                if not isinstance(smiles, str) or not smiles.strip():
                    skips.add(rid, "structure_pairs", "smiles", None, "compound has no SMILES in the table")
                    continue
                counts["records"] += 1
                yield Record(rid, {
                    "smiles": smiles, "compound_id": cid, "compound_name": c.get("pert_iname"),
                    "inchikey": c.get("inchikey"), "moa": c.get("moa"), "target": gene,
                    "structure_path": str(path.resolve()), "uniprot": s["uniprot"],
                    "gene_symbol": s["gene_symbol"]})
        if unpaired:
            counts["structures_without_compounds (file: why)"] = unpaired
        if wanted is not None and wanted - found:
            counts["genes_not_in_the_index"] = sorted(wanted - found)
        self._counts = counts

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"index": str(self.index_path), "structures_dir": str(self.structures_dir),
                                "compound_targets": str(self.edges_path),
                                "source": "Drug Repurposing Hub (Corsello et al. 2017) x RCSB PDB / AlphaFold DB"}
        info.update(self._counts)
        return info
