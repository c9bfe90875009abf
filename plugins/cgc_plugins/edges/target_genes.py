"""Target-gene edges: a record's compound -> the gene nodes of its targets in the record's own gene graph.

Cross-scale edges from a compound to the genes the drug-target tables list as its targets
(Repurposing Hub / JUMP-Target gene symbols, read and matched by
:class:`~cgc_plugins.edges.target_tables.CompoundTargetTables`, the same join as ``drug_target``),
for records that carry a compound *and* an expression profile (the ``expression_genes`` builder's
``expression_gene`` nodes, one per panel gene).

**Which node is which gene.** Every gene node carries its identity as ``x_cat[:, c]``: the index of
its gene among the class names of the node type's categorical feature ``gene`` (the panel, then
``other``), which the builder declares in its schema. The engine hands this source the builders'
schema before the run starts (:meth:`TargetGeneEdges.bind`), so node ``j`` is gene
``names[x_cat[j, c]]``; nothing is assumed about node order.

**The compound** is matched by the record's ``inchikey`` field (first 14 characters), else the
InChIKey connectivity block of its SMILES (``smiles_field``), and by its ``compound_id`` (13-character
Broad id prefix).

Per record, edges ``(compound, targets_gene, <gene node type>)`` from the (single) compound node to
every gene node whose gene the tables list as a target, and the reverse
``(<gene node type>, gene_targeted_by, compound)``; ``edge_attr`` float32 ``[E, 1]`` = ``confidence``,
the fraction of the configured tables listing the pair. The edge types declare the role
``treatment``: they join the compound to the cell's state nodes, so the leak-free views drop them
(the control state must not know which compound was applied).

A record without a compound or without gene nodes gets no edges (not an error). A compound whose
targets are not in the panel (or that the tables do not list) keeps no edge and is counted:
:meth:`TargetGeneEdges.describe` gives the counts and names the first 20 such compounds with the
reason.
"""

from __future__ import annotations

from typing import Any

import torch
from torch_geometric.data import HeteroData

from cgc_framework.plugin import EdgeSource, EdgeTypeSpec, FeatureSpec, GraphSchema, Record
from cgc_framework.plugin.roles import TREATMENT

from .params import TargetGeneParams
from .target_tables import CompoundTargetTables, gene_symbol

MAX_NAMED = 20
"""Compounds without a target gene in the panel named in :meth:`TargetGeneEdges.describe`."""


