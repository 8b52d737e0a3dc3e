"""Misclassified neighbours: samples whose embedding neighbours disagree with their label.

Pure NumPy over a :class:`~lookalike.graph.KnnGraph` and integer labels (``-1``: unlabeled); no trained
model needed. The method (each choice measured in ``benchmarks/mislabels.py``):

1. **Neighbour class probabilities.** Each of the ``k`` neighbours votes for its label with weight
   ``sim ** power``, so nearer neighbours count more.
2. **Model predictions**, where the dataset has them, are averaged with the neighbour probabilities.
3. **Per-class reference, in the spirit of confident learning.** ``t_c`` is the mean probability of
   class ``c`` over the samples labelled ``c``: how much support a typical member of the class gets.
   This is the correction for class frequency and difficulty: a rare class, out-voted by the crowd
   around it, and a class that is hard to separate both get a low reference, so their members are not
   flagged wholesale. (Dividing the votes by class frequency instead flags the crowd next to a rare
   class: its few votes get multiplied up.)
4. **Score and flag.** ``support = p_y / t_y`` is a sample's own-label support relative to its class;
   ``score = 1 - min(support, 1)`` in [0, 1], higher = more likely wrong. A sample is flagged when its
   support is below ``max_support`` (0.2: a fifth of what its class typically gets).

``suggested`` is the class with the most support relative to its own reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .exceptions import ConfigError
from .graph import KnnGraph

DEFAULT_K = 50
DEFAULT_POWER = 4.0
DEFAULT_MAX_SUPPORT = 0.2


@dataclass(frozen=True)
class MislabelResult:
    """Per sample: ``score`` (0..1, higher = more likely mislabeled; NaN if unlabeled), ``suggested``
    class, ``flag``; also the class probabilities and per-class references behind them."""

    score: np.ndarray
    suggested: np.ndarray
    flag: np.ndarray
    probs: np.ndarray
    references: np.ndarray

    def summary(self) -> dict[str, float]:
        labeled = int(np.isfinite(self.score).sum())
        return {"labeled": labeled, "flagged": int(self.flag.sum()),
                "flagged_fraction": float(self.flag.sum() / max(1, labeled))}


def neighbour_probs(graph: KnnGraph, labels: np.ndarray, n_classes: int, power: float = DEFAULT_POWER) -> np.ndarray:
    """Class probabilities of every sample from its neighbours' labels (step 1 of the method)."""
    labeled = labels >= 0
    one_hot = np.zeros((len(labels), n_classes), dtype=np.float32)
    one_hot[np.flatnonzero(labeled), labels[labeled]] = 1.0
    weights = np.clip(graph.sims, 0, None) ** power
    votes = np.einsum("nk,nkc->nc", weights, one_hot[graph.indices])
    total = votes.sum(axis=1, keepdims=True)
    return np.where(total > 0, votes / np.where(total > 0, total, 1), 1.0 / n_classes).astype(np.float32)


def find_mislabels(
    graph: KnnGraph,
    labels: np.ndarray,
    n_classes: int | None = None,
    pred_probs: np.ndarray | None = None,
    power: float = DEFAULT_POWER,
    max_support: float = DEFAULT_MAX_SUPPORT,
) -> MislabelResult:
    """Score every labeled sample for a wrong label; see the module docstring for the method.

    ``labels``: int class per graph row, ``-1`` for unlabeled (scored NaN, never flagged, never voting).
    ``pred_probs``: optional (n, n_classes) model probabilities, averaged with the neighbour ones.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(graph.indices):
        raise ConfigError(f"labels must be 1-D with one entry per graph row ({len(graph.indices)}), "
                          f"got shape {labels.shape}")
    n_classes = int(n_classes or labels.max() + 1)
    probs = neighbour_probs(graph, labels, n_classes, power=power)
    if pred_probs is not None:
        pred = np.asarray(pred_probs, dtype=np.float32)
        if pred.shape != probs.shape or not np.isfinite(pred).all():
            raise ConfigError(f"pred_probs must be finite with shape {probs.shape}, got {pred.shape}")
        probs = (probs + pred / np.maximum(pred.sum(axis=1, keepdims=True), 1e-12)) / 2
    labeled = labels >= 0
    own_label = np.maximum(labels, 0)
    references = np.ones(n_classes, dtype=np.float32)
    for c in range(n_classes):
        members = labels == c
        if members.any():
            references[c] = max(float(probs[members, c].mean()), 1e-12)
    support = probs[np.arange(len(labels)), own_label] / references[own_label]
    score = np.where(labeled, 1 - np.minimum(support, 1), np.nan).astype(np.float32)
    return MislabelResult(score=score, suggested=(probs / references).argmax(axis=1),
                          flag=labeled & (support < max_support), probs=probs, references=references)
