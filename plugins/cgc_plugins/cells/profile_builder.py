"""Well profile -> compartment/channel cell graph (control state in ``x``, treated state in ``y``).

Node types (see ``docs/cell-graph.md``):

* ``compartment`` — ``x``/``y`` float32 ``[N, 70]`` = 35 value slots (:data:`COMPARTMENT_SLOTS`) + 35
  present flags; ``x_cat`` ``[N, 3]`` compartment (Cells, Cytoplasm, Nuclei, other), cell line and
  time point (:mod:`.context`).
* ``channel`` — ``x``/``y`` float32 ``[N, 114]`` = 57 value slots (:data:`CHANNEL_SLOTS`) + 57 present
  flags; ``x_cat`` ``[N, 4]`` canonical channel (DNA, ER, RNA, AGP, Mito, Tubulin, Actin,
  Brightfield, other), its compartment, cell line and time point.

State space: ``x = control + context`` and ``y = treated + context`` (slot means, each part clipped),
where ``control`` / ``treated`` are robust z-scores against the plate's DMSO wells and ``context`` is
the plate's DMSO profile *before* that normalisation, expressed against the source's DMSO wells
(:class:`CellProfile`). So ``y - x`` is exactly the well's robust-z response, while ``x`` tells one
plate's control state from another's (it is ~0 only for a single-plate source). Without a context
(``CellProfile.context is None``) ``x`` is the control summary alone, as before.

Edge types (both directions): ``(channel, in, compartment)`` / ``(compartment, has, channel)``;
``(compartment, contains, compartment)`` / ``(compartment, inside, compartment)`` for Cells ⊃
Cytoplasm, Cells ⊃ Nuclei; ``(channel, correlates, channel)`` with ``edge_attr`` float32 ``[E, 14]``
= 7 Correlation slots + 7 present flags of the control state, and ``y`` (same shape) of the treated
well. Graph attributes ``dose_um`` float32 ``[1]`` (uM; NaN-free: 0 for a dose-less record) and
``activity`` float32 ``[1]`` (the well's percentile among its plate's DMSO wells, 1 when unknown; see
:class:`CellProfile`).
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

from .context import CELL_LINES, TIME_POINTS, cell_line_index, time_point_index
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
        context: float32 ``[F]`` or ``None``: the plate's control profile in a scale the per-plate
            normalisation does not zero — its DMSO median before normalisation, as a robust z against
            all DMSO wells of the source (0 for a single-plate source); added to both states.
        cell_line: cell line of the well (``None`` = unknown); a categorical feature of every node.
        time_h: hours of treatment (``None`` = unknown); a categorical feature of every node.
        activity: the fraction of the plate's DMSO wells whose response is smaller than this well's
            (RMS of the robust z over features); ``None`` = unknown. A well is *active* (distinguishable
            from DMSO) when ``activity >= 0.95``.
    """

    features: tuple[str, ...]
    treated: np.ndarray
    control: np.ndarray
    dose_um: float = 0.0
    plate: str = ""
    context: np.ndarray | None = None
    cell_line: str | None = None
    time_h: float | None = None
    activity: float | None = None

    def digest(self) -> str:
        """SHA-256 of the content (feature names, vectors, dose, context): the featurization cache key."""
        h = hashlib.sha256("\x1f".join(self.features).encode())
        for a in (self.treated, self.control) + (() if self.context is None else (self.context,)):
            h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        h.update(repr(float(self.dose_um)).encode())
        h.update(repr((self.context is None, self.cell_line, self.time_h, self.activity)).encode())
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
    cell_line = FeatureSpec.categorical("cell_line", len(CELL_LINES) + 1, "cell line of the well (context): "
                                        + ", ".join(CELL_LINES) + ", other/unknown", names=(*CELL_LINES, "other"))
    time = FeatureSpec.categorical("time_point", len(TIME_POINTS) + 1, "hours of treatment (context): "
                                   + ", ".join(TIME_POINTS) + ", other/unknown", names=(*TIME_POINTS, "other"))
    comp = NodeTypeSpec((
        FeatureSpec.continuous("slots", NC, "robust z vs plate DMSO (+ plate context)", "mean of the features of each "
                               "compartment slot: " + ", ".join(COMPARTMENT_SLOTS), names=COMPARTMENT_SLOTS),
        FeatureSpec.continuous("present", NC, "", "1 where the slot has a measured feature, else 0",
                               flags_for="slots"),
        compartments, cell_line, time,
    ), name="compartment", description="cell compartment (Cells, Cytoplasm, Nuclei)", role=CELL_STATE,
        value_name="{compartment}_{slot}")
    chan = NodeTypeSpec((
        FeatureSpec.continuous("slots", NH, "robust z vs plate DMSO (+ plate context)", "mean of the features of each "
                               "channel slot: " + ", ".join(CHANNEL_SLOTS), names=CHANNEL_SLOTS),
        FeatureSpec.continuous("present", NH, "", "1 where the slot has a measured feature, else 0",
                               flags_for="slots"),
        FeatureSpec.categorical("channel", len(CHANNELS) + 1, ", ".join(CHANNELS) + ", other",
                                names=(*CHANNELS, "other")),
        compartments, cell_line, time,
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
    version = "2"   # 2: plate context in both states, cell line / time point categoricals, activity

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
        rows = [value.control, value.treated] + ([] if value.context is None else [value.context])
        wells = np.stack(rows).astype(np.float32)  # [2 or 3, F]
        if wells.shape[1] != len(value.features):
            raise RecordError(f"profile has {wells.shape[1]} values for {len(value.features)} feature names")
        cm, cp = aggregate(wells, lay.comp_matrix, NC)   # [2|3, n_comp, 35]
        hm, hp = aggregate(wells, lay.chan_matrix, NH)   # [2|3, n_chan, 57]
        em, ep = aggregate(wells, lay.edge_matrix, NE)   # [2|3, 2*n_pairs, 7]
        if self.params.clip is not None:
            c = self.params.clip
            cm, hm, em = np.clip(cm, -c, c), np.clip(hm, -c, c), np.clip(em, -c, c)
        if value.context is not None:  # x = control + context, y = treated + context (y - x = response)
            cm, hm, em = (np.concatenate([m[:2] + m[2:3], m[2:3]]) for m in (cm, hm, em))
            cp, hp, ep = (np.concatenate([p[:2], p[2:3]]) for p in (cp, hp, ep))
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
        line, time = cell_line_index(value.cell_line), time_point_index(value.time_h)
        data = HeteroData()
        data["compartment"].x = t(np.ascontiguousarray(comp_x[0]))
        data["compartment"].y = t(np.ascontiguousarray(comp_x[1]))
        data["compartment"].x_cat = t(np.stack([_cat(COMPARTMENTS, lay.compartments), np.full(n_comp, line),
                                                np.full(n_comp, time)], axis=1).astype(np.int64).reshape(n_comp, 3))
        data["compartment"].num_nodes = n_comp
        data["channel"].x = t(np.ascontiguousarray(chan_x[0]))
        data["channel"].y = t(np.ascontiguousarray(chan_x[1]))
        data["channel"].x_cat = t(np.stack([_cat(CHANNELS, [c for _, c in lay.channels]),
                                            _cat(COMPARTMENTS, [c for c, _ in lay.channels]),
                                            np.full(n_chan, line), np.full(n_chan, time)], axis=1)
                                  .astype(np.int64).reshape(n_chan, 4))
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
        act = value.activity
        data.activity = torch.tensor([1.0 if act is None or not np.isfinite(act) else float(act)], dtype=torch.float32)
        return data
