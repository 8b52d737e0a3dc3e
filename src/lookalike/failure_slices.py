"""Failure slices: coherent regions of embedding space where a model's errors concentrate, and whose mistake
each error is.

Pure NumPy over the evaluated rows (a label and a prediction each) and kNN graphs. The method (each choice
measured in ``benchmarks/slices.py`` on planted slices in Fashion-MNIST and the textiles, against k-means and
HDBSCAN over the errors and Domino's error-aware mixture):

1. **Local error rate.** Each evaluated row's error rate over itself and its ``k`` nearest evaluated rows: a
   region where the model fails scores high on all its members, right or wrong, while a lone error among
   correct neighbours scores low (diffuse errors are not a slice).
2. **Hot rows**: a local error rate of at least ``HOT`` and at least ``LIFT`` times the overall error rate.
3. **Slices**: connected parts of the hot rows, linked where each is among the other's ``k`` nearest (mutual
   neighbours: a chain of one-sided links would join unrelated regions), of at least ``min_size`` rows;
   most harmful first (errors above what the overall rate predicts for its size), at most ``max_slices``.
4. **Members, most typical first**: by cosine to the slice's mean vector.

**Whose mistake** (:func:`error_kinds`), for each error: the whole run's neighbours (training samples count)
vote with their labels (:func:`lookalike.label_issues.neighbour_probs`); ``label`` where most of the vote goes
to the prediction (the label is likely wrong), ``model`` where most goes to the label, ``ambiguous`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .exceptions import ConfigError
from .graph import KnnGraph
from .label_issues import neighbour_probs

DEFAULT_K = 15  # neighbours whose errors make a row's local error rate
DEFAULT_MIN_SIZE = 10
DEFAULT_MAX_SLICES = 10
HOT = 0.5  # local error rate from which a row can be in a slice...
LIFT = 2.0  # ...and at least this many times the overall rate
MAJORITY = 0.5  # share of the neighbours' vote that settles whose mistake an error is
KINDS = ("label", "model", "ambiguous")


@dataclass
class Slice:
    """One failure slice: ``members`` (row numbers, most typical first), of which ``errors`` are errors."""

    members: np.ndarray
    errors: int
    error_rate: float
    lift: float  # its error rate over the rate of the evaluated rows outside it
    label: int  # the true label most of its errors have
    prediction: int  # the wrong prediction most of its errors have
    typicality: np.ndarray = field(repr=False)  # cosine of each member to the slice's mean vector


@dataclass
class SliceResult:
    """Per evaluated row: ``rate`` (its local error rate, the score), ``slice`` (-1: none); the slices, most
    harmful first."""

    rate: np.ndarray
    slice: np.ndarray
    slices: list[Slice]
    error_rate: float


def find_slices(vectors: np.ndarray, graph: KnnGraph, errors: np.ndarray, labels: np.ndarray,
                predictions: np.ndarray, min_size: int = DEFAULT_MIN_SIZE,
                max_slices: int = DEFAULT_MAX_SLICES) -> SliceResult:
    """Failure slices among evaluated rows: ``vectors`` (unit rows), their kNN ``graph`` among themselves,
    ``errors`` (bool), true ``labels`` and ``predictions`` (ints); see the module docstring."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    errors = np.asarray(errors, dtype=bool)
    n = len(errors)
    if graph.indices.shape[0] != n or len(vectors) != n:
        raise ConfigError(f"vectors, graph and errors must cover the same rows ({len(vectors)}, "
                          f"{graph.indices.shape[0]}, {n})")
    overall = float(errors.mean()) if n else 0.0
    rate = (errors + errors[graph.indices].sum(axis=1)) / (1 + graph.k)
    hot = (rate >= HOT) & (rate >= LIFT * overall)
    slice_of = np.full(n, -1, dtype=np.int64)
    if not hot.any():
        return SliceResult(rate=rate, slice=slice_of, slices=[], error_rate=overall)
    rows = np.repeat(np.arange(n), graph.k)
    cols = graph.indices.ravel()
    keep = hot[rows] & hot[cols]
    links = coo_matrix((np.ones(int(keep.sum()), dtype=np.int8), (rows[keep], cols[keep])), shape=(n, n)).tocsr()
    mutual = links.multiply(links.T)  # each among the other's nearest
    _, part = connected_components(mutual, directed=False)
    part = np.where(hot, part, -1)
    found: list[tuple[float, np.ndarray]] = []
    for p in np.unique(part[part >= 0]):
        members = np.flatnonzero(part == p)
        if len(members) >= min_size:
            found.append((float(errors[members].sum() - overall * len(members)), members))
    found.sort(key=lambda f: -f[0])
    slices = []
    for number, (_, members) in enumerate(found[:max_slices]):
        slices.append(_describe(vectors, members, errors, labels, predictions))
        slice_of[slices[-1].members] = number
    return SliceResult(rate=rate, slice=slice_of, slices=slices, error_rate=overall)


def _describe(vectors: np.ndarray, members: np.ndarray, errors: np.ndarray, labels: np.ndarray,
              predictions: np.ndarray) -> Slice:
    centre = np.asarray(vectors[members], dtype=np.float32).mean(axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    typicality = np.asarray(vectors[members], dtype=np.float32) @ centre
    order = np.argsort(-typicality, kind="stable")
    members, typicality = members[order], typicality[order]
    wrong = members[errors[members]]
    inside = len(members)
    outside_errors, outside = int(errors.sum()) - len(wrong), len(errors) - inside
    rate = len(wrong) / inside
    rest = outside_errors / outside if outside else 0.0
    return Slice(members=members, errors=len(wrong), error_rate=rate, lift=rate / rest if rest > 0 else float("inf"),
                 label=_most_common(labels[wrong]), prediction=_most_common(predictions[wrong]),
                 typicality=typicality)


def _most_common(values: np.ndarray) -> int:
    if not len(values):
        return -1
    kinds, counts = np.unique(values, return_counts=True)
    return int(kinds[np.argmax(counts)])


def error_kinds(graph: KnnGraph, labels: np.ndarray, n_classes: int, rows: np.ndarray,
                predictions: np.ndarray) -> np.ndarray:
    """Whose mistake each of ``rows`` is (rows of the whole run's ``graph``, whose ``labels`` vote; their
    ``predictions``): ``label``, ``model`` or ``ambiguous`` for an error, ``""`` where label and prediction agree
    or either is missing."""
    rows = np.asarray(rows, dtype=np.int64)
    labels = np.asarray(labels)
    probs = neighbour_probs(graph, labels, n_classes)[rows]
    label, prediction = labels[rows], np.asarray(predictions)
    error = (label >= 0) & (prediction >= 0) & (label != prediction)
    at = np.arange(len(rows))
    for_label = probs[at, np.maximum(label, 0)]
    for_prediction = probs[at, np.maximum(prediction, 0)]
    kinds = np.where(for_prediction > MAJORITY, "label", np.where(for_label > MAJORITY, "model", "ambiguous"))
    return np.where(error, kinds, "").astype(object)
