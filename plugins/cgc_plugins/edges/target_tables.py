"""Compound -> target gene symbols from the curated drug-target tables (shared by the edge sources).

Sources (any subset): the Drug Repurposing Hub compound-target edge list
(``repurposing_compound_target_edges.tsv``: ``broad_cpd_id``, ``inchikey``, ``target_gene_symbol``) and
JUMP-Target compound metadata (``broad_sample``, ``InChIKey``, ``target``). A compound is matched by
InChIKey (first 14 characters, the connectivity layer) or by its 13-character Broad id
(``BRD-K12345678``, the prefix of a Broad sample id); gene symbols are compared upper-case, first
token (:func:`gene_symbol`). Used by ``drug_target`` (compound -> protein nodes) and
``target_genes`` (compound -> the expression gene nodes of its targets).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from cgc_plugins.datasets.tables import read_table, require_columns

EMBEDDED = Path(__file__).resolve().parents[1] / "datasets" / "data" / "targets"
"""The embedded subsets of the tables (``repurposing_compound_target_edges.tsv``, JUMP-Target-1,
``proteins_index.csv``)."""


def gene_symbol(s: object) -> str:
    """A gene symbol as the tables are matched on: first whitespace token, upper case."""
    text = str(s).split()
    return text[0].strip().upper() if text else ""


def read_checked(path: Path, sep: str, needed: tuple[str, ...], what: str, component: str, param: str) -> pd.DataFrame:
    """``path`` read as text; ``DataError`` naming the file, the missing columns and the ``component``
    param to give another table with."""
    df = read_table(path, what, sep=sep, dtype=str)
    require_columns(path, df.columns, needed, what, f"Give such a table as the {component} param {param}", sep=sep)
    return df


class CompoundTargetTables:
    """The gene symbols each compound targets, with the fraction of the configured tables that list
    the pair.

    Args:
        repurposing_edges, jump_target: table paths; ``None`` = the embedded copy when
            ``use_embedded``, else that source is not used.
        component: the edge source's name, for messages (``Give such a table as the <component> param``).
    """

    def __init__(self, repurposing_edges: Path | None, jump_target: Path | None, *, use_embedded: bool = True,
                 component: str = "drug_target"):
        emb = use_embedded
        paths = {
            "repurposing_hub": repurposing_edges or (EMBEDDED / "repurposing_compound_target_edges.tsv" if emb else None),
            "jump_target": jump_target or (EMBEDDED / "JUMP-Target-1_compound_metadata_single_target.tsv" if emb else None),
        }
        self.paths: dict[str, Path] = {k: Path(v) for k, v in paths.items() if v is not None}
        self.use_embedded = use_embedded
        self.by_key14: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        """InChIKey14 -> gene -> the sources listing the pair."""
        self.by_brd: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        """Broad id (13 characters) -> gene -> the sources listing the pair."""
        if "repurposing_hub" in self.paths:
            df = read_checked(self.paths["repurposing_hub"], "\t", ("inchikey", "broad_cpd_id", "target_gene_symbol"),
                              "Repurposing Hub compound-target table", component, "repurposing_edges")
            self._index(df["inchikey"], df["broad_cpd_id"], df["target_gene_symbol"], "repurposing_hub")
        if "jump_target" in self.paths:
            df = read_checked(self.paths["jump_target"], "\t", ("InChIKey", "broad_sample", "target"),
                              "JUMP-Target compound table", component, "jump_target")
            self._index(df["InChIKey"], df["broad_sample"], df["target"], "jump_target")
        self.n_sources = max(len(self.paths), 1)

    def _index(self, keys: Iterable[object], brds: Iterable[object], genes: Iterable[object], source: str) -> None:
        for k, b, gs in zip(keys, brds, genes):
            if not isinstance(gs, str):
                continue
            for g in gs.split("|"):
                g = gene_symbol(g)
                if not g:
                    continue
                if isinstance(k, str) and len(k) >= 14:
                    self.by_key14[k[:14]][g].add(source)
                if isinstance(b, str) and b.startswith("BRD-"):
                    self.by_brd[b[:13]][g].add(source)

    def targets(self, inchikey: str | None, compound_id: str | None) -> dict[str, float]:
        """``{gene: confidence}`` of one compound (empty when the tables do not list it); confidence =
        fraction of the configured tables listing the pair (1.0 = every table agrees)."""
        found: dict[str, set[str]] = defaultdict(set)
        if isinstance(inchikey, str) and len(inchikey) >= 14:
            for g, s in self.by_key14.get(inchikey[:14], {}).items():
                found[g] |= s
        if isinstance(compound_id, str) and compound_id.startswith("BRD-"):
            for g, s in self.by_brd.get(compound_id[:13], {}).items():
                found[g] |= s
        return {g: len(s) / self.n_sources for g, s in found.items()}

    def names(self) -> str:
        """The tables for messages: ``repurposing_hub: x.tsv (embedded subset), jump_target: y.tsv``."""
        emb = " (embedded subset)" if self.use_embedded else ""
        return ", ".join(f"{k}: {v.name}{emb if v.parent == EMBEDDED else ''}" for k, v in self.paths.items()) \
            or "no table"


__all__ = ["EMBEDDED", "CompoundTargetTables", "gene_symbol", "read_checked"]
