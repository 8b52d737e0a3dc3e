"""Retrieval evaluation: how well an embedding's nearest neighbours retrieve a sample's own label, and how
well the vector index finds the exact nearest neighbours. Pure NumPy over the kNN graph.

For each labeled query (itself left out) and its ``k`` nearest neighbours:
- **precision@k**: the share of the ``k`` that carry its label;
- **recall@k**: 1 if any of them does (the image-retrieval benchmarks' Recall@K: CUB, Stanford Online
  Products), else 0;
- **AP@k**: the mean of precision@i over the ranks ``i`` where a neighbour carries its label, divided by
  ``min(k, others with its label)``; mAP@k is its mean.
Queries whose label no other sample carries have nothing to retrieve and are left out of all three.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph import KnnGraph


@dataclass(frozen=True)
class Retrieval:
    """Per query (NaN where unlabeled or alone in its class): precision@k, recall@k and AP@k."""

    precision: np.ndarray
    recall: np.ndarray
    ap: np.ndarray

    def mean(self, rows: np.ndarray | None = None) -> dict[str, float]:
        pick = slice(None) if rows is None else rows
        valid = np.isfinite(self.precision[pick])
        if not valid.any():
            return {"precision_at_k": float("nan"), "recall_at_k": float("nan"), "map_at_k": float("nan"), "queries": 0}
        return {"precision_at_k": float(self.precision[pick][valid].mean()),
                "recall_at_k": float(self.recall[pick][valid].mean()),
                "map_at_k": float(self.ap[pick][valid].mean()), "queries": int(valid.sum())}


def label_retrieval(graph: KnnGraph, labels: np.ndarray, k: int) -> Retrieval:
    """Precision@k, recall@k and AP@k of every row as a query (``labels``: int per row, -1 unlabeled)."""
    labels = np.asarray(labels)
    nbr = graph.indices[:, :k]
    valid_nbr = nbr >= 0
    relevant = valid_nbr & (labels[np.maximum(nbr, 0)] == labels[:, None]) & (labels[:, None] >= 0)
    counts = np.bincount(labels[labels >= 0], minlength=int(labels.max(initial=0)) + 1)
    others = np.where(labels >= 0, counts[np.maximum(labels, 0)] - 1, 0)
    scored = (labels >= 0) & (others > 0)
    hits = relevant.cumsum(axis=1)
    precision_at = hits / np.arange(1, k + 1)
    ap = (precision_at * relevant).sum(axis=1) / np.maximum(np.minimum(k, others), 1)
    nan = np.full(len(labels), np.nan)
    return Retrieval(precision=np.where(scored, relevant.sum(axis=1) / k, nan),
                     recall=np.where(scored, relevant.any(axis=1).astype(float), nan), ap=np.where(scored, ap, nan))


def index_recall(found: list[list[str]], exact: list[list[str]]) -> float:
    """The share of the exact nearest neighbours that the index returned, over the queries."""
    shares = [len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True) if e]
    return float(np.mean(shares)) if shares else float("nan")
