"""Image-field dataset: one record per field of view, for the ``cell_image`` builder.

Each field lists its channel images (stain name -> file; names are mapped to the canonical channel
vocabulary) and optionally label masks or CellProfiler outline images; the record's
``cell_profile`` is an :class:`~cgc_plugins.cells.image_builder.ImageField`. Compound fields
(``smiles``, ``compound_id``, ``dose_um``) are passed through when given. Paths resolve relative to
``registry.yaml``.
"""

from __future__ import annotations

from typing import Any, Iterator

from cgc_framework.plugin import Dataset, Record, SkipLog
from cgc_plugins.cells.image_builder import ImageField

from .params import FieldSpec as FieldSpec
from .params import ImageFieldsParams


class ImageFieldsDataset(Dataset):
    """Records ``<id>`` with ``cell_profile`` = :class:`ImageField` (+ optional compound fields)."""

    def __init__(self, params: ImageFieldsParams):
        self.p = params

    def records(self, skips: SkipLog) -> Iterator[Record]:
        for f in self.p.fields:
            yield Record(f.id, {"cell_profile": ImageField(dict(f.channels), f.cells_mask, f.nuclei_mask,
                                                           f.cells_outlines, f.nuclei_outlines),
                                "smiles": f.smiles, "compound_id": f.compound_id, "dose_um": f.dose_um})

    def describe(self) -> dict[str, Any]:
        return {"fields": ", ".join(f"{f.id} ({len(f.channels)} channels, "
                                    f"{'masks' if f.cells_mask else 'outlines' if f.cells_outlines else 'Otsu/watershed'})"
                                    for f in self.p.fields)}
