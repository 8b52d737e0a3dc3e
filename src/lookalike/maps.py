"""The map of an embedding space: a uniqueness score, a 2-D UMAP layout and clusters, all from the shared
kNN graph, plus a PNG plot. Pure NumPy / umap-learn / scikit-learn; :func:`lookalike.api.compute_map` writes
the results to FiftyOne.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .graph import KnnGraph, exact_knn, nearest

UNIQUENESS_K = 5  # neighbours whose distance makes the score: few, so a tight pair of outliers still scores high
UMAP_K = 15  # umap-learn's default n_neighbors
NOISE = -1  # cluster number of points in no cluster
UNKNOWN = -2  # cluster number of a row not clustered yet (see clusters)
FIT_MAX = 50_000  # rows a map is fitted on; the rest are placed among them (see layout)
PLACING_ROUNDS = 8  # rounds of placing rows next to their placed neighbours
COLOUR_FIELDS = ("label", "cluster", "uniqueness", "mislabel_score", "duplicate_group")  # what can colour a plot


def uniqueness(graph: KnnGraph, k: int = UNIQUENESS_K) -> np.ndarray:
    """Per row, the mean cosine distance to its ``k`` nearest neighbours, scaled so the most unique row
    scores 1: near 0 for samples in a crowd of look-alikes, high for outliers."""
    distance = 1.0 - graph.sims[:, :k].astype(np.float64).mean(axis=1)
    distance = np.clip(distance, 0.0, None)
    top = distance.max(initial=0.0)
    return (distance / top if top > 0 else distance).astype(np.float32)


def _umap(vectors: np.ndarray, graph: KnnGraph, seed: int, n_neighbors: int) -> np.ndarray:
    import umap

    n = len(vectors)
    k = min(n_neighbors, graph.k + 1)
    # umap-learn's precomputed_knn lists each point as its own nearest neighbour, at distance 0.
    indices = np.concatenate([np.arange(n)[:, None], graph.indices[:, : k - 1]], axis=1)
    distances = np.concatenate([np.zeros((n, 1)), 1.0 - graph.sims[:, : k - 1]], axis=1).clip(0, None)
    reducer = umap.UMAP(n_neighbors=k, metric="cosine", random_state=seed, n_components=2,
                        precomputed_knn=(indices, distances.astype(np.float32), None), init="spectral")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap-learn warns that a seed means one thread
        return np.asarray(reducer.fit_transform(vectors), dtype=np.float32)


def _fitted(n: int, seed: int, fit_max: int) -> np.ndarray:
    """The rows a large map is fitted on: a seeded sample of ``fit_max``, in row order."""
    return np.sort(np.random.default_rng(seed).choice(n, fit_max, replace=False))


def layout(vectors: np.ndarray, graph: KnnGraph, seed: int = 0, n_neighbors: int = UMAP_K,
           fit_max: int = FIT_MAX, known: np.ndarray | None = None) -> np.ndarray:
    """A 2-D UMAP layout of the vectors (cosine), fed the shared graph as its neighbours; the same seed
    gives the same points.

    Beyond ``fit_max`` rows UMAP is fitted on a seeded sample of ``fit_max`` (its own exact graph), and every
    other row is placed among them (see :func:`place`). UMAP's cost and memory grow with N (at 200k rows it
    held 14 GB); this stays at the sample's. ``known``: the points of an earlier layout of these rows, NaN
    where a row is new; only the new rows are placed, so a map updated after 1% more samples keeps its shape
    and costs a fraction of a new one."""
    n = len(vectors)
    if known is not None:
        points = np.array(known, dtype=np.float32)
        return place(points, np.flatnonzero(~np.isnan(points[:, 0])), vectors, graph)
    if n <= fit_max:
        return _umap(vectors, graph, seed, n_neighbors)
    fit = _fitted(n, seed, fit_max)
    points = np.full((n, 2), np.nan, dtype=np.float32)
    points[fit] = _umap(vectors[fit], exact_knn(vectors[fit], n_neighbors - 1), seed, n_neighbors)
    return place(points, fit, vectors, graph)


def place(points: np.ndarray, anchors: np.ndarray, vectors: np.ndarray, graph: KnnGraph) -> np.ndarray:
    """``points`` with every row but ``anchors`` placed at the similarity-weighted mean of its graph
    neighbours already placed, in rounds outward from the anchors; a row none of whose neighbours is ever
    placed takes its nearest anchor's place."""
    placed = np.zeros(len(points), dtype=bool)
    placed[anchors] = True
    for _ in range(PLACING_ROUNDS):
        rows = np.flatnonzero(~placed)
        if not len(rows):
            break
        neighbours = graph.indices[rows]
        weights = np.where(placed[neighbours], np.clip(graph.sims[rows], 1e-3, None), 0.0)
        total = weights.sum(axis=1)
        ready = total > 0
        where = np.nan_to_num(points[neighbours[ready]])
        points[rows[ready]] = (weights[ready, :, None] * where).sum(axis=1) / total[ready, None]
        placed[rows[ready]] = True
    left = np.flatnonzero(~placed)
    if len(left):
        points[left] = points[anchors[nearest(vectors[left], vectors[anchors], 1)[:, 0]]]
    return points


