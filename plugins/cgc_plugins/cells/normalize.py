"""Per-plate normalization of well profiles against the plate's DMSO (negative-control) wells, and
the NaN/inf quality report.

Robust z-score, as pycytominer's ``normalize(method="mad_robustize", samples=<controls>)``::

    z = (x - median_controls) / (1.4826 * MAD_controls + eps)

computed per plate and per feature over the plate's control wells only (NaN ignored). pycytominer
itself is not a dependency: it pulls SQLAlchemy, clevercsv and fire and works on one DataFrame at
a time, while this module is a vectorized numpy function per plate that also reports what it had to
drop. Features whose control MAD is 0 on a plate (constant in DMSO) would divide by ``eps`` and
explode; they are set to NaN on that plate and counted (``zero_mad``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAD_TO_SD = 1.4826
EPS = 1e-18
MIN_MAD = 1e-8


def robust_mad_normalize(values: np.ndarray, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalize one plate.

    Args:
        values: float ``[W, F]``, the plate's wells (NaN = missing).
        controls: bool ``[W]``, the plate's negative-control wells (at least one).
    Returns:
        ``(z, zero_mad)``: float32 ``[W, F]`` robust z-scores (NaN where the input was NaN/inf or
        the feature's control MAD is 0) and bool ``[F]`` features with zero control MAD.
    """
    v = np.where(np.isfinite(values), values, np.nan).astype(np.float64)
    ref = v[controls]
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, as intended
            med = np.nanmedian(ref, axis=0)
            mad = MAD_TO_SD * np.nanmedian(np.abs(ref - med), axis=0)
        zero = ~(mad > MIN_MAD)
        z = (v - med) / (mad + EPS)
    z[:, zero] = np.nan
    return z.astype(np.float32), zero


@dataclass
class QualityReport:
    """NaN/inf and normalization counts over a whole data set (for ``Dataset.describe``)."""

    wells: int = 0
    plates: int = 0
    features: int = 0
    nan_threshold: float = 0.0
    nan_per_feature: dict[str, int] = field(default_factory=dict)
    wells_with_nan: int = 0
    max_nan_per_well: int = 0
    dropped_features: dict[str, str] = field(default_factory=dict)
    zero_mad: dict[str, int] = field(default_factory=dict)
    plates_without_controls: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        nz = {k: v for k, v in sorted(self.nan_per_feature.items(), key=lambda kv: -kv[1]) if v}
        return {"wells": self.wells, "plates": self.plates, "features_read": self.features,
                "features_with_nan_or_inf": len(nz),
                "nan_or_inf_values_per_feature (top 10)": dict(list(nz.items())[:10]),
                "wells_with_nan_or_inf": self.wells_with_nan, "max_nan_features_in_one_well": self.max_nan_per_well,
                f"features_dropped (NaN fraction > {self.nan_threshold})": self.dropped_features,
                "features_with_zero_DMSO_MAD (plates)": self.zero_mad,
                "plates_without_DMSO_controls": self.plates_without_controls}


def nan_screen(values: np.ndarray, names: list[str], threshold: float) -> tuple[np.ndarray, dict[str, str], np.ndarray]:
    """Features whose fraction of non-finite wells exceeds ``threshold``.

    Args:
        values: float ``[W, F]``. names: the ``F`` feature names. threshold: fraction in [0, 1].
    Returns:
        ``(keep [F] bool, dropped {name: reason}, nan_count [F] int)``.
    """
    bad = ~np.isfinite(values)
    count = bad.sum(axis=0)
    frac = count / max(values.shape[0], 1)
    keep = frac <= threshold
    dropped = {n: f"{int(c)}/{values.shape[0]} wells NaN/inf" for n, c, k in zip(names, count, keep) if not k}
    return keep, dropped, count
