"""Params of the edge sources; light imports only, so validating a config does not import pandas or
torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cgc_framework.plugin.params import ExistingPath


class CooccurrenceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dose_field: str = Field("dose_um", description="record field with the dose in uM")
    cell_node_type: str = Field("compartment", description="cell node type the compound is linked to")


class DrugTargetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repurposing_edges: ExistingPath | None = Field(
        None, description="Repurposing Hub compound-target edge list (TSV); default: embedded subset")
    jump_target: ExistingPath | None = Field(
        None, description="JUMP-Target compound metadata TSV (broad_sample, InChIKey, target); default: embedded")
    proteins_index: ExistingPath | None = Field(
        None, description="proteins/index.csv (gene_symbol, uniprot, file); default: embedded")
    use_embedded: bool = Field(True, description="fill unset tables with the embedded copies")
    only_with_structure: bool = Field(False, description="keep only targets with a structure in the index")
    max_targets: int | None = Field(None, gt=0, description="keep at most this many targets per compound "
                                                            "(highest confidence, then gene name)")


class TargetGeneParams(BaseModel):
    """``target_genes``: compound -> the gene nodes of its targets (docs/expression.md)."""

    model_config = ConfigDict(extra="forbid")

    repurposing_edges: ExistingPath | None = Field(
        None, description="Repurposing Hub compound-target edge list (TSV: broad_cpd_id, inchikey, "
                          "target_gene_symbol); default: embedded subset")
    jump_target: ExistingPath | None = Field(
        None, description="JUMP-Target compound metadata TSV (broad_sample, InChIKey, target); default: embedded")
    use_embedded: bool = Field(True, description="fill unset tables with the embedded copies")
    gene_node_type: str = Field("expression_gene", description="node type with one node per gene (the expression "
                                                               "builder's)")
    gene_feature: str = Field("gene", description="categorical feature of gene_node_type whose class names are the "
                                                  "gene symbols (x_cat column; the node's gene identity)")
    smiles_field: str = Field("smiles", description="record field with the compound's SMILES: its InChIKey "
                                                    "connectivity block joins the tables when the record has no "
                                                    "inchikey field")