def clusters(points: np.ndarray, min_size: int | None = None, seed: int = 0, fit_max: int = FIT_MAX,
             known: np.ndarray | None = None) -> np.ndarray:
    """Density clusters (HDBSCAN) of the 2-D layout: a cluster number per row, ``NOISE`` for rows in none.
    ``min_size`` defaults to 1% of the rows clustered (at least 5), so the number of clusters does not grow
    with N. Beyond ``fit_max`` rows, a seeded sample of ``fit_max`` is clustered and every other row takes
    the cluster of the nearest sampled point in the plane. ``known``: the clusters of an earlier run,
    ``UNKNOWN`` where a row is new; only new rows are assigned, each to its nearest known row's cluster."""
    from sklearn.cluster import HDBSCAN

    n = len(points)
    if known is not None:
        old = np.flatnonzero(known != UNKNOWN)
        return _nearest_of(points[old], known[old], points, keep=known)
    if n < 3:
        return np.full(n, NOISE)
    fit = _fitted(n, seed, fit_max) if n > fit_max else np.arange(n)
    size = min_size or max(5, len(fit) // 100)
    found = np.asarray(HDBSCAN(min_cluster_size=min(size, len(fit)), copy=True).fit_predict(points[fit]))
    if len(fit) == n:
        return found
    return _nearest_of(points[fit], found, points)


def _nearest_of(where: np.ndarray, values: np.ndarray, points: np.ndarray,
                keep: np.ndarray | None = None) -> np.ndarray:
    """For each of ``points``, the value of the nearest of ``where`` in the plane (rows of ``keep`` other
    than ``UNKNOWN`` keep theirs)."""
    from sklearn.neighbors import KDTree

    out = np.array(keep) if keep is not None else np.empty(len(points), dtype=values.dtype)
    todo = np.flatnonzero(out == UNKNOWN) if keep is not None else np.arange(len(points))
    if len(todo):
        out[todo] = values[KDTree(where).query(points[todo], k=1, return_distance=False)[:, 0]]
    return out


def plot(points: np.ndarray, colour: Sequence[object], path: str | Path, title: str = "") -> Path:
    """A scatter plot of the layout, coloured by a categorical or numeric per-point value, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 7), dpi=110)
    size = max(1.0, min(12.0, 20_000 / max(1, len(points))))
    values = list(colour)
    numeric = all(isinstance(v, int | float | np.floating | np.integer) or v is None for v in values) and not all(
        isinstance(v, int | np.integer) for v in values)
    if numeric:
        c = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        sc = ax.scatter(points[:, 0], points[:, 1], c=c, s=size, cmap="viridis", linewidths=0)
        fig.colorbar(sc, ax=ax)
    else:
        text = np.array([str(v) for v in values])
        names = sorted(set(text.tolist()))
        cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
        for i, name in enumerate(names):
            mask = text == name
            ax.scatter(points[mask, 0], points[mask, 1], s=size, color=cmap(i % cmap.N), label=name, linewidths=0)
        if len(names) <= 30:
            ax.legend(markerscale=max(1.0, 6 / size), fontsize=7, loc="best", frameon=False)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
