"""The k-nearest-neighbour graph: computed once per embedding run, reused by every analysis.

Pure NumPy/torch: rows of L2-normalised vectors in, for each row the ``k`` most similar other rows
(indices and cosine similarities, most similar first) out. :func:`exact_knn` by blocked matrix products
(memory stays at ``block x N`` similarities whatever N is); :func:`approximate_knn` by NN-descent
(pynndescent, which umap-learn brings) for large N; :func:`update_knn` brings a graph up to date after
samples were added, changed or removed, searching only for what changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrays import as_vectors
from .exceptions import ConfigError

NN_DESCENT_WIDTH = 30  # neighbours NN-descent tracks per row, at least


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


def approximate_knn(vectors: np.ndarray, k: int, seed: int = 0) -> KnnGraph:
    """Approximate cosine kNN by NN-descent (pynndescent); rows never list themselves."""
    from pynndescent import NNDescent

    v = _validate(vectors, k)
    # A wider search than k (at least NN_DESCENT_WIDTH) lifts recall at the k kept.
    width = min(len(v) - 1, max(k, NN_DESCENT_WIDTH)) + 1
    index = NNDescent(v, metric="dot", n_neighbors=width, random_state=seed, low_memory=True, compressed=True)
    found, distances = index.neighbor_graph
    sims = (1.0 - distances).astype(np.float32)  # pynndescent's "dot" distance is 1 - dot product
    sims[found == np.arange(len(v))[:, None]] = -np.inf  # never its own neighbour
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return KnnGraph(indices=np.take_along_axis(found, order, axis=1).astype(np.int64),
                    sims=np.take_along_axis(sims, order, axis=1))


def knn(vectors: np.ndarray, k: int, exact_max: int) -> KnnGraph:
    """The exact graph up to ``exact_max`` rows, the approximate one beyond."""
    return exact_knn(vectors, k) if len(vectors) <= exact_max else approximate_knn(vectors, k)


def recall(graph: KnnGraph, vectors: np.ndarray, rows: np.ndarray) -> float:
    """Share of the true ``graph.k`` nearest neighbours of ``rows`` that the graph lists (exact search)."""
    v = as_vectors(vectors)
    sims = v[rows] @ v.T
    sims[np.arange(len(rows)), rows] = -np.inf
    truth = np.argpartition(-sims, graph.k, axis=1)[:, : graph.k]
    return float(np.mean([len(set(t) & set(g)) / graph.k for t, g in zip(truth, graph.indices[rows], strict=True)]))


def update_knn(old: KnnGraph, old_rows: np.ndarray, vectors: np.ndarray, k: int, block: int = 4096) -> KnnGraph:
    """The kNN graph of ``vectors`` from ``old``, a graph of an earlier version of the same samples.

    ``old_rows[i]`` is the row of sample ``i`` in ``old``, or -1 where the sample is new or its vector
    changed. New rows, and kept rows that lost a neighbour, are searched afresh against all rows; every
    other kept row only merges in its similarities to the new rows. Exact where ``old`` was.
    """
    import torch

    v = _validate(vectors, k)
    n = len(v)
    old_rows = np.asarray(old_rows)
    now = np.full(len(old.indices), -1)
    kept = np.flatnonzero(old_rows >= 0)
    now[old_rows[kept]] = kept
    if old.k < k:
        return exact_knn(v, k, block)
    indices = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), -np.inf, dtype=np.float32)
    moved = now[old.indices[old_rows[kept], :k]]
    whole = moved.min(axis=1) >= 0
    clean, fresh = kept[whole], np.setdiff1d(np.arange(n), kept[whole])
    indices[clean], sims[clean] = moved[whole], old.sims[old_rows[clean], :k]
    base = torch.from_numpy(v)
    with torch.inference_mode():
        for start in range(0, len(fresh), block):  # afresh: every row that is new or lost a neighbour
            rows = torch.from_numpy(fresh[start:start + block])
            s = base[rows] @ base.T
            s[torch.arange(len(rows)), rows] = -torch.inf
            top = torch.topk(s, k, dim=1)
            indices[rows.numpy()], sims[rows.numpy()] = top.indices.numpy(), top.values.numpy()
        added = np.setdiff1d(np.arange(n), kept)
        for start in range(0, len(clean), block):  # merge the added rows into the untouched ones
            if not len(added):
                break
            part = clean[start:start + block]
            to_added = (base[torch.from_numpy(part)] @ base[torch.from_numpy(added)].T).numpy()
            both_i = np.concatenate([indices[part], np.broadcast_to(added, to_added.shape)], axis=1)
            both_s = np.concatenate([sims[part], to_added], axis=1)
            order = np.argsort(-both_s, axis=1, kind="stable")[:, :k]
            indices[part] = np.take_along_axis(both_i, order, axis=1)
            sims[part] = np.take_along_axis(both_s, order, axis=1)
    return KnnGraph(indices=indices, sims=sims)
