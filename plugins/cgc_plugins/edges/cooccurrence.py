"""Co-occurrence edges: the compound of an experiment -> the cell it treated, dose as edge feature.

Adds ``(compound, treats, <cell type>)`` and the reverse ``(<cell type>, treated_by, compound)``
from the (single) ``compound`` node to every node of the cell type (default ``compartment``), with
``edge_attr`` float32 ``[E, 1]`` = log10(dose in uM), and sets the graph attribute ``dose_um``
float32 ``[1]``. A record without a positive dose raises ``RecordError``.
"""

from __future__ import annotations

import math

import torch
from torch_geometric.data import HeteroData

from cgc_framework.plugin import EdgeSource, EdgeTypeSpec, FeatureSpec, GraphSchema, Record, RecordError
from cgc_framework.plugin.roles import TREATMENT

from .params import CooccurrenceParams


class CooccurrenceEdges(EdgeSource):
    def __init__(self, params: CooccurrenceParams | None = None):
        self.p = params or CooccurrenceParams()

    def schema(self) -> GraphSchema:
        dose = FeatureSpec.continuous("log10_dose", 1, "log10(uM)", "log10 of the dose in uM")
        c = self.p.cell_node_type
        # endpoint node types are declared by the molecule / cell builders; merging checks they exist
        return GraphSchema({}, {e.key: e for e in (
            EdgeTypeSpec((dose,), src="compound", rel="treats", dst=c, role=TREATMENT,
                         description="compound applied to the cell in this experiment (co-occurrence)"),
            EdgeTypeSpec((dose,), src=c, rel="treated_by", dst="compound", role=TREATMENT,
                         description="reverse of (compound, treats, cell)"))})

    def add_edges(self, record: Record, data: HeteroData) -> None:
        dose = record.fields.get(self.p.dose_field)
        if dose is None or not isinstance(dose, (int, float)) or not math.isfinite(dose) or dose <= 0:
            raise RecordError(f"co-occurrence edge needs a positive dose in field '{self.p.dose_field}', got {dose!r}")
        if "compound" not in data.node_types or self.p.cell_node_type not in data.node_types:
            raise RecordError(f"co-occurrence edge needs a compound and {self.p.cell_node_type} nodes "
                              "(molecule and cell subgraphs)")
        n = int(data[self.p.cell_node_type].num_nodes or 0)
        cells = torch.arange(n)
        comp = torch.zeros(n, dtype=torch.long)
        attr = torch.full((n, 1), math.log10(dose), dtype=torch.float32)
        c = self.p.cell_node_type
        data["compound", "treats", c].edge_index = torch.stack([comp, cells])
        data["compound", "treats", c].edge_attr = attr
        data[c, "treated_by", "compound"].edge_index = torch.stack([cells, comp])
        data[c, "treated_by", "compound"].edge_attr = attr.clone()
        data.dose_um = torch.tensor([float(dose)], dtype=torch.float32)
