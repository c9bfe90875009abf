"""Well profile -> compartment/channel cell graph (control state in ``x``, treated state in ``y``).

Node types (see ``docs/cell-graph.md``):

* ``compartment`` — ``x``/``y`` float32 ``[N, 70]`` = 35 value slots (:data:`COMPARTMENT_SLOTS`,
  robust z-scores vs the plate's DMSO) + 35 present flags; ``x_cat`` ``[N, 1]`` compartment
  (Cells, Cytoplasm, Nuclei, other).
* ``channel`` — ``x``/``y`` float32 ``[N, 114]`` = 57 value slots (:data:`CHANNEL_SLOTS`) + 57 present
  flags; ``x_cat`` ``[N, 2]`` canonical channel (DNA, ER, RNA, AGP, Mito, Tubulin, Actin,
  Brightfield, other) and its compartment.

Edge types (both directions): ``(channel, in, compartment)`` / ``(compartment, has, channel)``;
``(compartment, contains, compartment)`` / ``(compartment, inside, compartment)`` for Cells ⊃
Cytoplasm, Cells ⊃ Nuclei; ``(channel, correlates, channel)`` with ``edge_attr`` float32 ``[E, 14]``
= 7 Correlation slots + 7 present flags of the control state, and ``y`` (same shape) of the treated
well. Graph attribute ``dose_um`` float32 ``[1]`` (uM; NaN-free: 0 for a dose-less record).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch_geometric.data import HeteroData

from cgc_framework.plugin import EdgeTypeSpec, FeatureSpec, GraphBuilder, GraphSchema, NodeTypeSpec, RecordError
from cgc_framework.plugin.roles import CELL_STATE

from .feature_names import CHANNEL_SLOTS, CHANNELS, COMPARTMENT_SLOTS, COMPARTMENTS, CORRELATION_SLOTS
from .layout import NC, NE, NH, aggregate, layout_for
from .params import ProfileBuilderParams

CONTAINMENT = (("Cells", "Cytoplasm"), ("Cells", "Nuclei"))
"""(outer, inner) compartment pairs: a cell contains its cytoplasm and its nucleus."""


@dataclass(frozen=True)
class CellProfile:
    """The value of a record's ``cell_profile`` field.

    Attributes:
        features: CellProfiler feature names (``F``), shared by every well of a data set (the
            builder caches its layout per tuple).
        treated: float32 ``[F]``, the treated well's normalized features (NaN = missing).
        control: float32 ``[F]``, the plate's control summary (e.g. DMSO median), same space.
        dose_um: dose of the treated well in uM (0 if unknown).
        plate: plate id (for messages).
    """

    features: tuple[str, ...]
    treated: np.ndarray
    control: np.ndarray
    dose_um: float = 0.0
    plate: str = ""

    def digest(self) -> str:
        """SHA-256 of the content (feature names, both vectors, dose): the featurization cache key."""
        h = hashlib.sha256("\x1f".join(self.features).encode())
        for a in (self.treated, self.control):
            h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        h.update(repr(float(self.dose_um)).encode())
        return h.hexdigest()

    def __str__(self) -> str:
        # shown in skip reports and used by cgc_framework.engine.cache (json.dumps(default=str)) as the
        # content key, so it must identify the content: the digest does
        return f"CellProfile(plate={self.plate}, dose={self.dose_um} uM, sha256={self.digest()[:32]})"


def _with_flags(mean: np.ndarray, present: np.ndarray) -> np.ndarray:
    return np.concatenate([mean, present], axis=-1)


def cell_profile_schema() -> GraphSchema:
    """The published schema (identical for every stain set)."""
    compartments = FeatureSpec.categorical("compartment", len(COMPARTMENTS) + 1, ", ".join(COMPARTMENTS) + ", other",
                                           names=(*COMPARTMENTS, "other"))
    comp = NodeTypeSpec((
        FeatureSpec.continuous("slots", NC, "robust z vs plate DMSO", "mean of the features of each "
                               "compartment slot: " + ", ".join(COMPARTMENT_SLOTS), names=COMPARTMENT_SLOTS),
        FeatureSpec.continuous("present", NC, "", "1 where the slot has a measured feature, else 0",
                               flags_for="slots"),
        compartments,
    ), name="compartment", description="cell compartment (Cells, Cytoplasm, Nuclei)", role=CELL_STATE,
        value_name="{compartment}_{slot}")
    chan = NodeTypeSpec((
        FeatureSpec.continuous("slots", NH, "robust z vs plate DMSO", "mean of the features of each "
                               "channel slot: " + ", ".join(CHANNEL_SLOTS), names=CHANNEL_SLOTS),
        FeatureSpec.continuous("present", NH, "", "1 where the slot has a measured feature, else 0",
                               flags_for="slots"),
        FeatureSpec.categorical("channel", len(CHANNELS) + 1, ", ".join(CHANNELS) + ", other",
                                names=(*CHANNELS, "other")),
        compartments,
    ), name="channel", description="stain channel measured in one compartment", role=CELL_STATE,
        value_name="{compartment}_{slot}_{channel}")
    corr = EdgeTypeSpec((
        FeatureSpec.continuous("slots", NE, "robust z vs plate DMSO", ", ".join(CORRELATION_SLOTS),
                               names=CORRELATION_SLOTS),
        FeatureSpec.continuous("present", NE, "", "1 where the slot has a measured feature", flags_for="slots"),
    ), src="channel", rel="correlates", dst="channel",
        description="Correlation features between two channels of one compartment (control state)")
    plain = lambda s, r, d, desc: EdgeTypeSpec((), src=s, rel=r, dst=d, description=desc)  # noqa: E731
    return GraphSchema.of([comp, chan], [
        plain("channel", "in", "compartment", "channel measured in compartment"),
        plain("compartment", "has", "channel", "reverse of (channel, in, compartment)"),
        plain("compartment", "contains", "compartment", "Cells contains Cytoplasm and Nuclei"),
        plain("compartment", "inside", "compartment", "reverse of (compartment, contains, compartment)"),
        corr])


def _cat(index_of: tuple[str, ...], names: list[str]) -> np.ndarray:
    return np.array([index_of.index(n) if n in index_of else len(index_of) for n in names], dtype=np.int64)


class ProfileCellBuilder(GraphBuilder):
    """:class:`CellProfile` -> compartment/channel graph (module docstring has the shapes)."""

    modality = "cell"
    version = "1"

    def __init__(self, params: ProfileBuilderParams | None = None):
        self.params = params or ProfileBuilderParams()

    def schema(self) -> GraphSchema:
        return cell_profile_schema()

    def params_key(self) -> dict[str, Any]:
        return self.params.model_dump()

    def build(self, value: CellProfile) -> HeteroData:
        if not isinstance(value, CellProfile):
            raise RecordError(f"cell_profile must be a CellProfile, got {type(value).__name__}")
        lay = layout_for(value.features)
        wells = np.stack([value.control, value.treated]).astype(np.float32)  # [2, F]
        if wells.shape[1] != len(value.features):
            raise RecordError(f"profile has {wells.shape[1]} values for {len(value.features)} feature names")
        cm, cp = aggregate(wells, lay.comp_matrix, NC)   # [2, n_comp, 35]
        hm, hp = aggregate(wells, lay.chan_matrix, NH)   # [2, n_chan, 57]
        em, ep = aggregate(wells, lay.edge_matrix, NE)   # [2, 2*n_pairs, 7]
        if self.params.clip is not None:
            c = self.params.clip
            cm, hm, em = np.clip(cm, -c, c), np.clip(hm, -c, c), np.clip(em, -c, c)
        present = int(cp[1].sum() + hp[1].sum())
        if present < self.params.min_present_slots:
            raise RecordError(f"treated well has {present} measured slots (< {self.params.min_present_slots}): "
                              "every feature is NaN or unparsed")
        comp_x, chan_x, edge_x = _with_flags(cm, cp), _with_flags(hm, hp), _with_flags(em, ep)
        n_comp, n_chan = len(lay.compartments), len(lay.channels)
        ci = {c: i for i, c in enumerate(lay.compartments)}
        hi = {c: i for i, c in enumerate(lay.channels)}
        chan_of = np.array([hi[c] for c in lay.channels], dtype=np.int64)
        comp_of = np.array([ci.get(c[0], -1) for c in lay.channels], dtype=np.int64)
        keep = comp_of >= 0  # a channel node's compartment always has a node unless only channels parse
        in_ei = np.stack([chan_of[keep], comp_of[keep]])
        cont = np.array([(ci[a], ci[b]) for a, b in CONTAINMENT if a in ci and b in ci],
                        dtype=np.int64).reshape(-1, 2).T
        pair_ei = np.array([(hi[(c, a)], hi[(c, b)]) for c, a, b in lay.pairs], dtype=np.int64).reshape(-1, 2)
        corr_ei = np.empty((2, 2 * len(pair_ei)), dtype=np.int64)
        corr_ei[:, 0::2] = pair_ei.T
        corr_ei[:, 1::2] = pair_ei.T[::-1]
        t = torch.from_numpy
        data = HeteroData()
        data["compartment"].x = t(np.ascontiguousarray(comp_x[0]))
        data["compartment"].y = t(np.ascontiguousarray(comp_x[1]))
        data["compartment"].x_cat = t(_cat(COMPARTMENTS, lay.compartments).reshape(n_comp, 1))
        data["compartment"].num_nodes = n_comp
        data["channel"].x = t(np.ascontiguousarray(chan_x[0]))
        data["channel"].y = t(np.ascontiguousarray(chan_x[1]))
        data["channel"].x_cat = t(np.stack([_cat(CHANNELS, [c for _, c in lay.channels]),
                                            _cat(COMPARTMENTS, [c for c, _ in lay.channels])], axis=1)
                                  .reshape(n_chan, 2))
        data["channel"].num_nodes = n_chan
        data["channel", "in", "compartment"].edge_index = t(in_ei)
        data["compartment", "has", "channel"].edge_index = t(in_ei[::-1].copy())
        data["compartment", "contains", "compartment"].edge_index = t(cont)
        data["compartment", "inside", "compartment"].edge_index = t(cont[::-1].copy())
        corr = data["channel", "correlates", "channel"]
        corr.edge_index = t(corr_ei)
        corr.edge_attr = t(np.ascontiguousarray(edge_x[0]))
        corr.y = t(np.ascontiguousarray(edge_x[1]))
        corr.edge_attr_cat = torch.zeros(corr_ei.shape[1], 0, dtype=torch.long)
        data.dose_um = torch.tensor([value.dose_um], dtype=torch.float32)
        return data
