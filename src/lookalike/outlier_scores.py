"""Outliers: samples far from everything else in embedding space, from the shared kNN graph.

A sample's measure is the log of its mean cosine distance to its ``k`` nearest neighbours (cleanlab's
out-of-distribution score uses the same distance). Dividing it by its neighbours' own distance (the local
outlier factor's idea, ``local=True``) was measured too, and lost: out-of-distribution images come in groups
(20 grey garments among textiles), whose members are each other's neighbours (``benchmarks/outliers.py``:
AUROC 0.46 against 1.00). Scores are judged against the collection, as :mod:`lookalike.image_quality` judges its
measures: ``z`` is the measure's distance above the median in robust standard deviations;
``score = clip(z / (2 Z_FLAG), 0, 1)``, flagged at ``Z_FLAG`` (0.5).
"""

from __future__ import annotations

import numpy as np

from .arrays import flag_score, robust_z
from .graph import KnnGraph

DEFAULT_K = 10
Z_FLAG = 4.0  # benchmarks/outliers.py
FLOOR = 0.05  # least spread of the log ratio assumed (identical samples have none)


def distances(graph: KnnGraph, k: int = DEFAULT_K) -> np.ndarray:
    """Mean cosine distance of each row to its ``k`` nearest neighbours."""
    return np.clip(1.0 - graph.sims[:, :k].astype(np.float64), 0, None).mean(axis=1)


def outlier_measure(graph: KnnGraph, k: int = DEFAULT_K, local: bool = False) -> np.ndarray:
    """Per row, how far out it is: log of its distance over its neighbours' mean distance (``local``), or
    the log distance itself."""
    d = distances(graph, k) + 1e-6
    if not local:
        return np.log(d)
    around = d[graph.indices[:, :k]].mean(axis=1)
    return np.log(d / around)


def outlier_scores(graph: KnnGraph, k: int = DEFAULT_K, z_flag: float = Z_FLAG, local: bool = False) -> np.ndarray:
    """Scores in [0, 1], higher = further out, 0.5 at the flag; see the module docstring."""
    m = outlier_measure(graph, k, local)
    if not len(m):
        return m.astype(np.float32)
    return flag_score(robust_z(m, FLOOR), z_flag)
