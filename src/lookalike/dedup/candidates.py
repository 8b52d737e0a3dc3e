"""Candidate pairs: what the embedding and a search over thumbnails both say may be copies."""

from __future__ import annotations

import numpy as np

from ..graph import KnnGraph, approximate_nearest, nearest
from ..hardware import use_bf16
from ..thumbnails import THUMB
from .alignment import standardise
from .pairs import distinct_pairs, touching

DEFAULT_CANDIDATE_COSINE = 0.8
PIXEL_NEIGHBOURS = 5


def candidate_pairs(graph: KnnGraph | None, thumbs: np.ndarray,
                    candidate_cosine: float = DEFAULT_CANDIDATE_COSINE,
                    exact_max: int = 100_000, queries: np.ndarray | None = None) -> np.ndarray:
    """Pairs (i < j) worth verifying: embedding neighbours above ``candidate_cosine`` and each
    thumbnail's (and its mirror's) nearest thumbnails, searched exactly up to ``exact_max`` images. With
    ``queries`` (rows), only pairs with one of them: what is new since an earlier run."""
    found = [np.zeros((0, 2), dtype=np.int64)]
    if graph is not None:
        rows, cols = np.nonzero(graph.sims >= candidate_cosine)
        pairs = distinct_pairs(rows, graph.indices[rows, cols])
        found.append(pairs if queries is None else touching(pairs, queries, len(thumbs)))
    if len(thumbs) > 1 and (queries is None or len(queries)):
        rows = np.arange(len(thumbs)) if queries is None else np.asarray(queries)
        neighbours = _pixel_neighbours(thumbs, exact_max, queries)
        found.append(distinct_pairs(np.broadcast_to(rows[:, None], neighbours.shape), neighbours))
    both = np.concatenate(found)
    return np.unique(both, axis=0) if len(both) else both


def _pixel_neighbours(thumbs: np.ndarray, exact_max: int, queries: np.ndarray | None = None) -> np.ndarray:
    """Each thumbnail's (or each of ``queries``') nearest thumbnails or mirrored thumbnails, as row numbers,
    itself included: approximate beyond ``exact_max`` images, exact for ``queries``."""
    import torch

    n = len(thumbs)
    # Pixel neighbours at half the thumbnail's side: a quarter of the work, and more tolerant of shifts. The
    # rows are made a slice at a time straight into the precision the search multiplies in: at a million
    # thumbnails a float32 matrix and its bf16 copy were 3 GB.
    side = THUMB // 2
    base = torch.empty((2 * n, side * side), dtype=torch.bfloat16 if use_bf16("auto") else torch.float32)
    for start in range(0, n, 1 << 16):
        small = thumbs[start:start + (1 << 16)].reshape(-1, side, 2, side, 2).mean(axis=(2, 4), dtype=np.float32)
        for at, view in ((start, small), (n + start, small[:, :, ::-1])):
            base[at:at + len(small)] = torch.from_numpy(standardise(view.reshape(len(small), -1)))
    k = min(2 * (PIXEL_NEIGHBOURS + 1), 2 * n - 1)  # + 1: an image finds itself (or its mirror) first
    if queries is not None:
        return nearest(base[torch.from_numpy(np.asarray(queries))], base, k) % n
    if n > exact_max:
        return approximate_nearest(base, k, queries=n) % n
    return nearest(base[:n], base, k) % n  # every candidate is verified exactly
