"""The k-nearest-neighbour graph: computed once per embedding run, reused by every analysis.

Pure NumPy/torch: rows of L2-normalised vectors in, for each row the ``k`` most similar other rows
(indices and cosine similarities, most similar first) out. Exact, by blocked matrix products, so memory
stays at ``block x N`` similarities whatever N is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrays import as_vectors
from .exceptions import ConfigError


@dataclass(frozen=True)
class KnnGraph:
    """``indices[i]`` are the rows nearest to row ``i`` (itself excluded), ``sims[i]`` their cosines."""

    indices: np.ndarray  # (n, k) int64
    sims: np.ndarray  # (n, k) float32

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def save(self, path: str | Path, ids: Sequence[str]) -> None:
        """Store the graph with the sample ids of its rows."""
        np.savez(path, indices=self.indices, sims=self.sims, ids=np.asarray(ids, dtype=str))

    @classmethod
    def load(cls, path: str | Path) -> tuple[KnnGraph, list[str]]:
        """A stored graph and the sample ids of its rows."""
        with np.load(path) as f:
            return cls(indices=f["indices"], sims=f["sims"]), [str(i) for i in f["ids"]]

    def first(self, k: int) -> KnnGraph:
        """The same graph keeping only each row's ``k`` nearest neighbours."""
        return KnnGraph(indices=self.indices[:, :k], sims=self.sims[:, :k])


def _validate(vectors: np.ndarray, k: int) -> np.ndarray:
    v = as_vectors(vectors)
    if not 1 <= k < len(v):
        raise ConfigError(f"k must be between 1 and n - 1 = {len(v) - 1}, got {k}")
    return v


def exact_knn(vectors: np.ndarray, k: int, block: int = 4096) -> KnnGraph:
    """Exact cosine kNN of every row against all others, ``block`` query rows at a time.

    A row never lists itself, even when another row is identical to it.
    """
    import torch

    v = _validate(vectors, k)
    base = torch.from_numpy(v)
    n = len(v)
    indices = np.empty((n, k), dtype=np.int64)
    sims = np.empty((n, k), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, n, block):
            stop = min(start + block, n)
            s = base[start:stop] @ base.T
            s[torch.arange(stop - start), torch.arange(start, stop)] = -torch.inf  # not its own neighbour
            top = torch.topk(s, k, dim=1, sorted=True)
            indices[start:stop] = top.indices.numpy()
            sims[start:stop] = top.values.numpy()
    return KnnGraph(indices=indices, sims=sims)
