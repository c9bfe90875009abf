"""Cell modality plugin: the ``cell`` modality and its graph builders.

``cellprofiler_profile``: a well's CellProfiler profile (plus its plate's control summary) ->
compartment/channel graph (:mod:`.profile_builder`). ``cell_image``: channel images (+ label masks or
outline images) of one field -> segmented-object graph (:mod:`.image_builder`).
"""

from cgc_framework.plugin import Modality, hookimpl

from .image_builder import ImageBuilderParams, ImageCellBuilder
from .profile_builder import ProfileBuilderParams, ProfileCellBuilder


def _cell_modality(params: None) -> Modality:
    return Modality(record_field="cell_profile",
                    description="cell state of a treated well with its plate's control state")


@hookimpl
def register_modalities(register):
    register("cell", _cell_modality, description="cell state (Cell Painting profile or image field) of "
                                                 "a treated well with its plate's control state")


@hookimpl
def register_graph_builders(register):
    register("cellprofiler_profile", ProfileCellBuilder, params=ProfileBuilderParams,
             description="CellProfiler well profile -> compartment/channel graph; x = plate DMSO "
                         "control summary, y = treated well (fixed slots + present flags)")
    register("cell_image", ImageCellBuilder, params=ImageBuilderParams,
             description="channel images + label masks/outlines (or Otsu/watershed on DNA) -> "
                         "segmented cell/nucleus object graph (regionprops per channel)")
