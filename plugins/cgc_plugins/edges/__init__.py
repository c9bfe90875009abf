"""Cross-scale edge sources: drug-target (compound -> protein) and co-occurrence (compound -> cell)."""

from cgc_framework.plugin import hookimpl

from .cooccurrence import CooccurrenceEdges, CooccurrenceParams
from .drug_target import DrugTargetEdges, DrugTargetParams


@hookimpl
def register_edge_sources(register):
    register("drug_target", DrugTargetEdges, params=DrugTargetParams,
             description="compound -> target protein nodes from the Repurposing Hub and JUMP-Target tables "
                         "(InChIKey / Broad id join; confidence, has_structure)")
    register("cooccurrence", CooccurrenceEdges, params=CooccurrenceParams,
             description="compound -> cell compartments of its experiment, log10 dose (uM) as edge feature")