class TargetGeneEdges(EdgeSource):
    """Registered as ``target_genes``; see the module docstring."""

    def __init__(self, params: TargetGeneParams | None = None):
        p = self.p = params or TargetGeneParams()
        self.tables = CompoundTargetTables(p.repurposing_edges, p.jump_target, use_embedded=p.use_embedded,
                                           component="target_genes")
        self.gene_names: tuple[str, ...] | None = None
        """Class names of the gene feature (index -> gene symbol, upper case), set by :meth:`bind`."""
        self.column: int | None = None
        """The gene feature's column in ``x_cat``."""
        self.stats = {"records": 0, "with_compound": 0, "with_gene_nodes": 0, "compounds_in_tables": 0,
                      "with_target_genes": 0, "no_target_gene_in_panel": 0, "edges": 0}
        self.without: dict[str, str] = {}
        """Compound -> why it has no target-gene edge (the first :data:`MAX_NAMED`)."""

    def bind(self, schema: GraphSchema) -> None:
        """Read the gene symbols of ``gene_node_type``'s ``gene_feature`` classes from the builders'
        schema. ``ValueError`` (naming the fix) when the node type or the feature is not declared."""
        p = self.p
        spec = schema.node_types.get(p.gene_node_type)
        if spec is None:
            raise ValueError(f"target_genes links compounds to '{p.gene_node_type}' nodes, which no graph builder "
                             f"declares (node types: {', '.join(sorted(schema.node_types)) or 'none'}); configure the "
                             f"expression modality (builder expression_genes) or set the param gene_node_type")
        cats = [f.name for f in spec.categorical]
        if p.gene_feature not in cats:
            raise ValueError(f"target_genes: node type '{p.gene_node_type}' has no categorical feature "
                             f"'{p.gene_feature}' naming its genes (its categorical features: "
                             f"{', '.join(cats) or 'none'}); set the param gene_feature")
        feature = spec.categorical[cats.index(p.gene_feature)]
        if not feature.names:
            raise ValueError(f"target_genes: feature '{p.gene_feature}' of '{p.gene_node_type}' declares no class "
                             f"names, so its x_cat indices cannot be matched to gene symbols")
        self.column = cats.index(p.gene_feature)
        self.gene_names = tuple(gene_symbol(n) for n in feature.names)

    def schema(self) -> GraphSchema:
        conf = FeatureSpec.continuous("confidence", 1, "", "fraction of the drug-target tables listing the pair")
        g = self.p.gene_node_type
        # the compound and gene node types are declared by the molecule and expression builders
        return GraphSchema({}, {e.key: e for e in (
            EdgeTypeSpec((conf,), src="compound", rel="targets_gene", dst=g, role=TREATMENT,
                         description="compound -> the cell's gene nodes of its annotated targets "
                                     "(Repurposing Hub / JUMP-Target gene symbols)"),
            EdgeTypeSpec((conf,), src=g, rel="gene_targeted_by", dst="compound", role=TREATMENT,
                         description="reverse of (compound, targets_gene, gene)"))})

    def compound_keys(self, record: Record) -> tuple[str | None, str | None]:
        """``(InChIKey or its 14-character block, compound id)`` of the record's compound: the
        ``inchikey`` field, else computed from the SMILES field; ``compound_id`` as given."""
        f = record.fields
        key = f.get("inchikey")
        if not (isinstance(key, str) and len(key.strip()) >= 14):
            from cgc_plugins.datasets.experiment import inchikey14_of

            smiles = f.get(self.p.smiles_field)
            key = inchikey14_of(smiles) if isinstance(smiles, str) and smiles.strip() else None
        cid = f.get("compound_id")
        return (key.strip() if isinstance(key, str) else None), (cid if isinstance(cid, str) else None)

    def add_edges(self, record: Record, data: HeteroData) -> None:
        """Add ``(compound, targets_gene, gene)`` and the reverse for the record's target genes among
        its gene nodes (module docstring); a record without a compound or gene nodes is left as is."""
        if self.gene_names is None or self.column is None:
            raise RuntimeError("target_genes was not bound to the builders' schema: compose the run (plan_run / "
                               "cgc-run), or call bind(schema) with the expression builder's schema first")
        g = self.p.gene_node_type
        self.stats["records"] += 1
        if "compound" not in data.node_types or not int(data["compound"].num_nodes or 0):
            return
        self.stats["with_compound"] += 1
        n = int(data[g].num_nodes or 0) if g in data.node_types else 0
        if not n:
            return
        self.stats["with_gene_nodes"] += 1
        key, cid = self.compound_keys(record)
        tg = self.tables.targets(key, cid)
        self.stats["compounds_in_tables"] += bool(tg)
        idx = data[g].x_cat[:, self.column].tolist()
        names = self.gene_names
        hit = [(j, names[i]) for j, i in enumerate(idx) if 0 <= i < len(names) and names[i] in tg]
        if hit:
            self.stats["with_target_genes"] += 1
        else:
            self.stats["no_target_gene_in_panel"] += 1
            who = cid or key or record.id
            if len(self.without) < MAX_NAMED and who not in self.without:
                self.without[who] = (f"targets {', '.join(sorted(tg)[:8])}{' ...' if len(tg) > 8 else ''}: none in "
                                     f"the {n}-gene panel" if tg else
                                     f"not in the tables ({self.tables.names()})")
        self.stats["edges"] += len(hit)
        genes = torch.tensor([j for j, _ in hit], dtype=torch.long)
        comp = torch.zeros(len(hit), dtype=torch.long)
        conf = torch.tensor([[tg[s]] for _, s in hit], dtype=torch.float32).reshape(len(hit), 1)
        empty = torch.zeros(len(hit), 0, dtype=torch.long)
        for k, ei in ((("compound", "targets_gene", g), torch.stack([comp, genes])),
                      ((g, "gene_targeted_by", "compound"), torch.stack([genes, comp]))):
            data[k].edge_index = ei
            data[k].edge_attr = conf.clone()
            data[k].edge_attr_cat = empty.clone()

    def describe(self) -> dict[str, Any]:
        """Counts since construction: records seen, with a compound, with gene nodes, compounds the
        tables list, records with >= 1 target-gene edge, compounds with no target gene in the panel,
        edges; and the first 20 compounds without a target gene, with the reason."""
        out: dict[str, Any] = {"sources": {k: v.name for k, v in self.tables.paths.items()},
                               "gene classes": f"{len(self.gene_names or ())} ({self.p.gene_node_type}."
                                               f"{self.p.gene_feature})", **self.stats}
        if self.without:
            out[f"compounds without a target gene in the panel (first {MAX_NAMED}: why)"] = dict(self.without)
        return out


__all__ = ["TargetGeneEdges"]
