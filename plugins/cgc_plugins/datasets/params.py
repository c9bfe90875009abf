"""Params of the datasets (and the models they nest: column maps, splits, field specs); light
imports only, so validating a config does not import pandas, NumPy or torch."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cgc_framework.plugin.params import ExistingPath


class ColumnMap(BaseModel):
    """Which profile columns hold what (``None`` = not in this file)."""

    model_config = ConfigDict(extra="forbid")

    plate: str
    well: str
    compound_id: str
    dose_um: str | None = None
    control_column: str = Field(..., description="column identifying negative-control wells")
    control_values: list[str] = Field(["DMSO"], description="values of control_column that mark controls")
    compound_name: str | None = None
    smiles: str | None = None
    inchikey: str | None = None
    moa: str | None = None
    target: str | None = None
    cell_line: str | None = None
    time_h: str | None = Field(None, description="column holding the hours of treatment")


PRESETS: dict[str, ColumnMap] = {
    "lincs_cpg0004": ColumnMap(plate="Metadata_Plate", well="Metadata_Well", compound_id="Metadata_broad_sample",
                               dose_um="Metadata_mmoles_per_liter", control_column="Metadata_broad_sample",
                               inchikey="Metadata_InChIKey14", moa="Metadata_moa", target="Metadata_target",
                               cell_line="Metadata_cell_id"),
    "cell_injury_dahlin2023": ColumnMap(plate="Plate", well="Well", compound_id="Compound BRD",
                                        dose_um="Compound Concentration (microMolar)",
                                        control_column="Compound Name", compound_name="Compound Name",
                                        smiles="Compound SMILES", inchikey="Compound InChIKey",
                                        moa="injury_type", cell_line="Characteristics [Cell Line]",
                                        time_h="Experimental Condition [Treatment time (h)]"),
    "bbbc021_annotated": ColumnMap(plate="Image_Metadata_Plate", well="Image_Metadata_Well",
                                   compound_id="Metadata_compound", compound_name="Metadata_compound",
                                   dose_um="Metadata_concentration_uM", control_column="Metadata_compound",
                                   moa="Metadata_moa", cell_line="Metadata_cell_line"),
    "cpjump1": ColumnMap(plate="Metadata_Plate", well="Metadata_Well", compound_id="Metadata_broad_sample",
                         control_column="Metadata_pert_type", control_values=["control"],
                         compound_name="Metadata_pert_iname", smiles="Metadata_smiles",
                         inchikey="Metadata_InChIKey", target="Metadata_gene"),
}


class SplitParams(BaseModel):
    """Seeded group split: every group (compound, scaffold, dose, cell line or MoA) goes wholly to one part.

    Assignment is a seeded hash of the group key (``u = crc32(seed|key) / 2**32``: test if
    ``u < test_fraction``, val if ``u < test_fraction + val_fraction``, else train), so it needs no
    pass over the data (streams) and is identical across runs and machines; fractions hold in
    expectation over groups.

    Explicit hold-out (``test_groups``, e.g. two of the six LINCS doses or a list of MoAs): those
    groups are the test part (``test_fraction`` is then unused) and the hash decides val/train among
    the rest. Numeric keys match within 5 % (``0.04`` matches the file's ``0.041152``), others as
    strings. ``val_by: record`` draws the val part per record (hash of the record id) instead of
    per group: an in-distribution hold-out of wells beside an out-of-distribution test part.

    K-fold cross-validation (``folds: K``, ``fold: k``): every group goes to fold
    ``floor(K * crc32(seed|key) / 2**32)``; fold ``k`` is the test part, and among the other groups
    a second hash (``crc32(seed|val|key)``) draws the val part (``val_fraction``, the model-selection
    part of the training compounds). Over ``fold = 0 .. K-1`` every group is tested exactly once and
    no group is in two folds. ``by: scaffold`` groups compounds by their Bemis-Murcko scaffold (RDKit,
    generic atoms kept), so no scaffold is both trained and tested. ``key: inchikey14`` identifies a
    compound by the InChIKey connectivity block of its SMILES instead of its id, so the same molecule
    listed under different ids by several sources falls in one group.
    """

    model_config = ConfigDict(extra="forbid")

    by: Literal["none", "compound", "scaffold", "dose", "cell_line", "moa"] = "none"
    seed: int = 0
    test_fraction: float = Field(0.2, ge=0, le=1)
    val_fraction: float = Field(0.1, ge=0, le=1)
    test_groups: list[str | float] | None = Field(
        None, description="these groups (of `by`) are the test part; the hash splits the rest into val/train")
    val_by: Literal["group", "record"] = Field(
        "group", description="val part drawn per group, or per record (in-distribution hold-out)")
    folds: int | None = Field(None, ge=2, description="K-fold cross-validation over groups (with `fold`)")
    fold: int | None = Field(None, ge=0, description="the fold held out as the test part (0 .. folds-1)")
    key: Literal["compound_id", "inchikey14"] = Field(
        "compound_id", description="compound identity for by: compound / scaffold: the record's compound id, or "
                                   "the InChIKey connectivity block of its SMILES (pooled sources)")

    def model_post_init(self, _: object) -> None:
        if (self.folds is None) != (self.fold is None):
            raise ValueError("split.folds and split.fold go together (e.g. folds: 5, fold: 0)")
        if self.folds is not None and self.fold is not None and self.fold >= self.folds:
            raise ValueError(f"split.fold must be in 0 .. {self.folds - 1}, got {self.fold}")
        if self.folds is not None and self.test_groups is not None:
            raise ValueError("split.folds and split.test_groups exclude each other")


class ExperimentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profiles: list[ExistingPath] | None = Field(
        None, description="well-level CellProfiler profile CSV(.gz)/parquet files; default: the embedded LINCS plate")
    columns: ColumnMap | None = Field(None, description="column map; default: detected from the header (PRESETS)")
    compounds: ExistingPath | None = Field(
        None, description="compound table joined on compounds_key == compound id, adding smiles/InChIKey/"
                          "name/moa/target where the profile lacks them; default: embedded LINCS compounds "
                          "when profiles is default")
    compounds_key: str = "broad_sample"
    compounds_match: Literal["compound_id", "inchikey14"] = Field(
        "compound_id", description="how records find their row of the compound table: their compound id == "
                                   "compounds_key, or the InChIKey connectivity block of their SMILES / InChIKey "
                                   "== the table's compounds_key column (e.g. InChIKey14 of repurposing_info)")
    normalize: Literal["plate_dmso_mad", "none"] = Field(
        "plate_dmso_mad", description="robust z vs the plate's control wells (pycytominer mad_robustize) or as is")
    mad_scope: Literal["plate", "file", "auto"] = Field(
        "plate", description="the spread of the robust z: each plate's own DMSO MAD (plate), the MAD of every "
                            "control well of the file around its plate's median (file), or file for plates with "
                            "fewer than min_plate_controls control wells and plate otherwise (auto)")
    min_plate_controls: int = Field(10, ge=1, description="fewest control wells for a plate's own MAD and DMSO "
                                                          "reference distribution (mad_scope auto)")
    context: bool = Field(
        True, description="add the plate's control profile before normalisation (its DMSO median as a robust z "
                          "against every DMSO well of the file) to both states, so that control states differ "
                          "between plates (docs/cell-graph.md)")
    cell_line: str | None = Field(None, description="cell line of wells whose file has no cell-line column")
    time_h: float | None = Field(None, gt=0, description="hours of treatment of wells whose file has no time column")
    source: str | None = Field(None, description="name of the source in each record's `source` field "
                                                 "(default: the profile file's name)")
    control_summary: Literal["median", "mean", "sample_well"] = Field(
        "median", description="control state x: per-feature median/mean of the plate's control wells, or one "
                              "control well drawn per record (seeded by split.seed and the record id)")
    nan_threshold: float = Field(0.05, ge=0, le=1, description="drop features NaN/inf in more than this "
                                                                "fraction of a file's wells (reported)")
    cache_dir: Path | None = Field(None, description="on-disk cache of normalized matrices (.npy, mmap)")
    split: SplitParams = Field(default_factory=SplitParams)
    include_splits: list[Literal["train", "val", "test"]] = Field(
        ["train", "val", "test"], description="yield only records of these split parts")


class SourceParams(BaseModel):
    """One source of the pooled corpus: its profile files and how to read them."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="the source's name (the records' `source` field)")
    profiles: list[ExistingPath] = Field(..., min_length=1)
    columns: ColumnMap | None = None
    compounds: ExistingPath | None = None
    compounds_key: str = "broad_sample"
    compounds_match: Literal["compound_id", "inchikey14"] = "compound_id"
    cell_line: str | None = None
    time_h: float | None = Field(None, gt=0)
    normalize: Literal["plate_dmso_mad", "none"] = "plate_dmso_mad"


