"""The fixed cell-graph layout of one profile feature set: which nodes exist and which feature feeds
which slot, as sparse aggregation matrices so that any number of wells is mapped in one product.

A profile with features ``F`` (a tuple of CellProfiler names) has

* one ``compartment`` node per compartment with at least one slot feature (Cells, Cytoplasm, Nuclei);
* one ``channel`` node per (compartment, canonical channel) with at least one slot feature —
  a stain the profile does not measure has no node (BBBC021: DNA, Tubulin, Actin);
* one channel-pair per (compartment, {a, b}) with a Correlation feature (both edge directions).

A slot's value is the mean of the (normalized) features assigned to it that are finite in that
well; its ``present`` flag is 1 when at least one was. Slots without any feature are 0 with flag 0 —
values are never invented.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from .feature_names import (
    CHANNEL_SLOTS,
    CHANNELS,
    COMPARTMENT_SLOTS,
    COMPARTMENTS,
    CORRELATION_SLOTS,
    SYMMETRIC_CORRELATION,
    ParsedFeature,
    parse_feature,
)

NC, NH, NE = len(COMPARTMENT_SLOTS), len(CHANNEL_SLOTS), len(CORRELATION_SLOTS)
_SYM = {CORRELATION_SLOTS.index(f"Correlation_{m}") for m in SYMMETRIC_CORRELATION}


@dataclass
class ProfileLayout:
    """Nodes, edges and slot matrices of one feature-name tuple.

    Attributes:
        features: the feature names, in profile column order (``F``).
        compartments: compartment names of the ``compartment`` nodes, in node order.
        channels: ``(compartment, channel)`` of the ``channel`` nodes, in node order.
        pairs: ``(compartment, channel_a, channel_b)`` of correlated channel pairs; pair ``k`` gives
            edges ``2k`` (a->b) and ``2k+1`` (b->a).
        comp_matrix: ``[F, n_comp * 35]`` 0/1, feature -> compartment slot.
        chan_matrix: ``[F, n_chan * 57]`` 0/1, feature -> channel slot.
        edge_matrix: ``[F, 2 * n_pairs * 7]`` 0/1, feature -> edge slot.
        parsed: every feature's :class:`ParsedFeature`.
    """

    features: tuple[str, ...]
    compartments: list[str] = field(default_factory=list)
    channels: list[tuple[str, str]] = field(default_factory=list)
    pairs: list[tuple[str, str, str]] = field(default_factory=list)
    comp_matrix: sp.csr_matrix | None = None
    chan_matrix: sp.csr_matrix | None = None
    edge_matrix: sp.csr_matrix | None = None
    parsed: list[ParsedFeature] = field(default_factory=list)

    def report(self) -> dict[str, object]:
        """Counts of slot / ignored / unparsed names, with the unparsed names and reasons."""
        status = Counter(p.status for p in self.parsed)
        unknown_ch = sorted({c for p in self.parsed if p.status == "slot"
                             for c in (p.channel, p.channel2) if c and c not in CHANNELS})
        return {"features": len(self.features), "mapped_to_slots": status["slot"],
                "ignored_bookkeeping": status["ignored"], "unparsed": status["unparsed"],
                "unparsed_names": [f"{p.name} ({p.reason})" for p in self.parsed if p.status == "unparsed"],
                "channels_outside_vocabulary": unknown_ch,
                "nodes": {"compartment": len(self.compartments), "channel": len(self.channels)},
                "correlated_channel_pairs": len(self.pairs)}


def _order_comp(c: str) -> int:
    return COMPARTMENTS.index(c) if c in COMPARTMENTS else len(COMPARTMENTS)


def _order_chan(c: str) -> tuple[int, str]:
    return (CHANNELS.index(c) if c in CHANNELS else len(CHANNELS), c)


@lru_cache(maxsize=64)
def layout_for(features: tuple[str, ...]) -> ProfileLayout:
    """The :class:`ProfileLayout` of a feature tuple (cached: a data set has a handful of them)."""
    parsed = [parse_feature(f) for f in features]
    slot = [p for p in parsed if p.status == "slot"]
    comps = sorted({p.compartment for p in slot}, key=_order_comp)
    chans = sorted({(p.compartment, p.channel) for p in slot if p.kind == "channel"},
                   key=lambda t: (_order_comp(t[0]), _order_chan(t[1])))
    pairs = sorted({(p.compartment, *sorted((p.channel, p.channel2), key=_order_chan))
                    for p in slot if p.kind == "correlation"},
                   key=lambda t: (_order_comp(t[0]), _order_chan(t[1]), _order_chan(t[2])))
    ci = {c: i for i, c in enumerate(comps)}
    hi = {c: i for i, c in enumerate(chans)}
    pi = {p: i for i, p in enumerate(pairs)}
    rows = {"c": [], "h": [], "e": []}
    cols = {"c": [], "h": [], "e": []}
    for f, p in enumerate(parsed):
        if p.status != "slot":
            continue
        if p.kind == "compartment":
            rows["c"].append(f)
            cols["c"].append(ci[p.compartment] * NC + p.slot)
        elif p.kind == "channel":
            rows["h"].append(f)
            cols["h"].append(hi[(p.compartment, p.channel)] * NH + p.slot)
        else:
            a, b = sorted((p.channel, p.channel2), key=_order_chan)
            k = pi[(p.compartment, a, b)]
            forward = (p.channel, p.channel2) == (a, b)
            dirs = (0, 1) if p.slot in _SYM else ((0,) if forward else (1,))
            for d in dirs:
                rows["e"].append(f)
                cols["e"].append((2 * k + d) * NE + p.slot)
    n = len(features)

    def mat(key: str, width: int) -> sp.csr_matrix:
        data = np.ones(len(rows[key]), dtype=np.float32)
        return sp.csr_matrix((data, (rows[key], cols[key])), shape=(n, width))

    return ProfileLayout(features, comps, chans, pairs, mat("c", len(comps) * NC), mat("h", len(chans) * NH),
                         mat("e", 2 * len(pairs) * NE), parsed)


def aggregate(values: np.ndarray, matrix: sp.csr_matrix, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-slot mean of the finite features of each well.

    Args:
        values: float ``[W, F]`` (NaN/inf = missing in that well).
        matrix: ``[F, n * slots]`` 0/1 assignment (from :class:`ProfileLayout`).
        slots: slots per node/edge.
    Returns:
        ``(mean, present)``, both float32 ``[W, n, slots]``; missing slots are 0 with present 0.
    """
    finite = np.isfinite(values)
    v = np.where(finite, values, 0.0).astype(np.float32)
    sums = np.asarray(matrix.T.dot(v.T).T, dtype=np.float32)           # [W, n*slots]
    counts = np.asarray(matrix.T.dot(finite.T.astype(np.float32)).T, dtype=np.float32)
    mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    w = values.shape[0]
    return mean.reshape(w, -1, slots), (counts > 0).astype(np.float32).reshape(w, -1, slots)
