"""Array helpers: validation at the public boundary (never with ``assert``), and the robust scoring that
judges a measure against its collection (image quality, outliers)."""

from __future__ import annotations

import numpy as np

from .exceptions import ConfigError


def as_vectors(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` as a 2-D float32 array of finite values, or a :class:`ConfigError` saying what is wrong."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ConfigError(f"vectors must be a 2-D array (n, dim), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ConfigError("vectors contain NaN or infinite values")
    return v


def robust_z(measure: np.ndarray, floor: float, centre: float | None = None) -> np.ndarray:
    """How far above ``centre`` (default: the median) each value lies, in robust standard deviations: 1.4826
    times the median absolute deviation from the median, at least ``floor`` (identical values have none)."""
    median = float(np.median(measure))
    spread = max(1.4826 * float(np.median(np.abs(measure - median))), floor)
    return (measure - (median if centre is None else centre)) / spread


def flag_score(z: np.ndarray, z_flag: float) -> np.ndarray:
    """A score in [0, 1] from ``robust_z``: 0 at the centre or below, 0.5 at the flag ``z_flag``, 1 at twice it."""
    return np.clip(z / (2 * z_flag), 0, 1).astype(np.float32)
