"""Params of the expression plugin's dataset and graph builder; light imports only (pydantic), so
validating a config does not import torch, h5py or anndata."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from cgc_framework.plugin import ExistingPath, ParamsModel

MATRIX_HELP = ("which matrix of the .h5ad: X, raw.X (the raw matrix with raw's gene table) or layers/<name>")
READER_HELP = "auto: anndata when importable, else h5py (the AnnData on-disk format read directly)"


def _check_matrix(value: str) -> str:
    if value in ("X", "raw.X") or (value.startswith("layers/") and len(value) > len("layers/")):
        return value
    raise ValueError(f"matrix must be 'X', 'raw.X' or 'layers/<name>', not {value!r}")


class H5adCellsParams(ParamsModel):
    """``h5ad_cells``: one record per cell of an AnnData ``.h5ad`` file (docs/expression.md)."""

    path: ExistingPath = Field(description=".h5ad file (cells x genes)")
    matrix: str = Field("X", description=MATRIX_HELP)
    obs_fields: dict[str, str] = Field(
        {}, description="obs column -> record field copied into each record, e.g. {bulk_labels: cell_type}; "
                        "a column holding SMILES mapped to `smiles` (and one holding doses in uM to `dose_um`) "
                        "lets the molecule modality join the cell")
    max_cells: int | None = Field(None, gt=0, description="read only the first N cells")
    chunk_cells: int = Field(1024, gt=0, description="cells read from the file at a time")
    reader: Literal["auto", "anndata", "h5py"] = Field("auto", description=READER_HELP)

    @field_validator("matrix")
    @classmethod
    def _matrix(cls, value: str) -> str:
        return _check_matrix(value)


class ExpressionGraphParams(ParamsModel):
    """``expression_genes``: a cell's expression profile -> gene graph (docs/expression.md)."""

    reference: ExistingPath = Field(
        description=".h5ad whose cells define the gene panel and the co-expression edges (normally the "
                    "dataset's own file); read once when the builder is constructed")
    matrix: str = Field("X", description=MATRIX_HELP)
    genes: Literal["highly_variable", "top_variance", "all"] = Field(
        "highly_variable", description="the gene panel: highly_variable = var['highly_variable'] (falls back to "
                                       "top_variance when the file has no such column); top_variance = the n_genes "
                                       "genes of highest variance over the reference cells; all = every gene. "
                                       "Ignored when gene_list or gene_file is given")
    gene_list: list[str] | None = Field(None, description="explicit gene panel (gene names as in the file's var index)")
    gene_file: ExistingPath | None = Field(None, description="text file with the panel, one gene per line ('#' comments)")
    n_genes: int | None = Field(None, gt=0, description="at most this many genes (the most variable); top_variance "
                                                        "default 200")
    coexpression_k: int = Field(8, ge=0, description="co-expression edges: each gene's k partners of highest |Pearson r| "
                                                     "over the reference cells (0 = none)")
    min_abs_corr: float = Field(0.2, ge=0, le=1, description="co-expression edges need |r| at least this")
    edge_table: ExistingPath | None = Field(
        None, description="gene-gene edges from a CSV/TSV (columns gene_a, gene_b, optional weight) instead of "
                          "co-expression")
    reference_max_cells: int = Field(50_000, gt=1, description="panel statistics from the first N reference cells")
    clip: float | None = Field(10.0, gt=0, description="clip values to [-clip, clip] (null = no clip)")
    reader: Literal["auto", "anndata", "h5py"] = Field("auto", description=READER_HELP)

    @field_validator("matrix")
    @classmethod
    def _matrix(cls, value: str) -> str:
        return _check_matrix(value)

    def model_post_init(self, _: object) -> None:
        if self.gene_list is not None and self.gene_file is not None:
            raise ValueError("give gene_list or gene_file, not both")
        if self.gene_list is not None and not self.gene_list:
            raise ValueError("gene_list is empty; leave it out to use `genes`")
