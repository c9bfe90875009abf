"""The experimental context of a cell state: cell line and time point, as categorical vocabularies.

Cell-state nodes of the profile graph carry them as categorical features (``cell_line``,
``time_point``), so an encoder can tell one cell line or time point from another even where the
control profile itself is uninformative (a single plate, or profiles already normalised per plate
by their source). Spellings differ between sources (``MCF-7``, ``MCF7``, ``mcf7``; ``A549-Cas9``);
:func:`canonical_cell_line` maps them to :data:`CELL_LINES` (+ other), :func:`time_point` maps
hours to :data:`TIME_POINTS` (+ other/unknown).
"""

from __future__ import annotations

import math
import re

CELL_LINES: tuple[str, ...] = ("A549", "U2OS", "MCF7", "HepG2", "HeLa", "PBMC")
"""Cell-line vocabulary (categorical ``cell_line``; index ``len`` = other / unknown)."""

TIME_POINTS: tuple[str, ...] = ("6h", "24h", "48h", "72h")
"""Time-point vocabulary (categorical ``time_point``; index ``len`` = other / unknown)."""

_ALIASES = {"mcf7": "MCF7", "a549": "A549", "u2os": "U2OS", "hepg2": "HepG2", "hela": "HeLa", "pbmc": "PBMC"}


def canonical_cell_line(name: object) -> str | None:
    """``"MCF-7"`` -> ``"MCF7"``, ``"A549-Cas9"`` -> ``"A549"`` (an engineered derivative is its parent
    line); ``None`` for a missing name; an unknown line is returned as given (it maps to "other")."""
    if name is None or (isinstance(name, float) and math.isnan(name)):
        return None
    text = str(name).strip()
    if not text:
        return None
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    for alias, canon in _ALIASES.items():
        if key == alias or key.startswith(alias):
            return canon
    return text


def cell_line_index(name: object) -> int:
    """Index of a cell line in :data:`CELL_LINES` (``len(CELL_LINES)`` = other/unknown)."""
    canon = canonical_cell_line(name)
    return CELL_LINES.index(canon) if canon in CELL_LINES else len(CELL_LINES)


def time_point(hours: object) -> str | None:
    """``24`` / ``"24h"`` / ``"24 h"`` -> ``"24h"``; ``None`` when unknown."""
    if hours is None:
        return None
    if isinstance(hours, str):
        m = re.match(r"\s*([0-9.]+)\s*h?", hours.lower())
        if not m:
            return None
        hours = m.group(1)
    try:
        h = float(hours)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(h) or h <= 0:
        return None
    return f"{h:g}h"


def time_point_index(hours: object) -> int:
    """Index of a time point in :data:`TIME_POINTS` (``len(TIME_POINTS)`` = other/unknown)."""
    t = time_point(hours)
    return TIME_POINTS.index(t) if t in TIME_POINTS else len(TIME_POINTS)


__all__ = ["CELL_LINES", "TIME_POINTS", "canonical_cell_line", "cell_line_index", "time_point",
           "time_point_index"]
