"""Validation of arrays at the public boundary (never with ``assert``)."""

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
