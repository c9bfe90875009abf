"""Drug-target edges: compound -> its annotated target proteins, from curated tables.

Sources (any subset): the Drug Repurposing Hub compound-target edge list
(``repurposing_compound_target_edges.tsv``: ``broad_cpd_id``, ``inchikey``, ``target_gene_symbol``) and
JUMP-Target compound metadata (``broad_sample``, ``InChIKey``, ``target``), read and matched by
:class:`~cgc_plugins.edges.target_tables.CompoundTargetTables`: a record's compound is matched by
InChIKey (first 14 characters, the connectivity layer) or by its 13-character Broad id
(``BRD-K12345678``, the prefix of a Broad sample id). Genes resolve to structures through
``proteins/index.csv`` (``gene_symbol`` -> ``uniprot``, ``file``).

Per record, one ``protein`` node per target gene (no input features, ``x`` ``[P, 0]``) and edges
``(compound, targets, protein)`` / ``(protein, targeted_by, compound)`` with

* ``edge_attr`` float32 ``[P, 1]`` ``confidence`` = fraction of the configured sources that list the
  pair (1.0 = every table agrees);
* ``edge_attr_cat`` int64 ``[P, 1]`` ``has_structure`` (0/1: the gene has a structure in the index).

A compound without any annotated target gets no protein node and stays usable (counted, see
:meth:`DrugTargetEdges.describe`).

A record with a structure (``structure_path``, built by a protein builder) is linked through its
gene (:meth:`DrugTargetEdges.add_edges`). When the tables do not list that gene as a target of the
compound, the pair cannot be linked: a record whose own ``target`` field pairs the compound with
the structure's gene (the ``structure_pairs`` dataset does) is rejected with the reason (the tables
disagree with the dataset: give this edge source the table the dataset read); any other record keeps
its unlinked structure, counted and named in :meth:`describe` with the reason.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch_geometric.data import HeteroData

from cgc_framework.plugin import EdgeSource, EdgeTypeSpec, FeatureSpec, GraphSchema, NodeTypeSpec, Record, RecordError
from cgc_framework.plugin.roles import TARGET

from .params import DrugTargetParams
from .target_tables import EMBEDDED, CompoundTargetTables, gene_symbol, read_checked

PROTEIN_NODE = NodeTypeSpec((), name="protein", description="target protein (structure)", role=TARGET)
"""The ``protein`` node type as declared here; a protein builder must declare it identically."""


_gene = gene_symbol


class DrugTargetEdges(EdgeSource):
    def __init__(self, params: DrugTargetParams | None = None):
        p = self.p = params or DrugTargetParams()
        self.tables = CompoundTargetTables(p.repurposing_edges, p.jump_target, use_embedded=p.use_embedded,
                                           component="drug_target")
        self.paths = self.tables.paths
        self.by_key14 = self.tables.by_key14
        self.by_brd = self.tables.by_brd
        idx = p.proteins_index or (EMBEDDED / "proteins_index.csv" if p.use_embedded else None)
        self.structures: dict[str, tuple[str, str]] = {}
        self.gene_by_file: dict[str, str] = {}
        self.gene_by_uniprot: dict[str, str] = {}
        self.index_path = Path(idx) if idx is not None else None
        if idx is not None:
            ix = read_checked(Path(idx), ",", ("gene_symbol", "uniprot", "file"), "proteins index", "drug_target",
                              "proteins_index")
            for g, u, f in zip(ix["gene_symbol"], ix["uniprot"], ix["file"]):
                self.structures.setdefault(_gene(g), (u, f))
                self.gene_by_file.setdefault(str(f), _gene(g))
                self.gene_by_uniprot.setdefault(str(u).strip().upper(), _gene(g))
        self.stats = {"records": 0, "with_targets": 0, "edges": 0, "targets_with_structure": 0,
                      "structures_linked": 0, "structures_not_a_target": 0, "structures_unidentified": 0}
        self.unlinked: dict[str, str] = {}
        """Record id -> why its structure is not linked to its compound (the first 20)."""

    def targets(self, inchikey: str | None, compound_id: str | None) -> dict[str, float]:
        """``{gene: confidence}`` of one compound (empty when unannotated)."""
        out = self.tables.targets(inchikey, compound_id)
        if self.p.only_with_structure:
            out = {g: c for g, c in out.items() if g in self.structures}
        if self.p.max_targets is not None:
            out = dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))[: self.p.max_targets])
        return out

    def schema(self) -> GraphSchema:
        conf = FeatureSpec.continuous("confidence", 1, "", "fraction of the drug-target tables listing the pair")
        struct = FeatureSpec.categorical("has_structure", 2, "0: no structure in the proteins index, 1: has one")
        return GraphSchema.of([PROTEIN_NODE], [
            EdgeTypeSpec((conf, struct), src="compound", rel="targets", dst="protein",
                         description="drug-target annotation (Repurposing Hub / JUMP-Target)"),
            EdgeTypeSpec((conf, struct), src="protein", rel="targeted_by", dst="compound",
                         description="reverse of (compound, targets, protein)")])

    def structure_gene(self, record: Record) -> str | None:
        """Gene symbol of the record's structure (linking rule, see ``docs/featurization.md``):
        the record's ``gene_symbol`` field, else its ``uniprot`` field through the proteins index,
        else the structure file's name through the index; ``None`` when none resolves."""
        f = record.fields
        gene = f.get("gene_symbol")
        if isinstance(gene, str) and gene.strip():
            return _gene(gene)
        uni = f.get("uniprot")
        if isinstance(uni, str) and uni.strip().upper() in self.gene_by_uniprot:
            return self.gene_by_uniprot[uni.strip().upper()]
        path = f.get("structure_path")
        if isinstance(path, (str, Path)):
            return self.gene_by_file.get(Path(path).name)
        return None

    def add_edges(self, record: Record, data: HeteroData) -> None:
        """Add the record's target ``protein`` nodes and the compound-protein edges.

        When a protein builder already put a residue graph in ``data`` (its one ``protein`` node,
        index 0, joined by ``(residue, in, protein)``), that node *is* the target node of the
        structure's gene (:meth:`structure_gene`): it stays index 0, the compound's other target
        genes follow in sorted order, and the compound-targets edge of the structure's gene points
        at it, so message passing runs atom - compound - protein - residue. A structure whose gene
        is not among the compound's targets keeps its node without a targets edge (counted as
        ``structures_not_a_target``); one whose gene cannot be resolved is counted as
        ``structures_unidentified`` and likewise left unlinked.
        """
        f = record.fields
        tg = self.targets(f.get("inchikey"), f.get("compound_id"))
        genes = sorted(tg)
        self.stats["records"] += 1
        self.stats["with_targets"] += bool(genes)
        self.stats["edges"] += len(genes)
        has_structure_node = ("residue", "in", "protein") in data.edge_types
        if has_structure_node:
            sg = self.structure_gene(record)
            if sg is None:
                self.stats["structures_unidentified"] += 1
                self._unlinked(record, f"the structure's gene is unknown: no gene_symbol field, and neither its "
                                       f"uniprot nor its file name is in {self._index_name()}")
                sg = "\0structure"                   # a node that no gene can match
            elif sg in tg:
                self.stats["structures_linked"] += 1
            else:
                why = self._not_a_target(record, sg, tg)
                paired = {_gene(t) for t in str(f.get("target") or "").split("|") if t.strip()}
                if sg in paired:                     # the dataset pairs them; these tables do not
                    raise RecordError(f"structure {Path(str(f.get('structure_path'))).name} (gene {sg}) is paired "
                                      f"with this compound by the dataset (its target field), but {why}: the pair "
                                      f"cannot be linked. Give drug_target the compound-target table the dataset "
                                      f"read (params repurposing_edges, proteins_index)")
                self.stats["structures_not_a_target"] += 1
                self._unlinked(record, why)
            nodes = [sg] + [g for g in genes if g != sg]
        else:
            nodes = genes
        p = len(nodes)
        store = data["protein"]     # a builder's node attributes (e.g. ss_method) stay
        store.x = torch.zeros(p, 0)
        store.x_cat = torch.zeros(p, 0, dtype=torch.long)
        store.num_nodes = p
        linked = [g for g in nodes if g in tg]
        prot = torch.tensor([nodes.index(g) for g in linked], dtype=torch.long)
        comp = torch.zeros(len(linked), dtype=torch.long)
        conf = torch.tensor([[tg[g]] for g in linked], dtype=torch.float32).reshape(len(linked), 1)
        has = torch.tensor([[int(g in self.structures)] for g in linked], dtype=torch.long).reshape(len(linked), 1)
        self.stats["targets_with_structure"] += int(has.sum())
        for key, ei in ((("compound", "targets", "protein"), torch.stack([comp, prot])),
                        (("protein", "targeted_by", "compound"), torch.stack([prot, comp]))):
            data[key].edge_index = ei
            data[key].edge_attr = conf.clone()
            data[key].edge_attr_cat = has.clone()

    def _tables(self) -> str:
        return self.tables.names()

    def _index_name(self) -> str:
        return self.index_path.name if self.index_path is not None else "the proteins index (none configured)"

    def _not_a_target(self, record: Record, gene: str, targets: dict[str, float]) -> str:
        f = record.fields
        who = f"compound {f.get('compound_id') or '?'} (InChIKey {f.get('inchikey') or '?'})"
        if not targets:
            return f"{who} is not in drug_target's tables ({self._tables()})"
        return (f"drug_target's tables ({self._tables()}) list {', '.join(sorted(targets)[:8])} but not {gene} "
                f"as targets of {who}")

    def _unlinked(self, record: Record, why: str) -> None:
        if len(self.unlinked) < 20:
            self.unlinked[record.id] = why

    def describe(self) -> dict[str, object]:
        """Counts since construction (records seen, with >= 1 target, edges, targets with structure,
        structures linked / not a target / unidentified) and the first unlinked structures by record."""
        out: dict[str, object] = {"sources": {k: v.name for k, v in self.paths.items()}, **self.stats}
        if self.unlinked:
            out["unlinked structures (record: why; first 20)"] = dict(self.unlinked)
        return out

