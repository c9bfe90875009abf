"""Params of the cell plugin's graph builders; light imports only, so validating a config does not
import torch or scikit-image."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ImageBuilderParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_area_px: int = Field(30, ge=1, description="objects smaller than this (pixels) are dropped")
    adjacency_px: int = Field(3, ge=1, description="objects within this many pixels are adjacent")
    nucleus_min_distance_px: int = Field(10, ge=1, description="watershed seed spacing for classical nuclei")
    cell_expand_px: int = Field(15, ge=1, description="cell radius beyond the nucleus when no cytoplasm channel")


class ProfileBuilderParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clip: float | None = Field(
        20.0, gt=0, description="clip slot values to [-clip, clip] robust z units (null = no clip); "
                                "a few features have DMSO MADs near 0 and give |z| in the thousands")
    min_present_slots: int = Field(
        1, ge=0, description="reject a well (RecordError) with fewer present slots than this")
