"""Vectors brought by the user: read from a ``.npy`` file (and its ``.ids.json``) or a FiftyOne field, and
checked before anything is written.

Pure NumPy: every problem is a one-line :class:`ConfigError` naming it (wrong shape, NaN, a zero row,
a row count that differs from the ids, ids the dataset does not have, repeated ids).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .exceptions import ConfigError


def read_vectors(path: str | Path) -> np.ndarray:
    """The array in a ``.npy`` file (memory-mapped: a million rows are not read twice)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"vectors file {p} does not exist")
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise ConfigError(f"{p} is not a .npy array file: {e}") from e


def read_ids(path: str | Path) -> list[str]:
    """Sample ids, one per row, from a JSON array file (what ``lookalike embeddings --out`` writes)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ids file {p} does not exist")
    try:
        ids = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p} is not a JSON array of sample ids: {e}") from e
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ConfigError(f"{p} must hold a JSON array of sample id strings")
    return ids


def checked_vectors(vectors: np.ndarray, ids: Sequence[str], known: Sequence[str], source: str,
                    row: str = "sample") -> np.ndarray:
    """``vectors`` as L2-normalised float32 rows, one per id of ``ids``, after checking them against the
    dataset's row ids ``known`` (``row``: what a row is, ``sample`` or ``box``, for the errors); ``source``
    names where they came from in the errors."""
    v = np.asarray(vectors)
    if v.ndim != 2 or v.shape[1] < 1:
        raise ConfigError(f"{source}: expected a 2-D array (one row per {row}), got shape {v.shape}")
    if not np.issubdtype(v.dtype, np.number):
        raise ConfigError(f"{source}: expected numbers, got dtype {v.dtype}")
    if len(v) != len(ids):
        raise ConfigError(f"{source}: {len(v)} rows but {len(ids)} {row} ids; give one row per {row}")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        repeated = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise ConfigError(f"{source}: {row} id {repeated} is listed more than once")
    present = set(known)
    unknown = [i for i in ids if i not in present]
    if unknown:
        raise ConfigError(f"{source}: {len(unknown)} ids are not {row}s of the dataset, e.g. "
                          f"{', '.join(unknown[:3])}")
    out = np.empty(v.shape, np.float32)
    for start in range(0, len(v), 65536):  # in chunks: a memory-mapped file is never copied whole
        chunk = np.asarray(v[start:start + 65536], dtype=np.float32)
        if not np.isfinite(chunk).all():
            at = start + int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0])
            raise ConfigError(f"{source}: row {at} ({row} {ids[at]}) holds NaN or infinite values")
        norms = np.linalg.norm(chunk, axis=1, keepdims=True)
        if (norms == 0).any():
            at = start + int(np.flatnonzero(norms[:, 0] == 0)[0])
            raise ConfigError(f"{source}: row {at} ({row} {ids[at]}) is all zeros; it has no direction")
        out[start:start + len(chunk)] = chunk / norms
    return out


def run_key(model_name: str) -> str:
    """The key (collection and cache name) of an imported run: its name, made safe."""
    return "imported-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", model_name).strip("-")
