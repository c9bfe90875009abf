"""Dataset plugin: sources of experiment records, including the embedded default data."""

from cgc_framework import hookimpl

from .lincs import LincsPlateDataset, LincsPlateParams


@hookimpl
def register_datasets(register):
    register("lincs_cellpainting", LincsPlateDataset, params=LincsPlateParams,
             description="LINCS Cell Painting plate(s): treated wells + compound SMILES "
                         "(default: the embedded A549 plate SQ00015054)")
