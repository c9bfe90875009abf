"""Dataset plugin: sources of experiment records, including the embedded default data.

Registered by lazy ``"module:Name"`` references, so discovery does not import pandas or torch."""

from cgc_framework.plugin import hookimpl


@hookimpl
def register_datasets(register):
    register("scm_cellpainting", "cgc_plugins.datasets.scm:SCMCellPainting",
             params="cgc_plugins.datasets.params:SCMParams",
             description="seeded structural causal model of Cell Painting experiments with a plate/batch "
                         "confounder and analytic do() effects (real compounds and feature names)")
    register("lincs_cellpainting", "cgc_plugins.datasets.lincs:LincsPlateDataset",
             params="cgc_plugins.datasets.params:LincsPlateParams",
             description="LINCS Cell Painting plate(s): treated wells + compound SMILES "
                         "(default: the embedded A549 plate SQ00015054)")
    register("cellpainting_experiments", "cgc_plugins.datasets.experiment:CellPaintingExperiments",
             params="cgc_plugins.datasets.params:ExperimentParams",
             description="Cell Painting treated wells as experiment records: compound, dose, targets and "
                         "the well's profile with its plate's DMSO control state (per-plate robust z); "
                         "LINCS / cell-injury / BBBC021 / CPJUMP1 column presets; on-disk cache")
    register("pooled_cellpainting", "cgc_plugins.datasets.experiment:PooledCellPainting",
             params="cgc_plugins.datasets.params:PooledParams",
             description="several Cell Painting sources (LINCS, Dahlin U2OS, BBBC021, ...) as one experiment "
                         "dataset: per-plate DMSO normalisation, plate context, cell line / time point, one "
                         "split over all sources (InChIKey14 groups, K folds)")
    register("cellpainting_image_fields", "cgc_plugins.datasets.image_fields:ImageFieldsDataset",
             params="cgc_plugins.datasets.params:ImageFieldsParams",
             description="image fields of view (channel images + optional masks/outlines) as records "
                         "for the cell_image builder")
    register("structure_pairs", "cgc_plugins.datasets.structures:StructurePairsDataset",
             params="cgc_plugins.datasets.params:StructurePairsParams",
             description="compound x target-structure pairs (structure index + Repurposing Hub): smiles + "
                         "structure_path records for rdkit_molecule + biopython_protein")
    register("smiles_corpus", "cgc_plugins.datasets.smiles_corpus:SmilesCorpus",
             params="cgc_plugins.datasets.params:SmilesCorpusParams",
             description="molecule-only corpus: SMILES streamed from CSV/TSV/SMI or SDF files (gzip or not), "
                         "a seeded hash-chosen fraction; for molecule pretraining stages (e.g. MOSES/ZINC)")
