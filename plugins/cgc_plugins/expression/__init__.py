"""Expression modality plugin: single-cell (or bulk) expression as gene graphs (docs/expression.md).

``expression`` modality (record field ``expression_profile``), its ``expression_genes`` builder
(profile -> one ``cell_state`` gene node per panel gene, co-expression edges) and the ``h5ad_cells``
dataset (one record per cell of an AnnData ``.h5ad`` file).

Registered by lazy ``"module:Name"`` references, so discovery does not import torch, h5py or anndata.
"""

from cgc_framework.plugin import Modality, hookimpl


def _expression_modality(params: None) -> Modality:
    return Modality(record_field="expression_profile",
                    description="a cell's (or sample's) gene expression profile")


@hookimpl
def register_modalities(register):
    register("expression", _expression_modality, description="a cell's (or sample's) gene expression profile "
                                                              "(single-cell .h5ad)")


@hookimpl
def register_graph_builders(register):
    register("expression_genes", "cgc_plugins.expression.builder:ExpressionGeneBuilder",
             params="cgc_plugins.expression.params:ExpressionGraphParams",
             description="expression profile -> gene graph: one cell_state node per panel gene (HVGs or a list; "
                         "value + measured flag, learned gene identity), co-expression (or table) edges")


@hookimpl
def register_datasets(register):
    register("h5ad_cells", "cgc_plugins.expression.dataset:H5adCells",
             params="cgc_plugins.expression.params:H5adCellsParams",
             description="cells of an AnnData .h5ad file as records (expression profile + obs columns such as "
                         "the cell type), streamed in chunks; anndata or h5py")
