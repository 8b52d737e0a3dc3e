"""Misclassified neighbours: samples whose embedding neighbours, and a linear probe on their vectors,
disagree with their label.

Pure NumPy over a :class:`~lookalike.graph.KnnGraph` and integer labels (``-1``: unlabeled). The method
(each choice measured in ``benchmarks/mislabels.py`` on Fashion-MNIST and the textiles at 5-30% noise):

1. **Neighbour class probabilities.** Each of the ``k`` neighbours votes for its label with weight
   ``sim ** power``, so nearer neighbours count more.
2. **Probe probabilities** (:mod:`lookalike.probe`): out-of-sample probabilities of a cross-validated
   logistic regression on the vectors, mixed in with weight ``PROBE_WEIGHT``. Neighbours see local
   evidence (a look-alike clump), the probe the class boundary as a whole; the mix ranks better than either.
   **Model predictions**, where the dataset has them, are averaged in as well.
3. **Per-class reference, in the spirit of confident learning.** ``t_c`` is the mean probability of
   class ``c`` over the samples labelled ``c``: how much support a typical member of the class gets.
   This is the correction for class frequency and difficulty: a rare class, out-voted by the crowd
   around it, and a class that is hard to separate both get a low reference, so their members are not
   flagged wholesale. (Dividing the votes by class frequency instead flags the crowd next to a rare
   class: its few votes get multiplied up.)
4. **Score and flag.** ``support_c = p_c / t_c`` is a class's support relative to its reference. A sample is
   flagged when its own label's support is under ``max_ratio`` (0.4) times the best other class's: a cut
   against the alternative. A cut on own support alone (under 0.2) was better on Fashion-MNIST at 5-20%
   noise but lost most of its recall on the textiles at 20-30%, where every class's reference falls.
   ``score = other / (other + own / max_ratio)`` in [0, 1], higher = more likely wrong, 0.5 at the flag.

``suggested`` is the class with the most support relative to its own reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .exceptions import ConfigError
from .graph import KnnGraph

DEFAULT_K = 50
DEFAULT_POWER = 4.0
DEFAULT_MAX_RATIO = 0.4
PROBE_WEIGHT = 0.3


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
    probe_probs: np.ndarray | None = None,
    power: float = DEFAULT_POWER,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> MislabelResult:
    """Score every labeled sample for a wrong label; see the module docstring for the method.

    ``labels``: int class per graph row, ``-1`` for unlabeled (scored NaN, never flagged, never voting).
    ``pred_probs``: optional (n, n_classes) model probabilities, averaged with the neighbour ones (a row of NaN:
    no prediction for that row).
    ``probe_probs``: optional out-of-sample probe probabilities (:func:`lookalike.probe.out_of_sample_probs`;
    NaN rows: the neighbours alone).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(graph.indices):
        raise ConfigError(f"labels must be 1-D with one entry per graph row ({len(graph.indices)}), "
                          f"got shape {labels.shape}")
    n_classes = int(n_classes or labels.max() + 1)
    probs = neighbour_probs(graph, labels, n_classes, power=power)
    if probe_probs is not None:
        probe = np.asarray(probe_probs, dtype=np.float32)
        if probe.shape != probs.shape:
            raise ConfigError(f"probe_probs must have shape {probs.shape}, got {probe.shape}")
        judged = np.isfinite(probe).all(axis=1)
        probs[judged] = (1 - PROBE_WEIGHT) * probs[judged] + PROBE_WEIGHT * probe[judged]
    if pred_probs is not None:
        pred = np.asarray(pred_probs, dtype=np.float32)
        if pred.shape != probs.shape:
            raise ConfigError(f"pred_probs must have shape {probs.shape}, got {pred.shape}")
        judged = np.isfinite(pred).all(axis=1)  # a row of NaN: no prediction for it, the neighbours alone
        if (~judged & ~np.isnan(pred).all(axis=1)).any():
            raise ConfigError("pred_probs rows must be finite, or all NaN where there is no prediction")
        probs[judged] = (probs[judged] + pred[judged] / np.maximum(pred[judged].sum(axis=1, keepdims=True),
                                                                    1e-12)) / 2
    labeled = labels >= 0
    own_label = np.maximum(labels, 0)
    references = np.ones(n_classes, dtype=np.float32)
    for c in range(n_classes):
        members = labels == c
        if members.any():
            references[c] = max(float(probs[members, c].mean()), 1e-12)
    relative = probs / references
    rows = np.arange(len(labels))
    support = relative[rows, own_label]
    others = relative.copy()
    others[rows, own_label] = -np.inf
    other = others.max(axis=1) if n_classes > 1 else np.zeros(len(labels), np.float32)
    total = other + support / max_ratio
    score = np.where(labeled, other / np.where(total > 0, total, 1), np.nan).astype(np.float32)
    return MislabelResult(score=score, suggested=relative.argmax(axis=1),
                          flag=labeled & (support < max_ratio * other), probs=probs, references=references)
