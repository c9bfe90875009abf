"""Image field -> segmented-object cell graph (scikit-image).

Input: one field of view, a :class:`ImageField` — channel images (any stain names, mapped to the
canonical :data:`CHANNELS`) plus, optionally, label masks or CellProfiler outline images of cells
and nuclei.

Segmentation, in order of preference:

1. label masks (``cells_mask`` / ``nuclei_mask``: integer images, 0 = background);
2. outline images (``cells_outlines`` / ``nuclei_outlines``: 1-px object boundaries, binary or RGB) —
   objects are the connected components of the non-outline pixels, minus the largest one
   (the background) and components smaller than ``min_area_px``;
3. classical (documented default when neither is given): nuclei = Otsu threshold of the Gaussian-
   smoothed (sigma 2 px) DNA channel, holes filled, split by a watershed on the distance transform
   seeded at its local maxima (``min_distance = nucleus_min_distance_px``); cells = watershed of the
   inverted, smoothed sum of the non-DNA channels seeded by the nuclei and limited to pixels above
   that sum's Otsu threshold (or the nuclei dilated by ``cell_expand_px`` when there is no other
   channel).

Nodes ``cell_object`` and ``nucleus_object``, ``x`` float32 ``[N, 31]`` (``x_cat`` ``[N, 0]``):
7 shape features (log1p area px, log1p perimeter px, eccentricity, solidity, extent, log1p major and
minor axis length px), then per canonical channel (8) the mean and the standard deviation of the
intensity inside the object (channel scaled by its field-wide 99.9th percentile, so ~[0, 1]), then 8
present flags (1 when the field has that channel). Edges (both directions):
``(cell_object, adjacent, cell_object)`` (objects within ``adjacency_px`` of each other; ``edge_attr``
``[E, 1]`` centroid distance / 100 px), ``(nucleus_object, in, cell_object)`` /
``(cell_object, has, nucleus_object)`` (the cell covering most of the nucleus's pixels).

An image graph is one state (no ``y``): it serves masked-feature pretraining, not the causal task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import HeteroData

from cgc_framework.plugin import EdgeTypeSpec, FeatureSpec, GraphBuilder, GraphSchema, NodeTypeSpec, RecordError
from cgc_framework.plugin.roles import CELL_STATE

from .feature_names import CHANNELS, canonical_channel
from .params import ImageBuilderParams

SHAPE = ("log1p_area", "log1p_perimeter", "eccentricity", "solidity", "extent", "log1p_major_axis",
         "log1p_minor_axis")
X_DIM = len(SHAPE) + 3 * len(CHANNELS)


@dataclass(frozen=True)
class ImageField:
    """One field of view (the ``cell_profile`` value for the image builder).

    Attributes:
        channels: stain/image name -> image path (2-D grayscale; names mapped by ``canonical_channel``).
        cells_mask, nuclei_mask: label images (0 = background).
        cells_outlines, nuclei_outlines: CellProfiler outline images (boundary pixels non-zero).
    """

    channels: dict[str, Path]
    cells_mask: Path | None = None
    nuclei_mask: Path | None = None
    cells_outlines: Path | None = None
    nuclei_outlines: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _read(path: Path) -> np.ndarray:
    """Image as a numpy array: tifffile/scikit-image first, Pillow for LZW-compressed TIFFs when the
    optional ``imagecodecs`` package is absent (Pillow decodes LZW itself)."""
    from skimage import io
    try:
        return io.imread(str(path))
    except Exception as first:
        try:
            from PIL import Image
            with Image.open(path) as im:
                return np.asarray(im)
        except Exception:
            raise RecordError(f"cannot read image {Path(path).name}: {first}") from None


def _gray(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3:
        img = img.max(axis=-1) if img.shape[-1] in (3, 4) else img.max(axis=0)
    return img.astype(np.float32)


def labels_from_outlines(outline: np.ndarray, min_area: int) -> np.ndarray:
    """Label image from a boundary image: components of the non-boundary pixels (4-connected),
    minus the largest (background) and those under ``min_area`` pixels; int32 ``[H, W]``."""
    from skimage.measure import label
    lab = label(_gray(outline) == 0, connectivity=1)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    drop = sizes < min_area
    drop[np.argmax(sizes)] = True
    drop[0] = True
    lut = np.where(drop, 0, np.cumsum(~drop)).astype(np.int32)
    return lut[lab]


def classical_segmentation(dna: np.ndarray, other: np.ndarray | None, p: ImageBuilderParams
                           ) -> tuple[np.ndarray, np.ndarray]:
    """``(cells, nuclei)`` label images by Otsu + watershed (see the module docstring)."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import expand_labels, watershed

    d = gaussian(dna, sigma=2, preserve_range=True)
    fg = ndi.binary_fill_holes(d > threshold_otsu(d))
    comp, _ = ndi.label(fg)
    fg = (np.bincount(comp.ravel()) >= p.min_area_px)[comp] & fg  # drop specks under min_area_px
    dist = ndi.distance_transform_edt(fg)
    peaks = peak_local_max(dist, min_distance=p.nucleus_min_distance_px, labels=ndi.label(fg)[0],
                           exclude_border=False)
    markers = np.zeros(dna.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    nuclei = watershed(-dist, markers, mask=fg).astype(np.int32)
    if other is None:
        cells = expand_labels(nuclei, p.cell_expand_px)
    else:
        o = gaussian(other, sigma=2, preserve_range=True)
        cmask = (o > threshold_otsu(o)) | (nuclei > 0)
        cells = watershed(-o, nuclei, mask=cmask).astype(np.int32)
    return cells, nuclei


def _props(lab: np.ndarray, chans: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(x [N, 31] float32, centroids [N, 2])`` for labels 1..N of ``lab`` (relabelled dense)."""
    from skimage.measure import regionprops_table
    t = regionprops_table(lab, properties=("label", "area", "perimeter", "eccentricity", "solidity", "extent",
                                           "axis_major_length", "axis_minor_length", "centroid"))
    n = len(t["label"])
    x = np.zeros((n, X_DIM), np.float32)
    x[:, 0] = np.log1p(t["area"])
    x[:, 1] = np.log1p(t["perimeter"])
    x[:, 2], x[:, 3], x[:, 4] = t["eccentricity"], t["solidity"], t["extent"]
    x[:, 5], x[:, 6] = np.log1p(t["axis_major_length"]), np.log1p(t["axis_minor_length"])
    idx = lab.ravel()
    counts = np.bincount(idx, minlength=lab.max() + 1).astype(np.float64)
    labels = np.asarray(t["label"])
    for name, img in chans.items():
        k = CHANNELS.index(name)
        v = img.ravel().astype(np.float64)
        s1 = np.bincount(idx, weights=v, minlength=len(counts))
        s2 = np.bincount(idx, weights=v * v, minlength=len(counts))
        mean = s1[labels] / counts[labels]
        x[:, len(SHAPE) + 2 * k] = mean
        x[:, len(SHAPE) + 2 * k + 1] = np.sqrt(np.maximum(s2[labels] / counts[labels] - mean**2, 0))
        x[:, len(SHAPE) + 2 * len(CHANNELS) + k] = 1.0
    cent = np.stack([t["centroid-0"], t["centroid-1"]], axis=1)
    return x, cent


def _dense(lab: np.ndarray) -> np.ndarray:
    u = np.unique(lab)
    u = u[u > 0]
    lut = np.zeros(int(lab.max()) + 1, np.int32)
    lut[u] = np.arange(1, len(u) + 1)
    return lut[lab]


def adjacency(lab: np.ndarray, distance: int) -> np.ndarray:
    """Pairs ``[2, E]`` (0-based, both directions, unique) of labels within ``distance`` px."""
    from skimage.segmentation import expand_labels
    e = expand_labels(lab, distance)
    pairs = []
    for a, b in ((e[:, :-1], e[:, 1:]), (e[:-1, :], e[1:, :])):
        m = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([a[m], b[m]]))
    p = np.concatenate(pairs, axis=1)
    p = np.concatenate([p, p[::-1]], axis=1)
    p = np.unique(p, axis=1) if p.size else p.reshape(2, 0)
    return (p - 1).astype(np.int64)


def containment(nuclei: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """``[2, K]`` (nucleus index, cell index), 0-based: the cell covering most of each nucleus's
    pixels (nuclei outside every cell are left out)."""
    m = nuclei > 0
    nn, cc = nuclei[m].astype(np.int64), cells[m].astype(np.int64)
    keep = cc > 0
    if not keep.any():
        return np.zeros((2, 0), np.int64)
    pair = nn[keep] * (cc.max() + 1) + cc[keep]
    u, cnt = np.unique(pair, return_counts=True)
    n_of, c_of = u // (cc.max() + 1), u % (cc.max() + 1)
    order = np.lexsort((-cnt, n_of))
    first = np.ones(len(order), bool)
    first[1:] = n_of[order][1:] != n_of[order][:-1]
    sel = order[first]
    return np.stack([n_of[sel] - 1, c_of[sel] - 1]).astype(np.int64)


def image_schema() -> GraphSchema:
    feats = (FeatureSpec.continuous("shape", len(SHAPE), "", ", ".join(SHAPE) + " (lengths/areas in px)"),
             FeatureSpec.continuous("intensity", 2 * len(CHANNELS), "fraction of field p99.9",
                                    "mean, std per channel: " + ", ".join(CHANNELS)),
             FeatureSpec.continuous("present", len(CHANNELS), "", "1 where the field has the channel"))
    plain = lambda s, r, d, desc, f=(): EdgeTypeSpec(f, src=s, rel=r, dst=d, description=desc)  # noqa: E731
    dist = (FeatureSpec.continuous("centroid_distance", 1, "100 px", "centroid distance / 100 px"),)
    return GraphSchema.of(
        [NodeTypeSpec(feats, name="cell_object", description="segmented cell", role=CELL_STATE),
         NodeTypeSpec(feats, name="nucleus_object", description="segmented nucleus", role=CELL_STATE)],
        [plain("cell_object", "adjacent", "cell_object", "cells within adjacency_px of each other", dist),
         plain("nucleus_object", "in", "cell_object", "nucleus inside cell"),
         plain("cell_object", "has", "nucleus_object", "reverse of (nucleus_object, in, cell_object)")])


class ImageCellBuilder(GraphBuilder):
    """:class:`ImageField` -> ``cell_object`` / ``nucleus_object`` graph (module docstring)."""

    modality = "cell"
    version = "1"

    def __init__(self, params: ImageBuilderParams | None = None):
        self.params = params or ImageBuilderParams()

    def schema(self) -> GraphSchema:
        return image_schema()

    def params_key(self) -> dict[str, Any]:
        return self.params.model_dump()

    def cache_inputs(self, value: ImageField) -> list[Path]:
        """Files whose bytes key the featurization cache (channels, masks, outlines)."""
        files = [Path(p) for _, p in sorted(value.channels.items())]
        return files + [Path(p) for p in (value.cells_mask, value.nuclei_mask, value.cells_outlines,
                                          value.nuclei_outlines) if p is not None]

    def segment(self, f: ImageField, chans: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, str]:
        p = self.params
        if f.cells_mask is not None and f.nuclei_mask is not None:
            return _dense(_gray(_read(f.cells_mask)).astype(np.int32)), \
                _dense(_gray(_read(f.nuclei_mask)).astype(np.int32)), "masks"
        if f.cells_outlines is not None and f.nuclei_outlines is not None:
            return (labels_from_outlines(_read(f.cells_outlines), p.min_area_px),
                    labels_from_outlines(_read(f.nuclei_outlines), p.min_area_px), "outlines")
        if "DNA" not in chans:
            raise RecordError("no masks/outlines and no DNA channel to segment nuclei from")
        others = [v for k, v in chans.items() if k not in ("DNA", "Brightfield")]
        cells, nuclei = classical_segmentation(chans["DNA"], np.sum(others, axis=0) if others else None, p)
        return cells, nuclei, "otsu_watershed"

    def build(self, value: ImageField) -> HeteroData:
        if not isinstance(value, ImageField):
            raise RecordError(f"the image builder needs an ImageField, got {type(value).__name__}")
        chans: dict[str, np.ndarray] = {}
        for name, path in value.channels.items():
            c = canonical_channel(name)
            if c not in CHANNELS:
                raise RecordError(f"channel '{name}' is not in the canonical vocabulary {CHANNELS}")
            img = _gray(_read(path))
            chans[c] = img / max(float(np.percentile(img, 99.9)), 1e-6)
        cells, nuclei, how = self.segment(value, chans)
        shape = next(iter(chans.values())).shape if chans else cells.shape
        if cells.shape != shape or nuclei.shape != shape:
            raise RecordError(f"segmentation {cells.shape} and channel images {shape} differ in size")
        cx, ccent = _props(cells, chans)
        nx, _ = _props(nuclei, chans)
        if len(cx) == 0:
            raise RecordError(f"segmentation ({how}) found no cells")
        adj = adjacency(cells, self.params.adjacency_px)
        dist = np.linalg.norm(ccent[adj[0]] - ccent[adj[1]], axis=1).astype(np.float32).reshape(-1, 1) / 100
        cont = containment(nuclei, cells)
        t = torch.from_numpy
        data = HeteroData()
        data["cell_object"].x, data["cell_object"].num_nodes = t(cx), len(cx)
        data["nucleus_object"].x, data["nucleus_object"].num_nodes = t(nx), len(nx)
        data["cell_object", "adjacent", "cell_object"].edge_index = t(adj)
        data["cell_object", "adjacent", "cell_object"].edge_attr = t(dist)
        data["nucleus_object", "in", "cell_object"].edge_index = t(cont)
        data["cell_object", "has", "nucleus_object"].edge_index = t(cont[::-1].copy())
        return data
