"""Cell modality plugin: the ``cell`` modality and its graph builders.

``cellprofiler_profile``: a well's CellProfiler profile (plus its plate's control summary) ->
compartment/channel graph (:mod:`.profile_builder`). ``cell_image``: channel images (+ label masks or
outline images) of one field -> segmented-object graph (:mod:`.image_builder`).

Registered by lazy ``"module:Name"`` references, so discovery does not import torch or SciPy.
"""

from cgc_framework.plugin import Modality, hookimpl


def _cell_modality(params: None) -> Modality:
    return Modality(record_field="cell_profile",
                    description="cell state of a treated well with its plate's control state")


@hookimpl
def register_modalities(register):
    register("cell", _cell_modality, description="cell state (Cell Painting profile or image field) of "
                                                 "a treated well with its plate's control state")


@hookimpl
def register_graph_builders(register):
    register("cellprofiler_profile", "cgc_plugins.cells.profile_builder:ProfileCellBuilder",
             params="cgc_plugins.cells.params:ProfileBuilderParams",
             description="CellProfiler well profile -> compartment/channel graph; x = plate DMSO "
                         "control summary, y = treated well (fixed slots + present flags)")
    register("cell_image", "cgc_plugins.cells.image_builder:ImageCellBuilder",
             params="cgc_plugins.cells.params:ImageBuilderParams",
             description="channel images + label masks/outlines (or Otsu/watershed on DNA) -> "
                         "segmented cell/nucleus object graph (regionprops per channel)")
