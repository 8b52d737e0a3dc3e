"""The map of an embedding space: a uniqueness score, a 2-D UMAP layout and clusters, all from the shared
kNN graph, plus a PNG plot. Pure NumPy / umap-learn / scikit-learn; :func:`lookalike.api.compute_map` writes
the results to FiftyOne.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .graph import KnnGraph

UNIQUENESS_K = 5  # neighbours whose distance makes the score: few, so a tight pair of outliers still scores high
UMAP_K = 15  # umap-learn's default n_neighbors
NOISE = -1  # cluster number of points in no cluster
COLOUR_FIELDS = ("label", "cluster", "uniqueness", "mislabel_score", "duplicate_group")  # what can colour a plot


def uniqueness(graph: KnnGraph, k: int = UNIQUENESS_K) -> np.ndarray:
    """Per row, the mean cosine distance to its ``k`` nearest neighbours, scaled so the most unique row
    scores 1: near 0 for samples in a crowd of look-alikes, high for outliers."""
    distance = 1.0 - graph.sims[:, :k].astype(np.float64).mean(axis=1)
    distance = np.clip(distance, 0.0, None)
    top = distance.max(initial=0.0)
    return (distance / top if top > 0 else distance).astype(np.float32)


def layout(vectors: np.ndarray, graph: KnnGraph, seed: int = 0, n_neighbors: int = UMAP_K) -> np.ndarray:
    """A 2-D UMAP layout of the vectors (cosine), fed the shared graph as its neighbours; the same seed
    gives the same points."""
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


def clusters(points: np.ndarray, min_size: int | None = None) -> np.ndarray:
    """Density clusters (HDBSCAN) of the 2-D layout: a cluster number per row, ``NOISE`` for rows in none.
    ``min_size`` defaults to 1% of the rows (at least 5), so the number of clusters does not grow with N."""
    from sklearn.cluster import HDBSCAN

    n = len(points)
    if n < 3:
        return np.full(n, NOISE)
    size = min_size or max(5, n // 100)
    return np.asarray(HDBSCAN(min_cluster_size=min(size, n), copy=True).fit_predict(points))


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
        names = sorted({str(v) for v in values})
        cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
        for i, name in enumerate(names):
            mask = np.array([str(v) == name for v in values])
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
