"""Outliers: samples far from everything else in embedding space, by two measures.

- **Local**: the log of a sample's mean cosine distance to its ``k`` nearest neighbours, from the shared kNN
  graph (cleanlab's out-of-distribution score uses the same distance). It finds a sample alone in its
  corner of the space.
- **Global**: the log of its Mahalanobis distance from the collection's mean, under a Ledoit-Wolf shrunk
  covariance fitted on at most ``FIT_MAX`` samples. It finds a sample that points where the collection does
  not, even where it has neighbours: out-of-distribution images come in groups (textile photos planted among
  garments sit near each other and near garments), and no neighbour distance sees them
  (``benchmarks/outliers.py``: AUROC 0.66 with the local measure alone, 0.99 with both).

Each measure is judged against the collection, as :mod:`lookalike.image_quality` judges its measures: ``z`` is
its distance above the median in robust standard deviations; a sample's ``z`` is the larger of the two;
``score = clip(z / (2 Z_FLAG), 0, 1)``, flagged at ``Z_FLAG`` (0.5). Dividing the local distance by the
neighbours' own (the local outlier factor's idea, ``local=True``) was measured too, and lost (AUROC 0.46
against 1.00 on 20 garments among textiles: they are each other's neighbours).
"""

from __future__ import annotations

import numpy as np

from .arrays import flag_score, robust_z
from .graph import KnnGraph

DEFAULT_K = 10
Z_FLAG = 4.0  # benchmarks/outliers.py
FLOOR = 0.05  # least spread of the log measures assumed (identical samples have none)
FIT_MAX = 20_000  # samples the covariance is fitted on
CHUNK = 65_536  # rows scored at a time (the vectors may be a memory map)


def distances(graph: KnnGraph, k: int = DEFAULT_K) -> np.ndarray:
    """Mean cosine distance of each row to its ``k`` nearest neighbours."""
    return np.clip(1.0 - graph.sims[:, :k].astype(np.float64), 0, None).mean(axis=1)


def outlier_measure(graph: KnnGraph, k: int = DEFAULT_K, local: bool = False) -> np.ndarray:
    """Per row, how far out it is locally: log of its distance over its neighbours' mean distance
    (``local``), or the log distance itself."""
    d = distances(graph, k) + 1e-6
    if not local:
        return np.log(d)
    around = d[graph.indices[:, :k]].mean(axis=1)
    return np.log(d / around)


def mahalanobis(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each row's squared Mahalanobis distance from the mean, under a Ledoit-Wolf covariance fitted on at most
    ``FIT_MAX`` rows (seeded)."""
    from sklearn.covariance import LedoitWolf

    n = len(vectors)
    rows = np.sort(np.random.default_rng(seed).choice(n, FIT_MAX, replace=False)) if n > FIT_MAX else np.arange(n)
    fit = LedoitWolf().fit(np.asarray(vectors[rows], dtype=np.float64))
    precision = fit.precision_.astype(np.float32)
    mean = fit.location_.astype(np.float32)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, CHUNK):
        centred = np.asarray(vectors[start:start + CHUNK], dtype=np.float32) - mean
        out[start:start + len(centred)] = np.einsum("nd,nd->n", centred @ precision, centred)
    return np.maximum(out, 0.0)


def outlier_scores(graph: KnnGraph, k: int = DEFAULT_K, z_flag: float = Z_FLAG, local: bool = False,
                   vectors: np.ndarray | None = None) -> np.ndarray:
    """Scores in [0, 1], higher = further out, 0.5 at the flag; see the module docstring. Without
    ``vectors`` (the graph's rows), the local measure alone."""
    m = outlier_measure(graph, k, local)
    if not len(m):
        return m.astype(np.float32)
    z = robust_z(m, FLOOR)
    if vectors is not None and len(vectors) > 2:
        z = np.maximum(z, robust_z(np.log(mahalanobis(vectors) + 1e-6), FLOOR))
    return flag_score(z, z_flag)
