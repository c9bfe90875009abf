"""Cross-scale edge sources: drug-target (compound -> protein), target genes (compound -> the expression
gene nodes of its targets) and co-occurrence (compound -> cell).

Registered by lazy ``"module:Name"`` references, so discovery does not import pandas or torch."""

from cgc_framework.plugin import hookimpl


@hookimpl
def register_edge_sources(register):
    register("drug_target", "cgc_plugins.edges.drug_target:DrugTargetEdges",
             params="cgc_plugins.edges.params:DrugTargetParams",
             description="compound -> target protein nodes from the Repurposing Hub and JUMP-Target tables "
                         "(InChIKey / Broad id join; confidence, has_structure)")
    register("target_genes", "cgc_plugins.edges.target_genes:TargetGeneEdges",
             params="cgc_plugins.edges.params:TargetGeneParams",
             description="compound -> the expression gene nodes of its targets (Repurposing Hub / JUMP-Target gene "
                         "symbols matched to the gene graph's declared gene identities; confidence)")
    register("cooccurrence", "cgc_plugins.edges.cooccurrence:CooccurrenceEdges",
             params="cgc_plugins.edges.params:CooccurrenceParams",
             description="compound -> cell compartments of its experiment, log10 dose (uM) as edge feature")