class PooledParams(BaseModel):
    """``pooled_cellpainting``: several Cell Painting sources as one experiment dataset."""

    model_config = ConfigDict(extra="forbid")

    sources: list[SourceParams] = Field(..., min_length=1)
    control_summary: Literal["median", "mean", "sample_well"] = "median"
    nan_threshold: float = Field(0.05, ge=0, le=1)
    mad_scope: Literal["plate", "file", "auto"] = "auto"
    min_plate_controls: int = Field(10, ge=1)
    context: bool = True
    cache_dir: Path | None = None
    split: SplitParams = Field(default_factory=lambda: SplitParams(key="inchikey14"))
    include_splits: list[Literal["train", "val", "test"]] = ["train", "val", "test"]


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    channels: dict[str, ExistingPath] = Field(..., min_length=1, description="stain name -> image file")
    cells_mask: ExistingPath | None = None
    nuclei_mask: ExistingPath | None = None
    cells_outlines: ExistingPath | None = None
    nuclei_outlines: ExistingPath | None = None
    smiles: str | None = None
    compound_id: str | None = None
    dose_um: float | None = Field(None, gt=0)


class ImageFieldsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: list[FieldSpec] = Field(..., min_length=1)


class LincsPlateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profiles: ExistingPath | None = Field(
        None, description="pycytominer well-level profile CSV(.gz); default: the embedded A549 plate")
    compounds: ExistingPath | None = Field(
        None, description="compound table with broad_sample and smiles columns; default: embedded")


class SCMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_compounds: int = Field(16, ge=2, description="real compounds from the embedded LINCS table")
    n_plates: int = Field(8, ge=2, description="plates; batch B = plate index mod 2")
    wells_per_plate: int = Field(48, ge=1, le=384)
    doses_um: list[float] = Field([0.04, 0.12, 0.37, 1.11, 3.33, 10.0], min_length=1)
    ec50_um: float = Field(1.0, gt=0, description="Hill EC50 (uM)")
    hill: float = Field(1.0, gt=0, description="Hill coefficient n")
    effect_sd: float = Field(2.0, ge=0, description="sd of the entries of the true effect vectors tau_k")
    effect_rank: int = Field(2, ge=1, description="number of shared effect programmes w_r")
    batch_sd: float = Field(1.5, ge=0, description="sd of the batch shift beta of B = 1 plates")
    plate_sd: float = Field(0.2, ge=0, description="sd of the plate-to-plate control variation")
    confounding: float = Field(0.9, ge=0, le=1, description="P(compound from the batch's favoured group)")
    noise_sd: float = Field(0.1, ge=0, description="sd of the well-level noise")
    n_features: int | None = Field(None, gt=0, description="first N feature names of the embedded plate")
    seed: int = 0
    split: SplitParams = Field(default_factory=SplitParams)
    include_splits: list[Literal["train", "val", "test"]] = ["train", "val", "test"]


class StructurePairsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: ExistingPath | None = Field(
        None, description="structure index CSV with columns file, uniprot, gene_symbol; default: embedded")
    structures_dir: ExistingPath | None = Field(
        None, description="folder holding the index's files; default: the index's folder "
                          "(embedded index: the embedded structures)")
    compound_targets: ExistingPath | None = Field(
        None, description="Repurposing Hub compound-target edge list (TSV with broad_cpd_id, inchikey, "
                          "smiles, target_gene_symbol); default: embedded subset")
    genes: list[str] | None = Field(None, description="keep only these target genes (symbols)")
    max_compounds_per_structure: int | None = Field(
        None, gt=0, description="at most this many compounds per structure (first in table order)")


class SmilesCorpusParams(BaseModel):
    """``smiles_corpus``: molecules streamed from SMILES tables (a molecule-only pretraining corpus)."""

    model_config = ConfigDict(extra="forbid")

    paths: list[ExistingPath] = Field(
        min_length=1, description="CSV / TSV / SMI / SDF files, optionally gzipped (.gz); read in order, streamed")
    smiles_column: str | None = Field(
        None, description="column holding the SMILES (default: the first column named smiles/SMILES/"
                          "canonical_smiles/..., else the first column); for .smi files the first field")
    id_column: str | None = Field(None, description="column with a molecule id (default: <file>:<row>); for SDF "
                                                    "files an SD property, or _Name for the title line")
    property_columns: list[str] = Field([], description="columns (SDF: SD properties) copied into each record under "
                                                        "their own names, as text (a missing one: None, counted)")
    fraction: float = Field(1.0, gt=0, le=1, description="keep this fraction of molecules, chosen by a seeded "
                                                           "hash of the SMILES (stable across runs and chunk sizes)")
    seed: int = Field(0, ge=0, description="seed of the fraction's hash")
