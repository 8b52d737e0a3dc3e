"""Failure slices: coherent groups of look-alike samples where a model's errors concentrate, and whose mistake
each error is.

Pure NumPy/SciPy over the evaluated rows (a label and a prediction each) and kNN graphs. The method (chosen
in ``benchmarks/slices.py`` on planted slices in Fashion-MNIST and the textiles, clean and among diffuse errors,
against k-means and HDBSCAN over the errors and k-means over everything ranked by error rate):

1. **Cores.** Errors are linked where they share their confusion (the same label and the same wrong
   prediction), one is among the other's ``k`` nearest, and they share at least ``SHARED`` of their neighbours
   (shared-nearest-neighbour links: a chain of single links would join unrelated groups). A core is a connected
   part. (Links between mutual neighbours only, sharing a third, measured first: as good on the benchmark sets
   but, in a million samples whose slices have 500 rows, the neighbours inside a slice are so spread that they
   linked only cores of 2-5 rows and found none of 8 planted slices; one-way links sharing a fifth found 8.)
   Grouping by confusion keeps a sub-population the model reads as another class apart from the rest of its
   class; lone errors (diffuse ones) link to nothing. (Thresholding each row's local error rate and
   joining the hot rows, measured first, missed slices whose error rate is under half and merged neighbouring
   slices at lower thresholds.)
2. **Slice**: the core, plus the rows of the core's label most of whose neighbours are in the core (the
   look-alikes the model still gets right); one of more than ``PART`` x ``min_size`` rows cut by k-means into
   parts of about that size (a sub-population the model fails on chains into the larger confusion of its class
   around it: on the textiles, cutting took the rare slice's precision@10 from 0.1-0.3 to 0.2-0.8; parts of 3,
   4 and 6 x min_size: mean 0.833, 0.783, 0.767 there, 1.000 on Fashion-MNIST each); kept with at least
   ``min_size`` rows and errors significantly above the overall rate (one-sided binomial test, ``ALPHA``); most
   harmful first (errors above what the overall rate predicts for its size), each core's best part before any
   core's second (a large slice's parts would crowd out the rest), at most ``max_slices``.
3. **Members, most typical first**: by cosine to the slice's mean vector.

Each row's score is its **local error rate**: over itself and its ``k`` nearest evaluated rows.

**Whose mistake** (:func:`error_kinds`), for each error: its neighbours in the whole run (training samples
count) vote, nearer ones more (as :func:`lookalike.label_issues.neighbour_probs`). ``model`` where more than
``BACKED`` of the vote backs its label, or at least ``REPEATED`` goes to look-alikes with its label that the
model gets wrong the same way (a pattern of the model's, such as a trait it reads as another class, even where
look-alikes of the other class crowd it); else ``label`` where more than ``BACKED`` backs the prediction (a
sample labelled against its look-alikes and the model); else ``ambiguous``. Measured on planted label errors
(flipped test labels) against planted model errors (rare and spurious slices), on both sets: a majority rule
(0.5, 0.2) 0.52-0.84 correct; (0.4, 0.1) 0.89-0.94; (0.3, 0.05) 0.91-0.97, the best on each set alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .exceptions import ConfigError
from .graph import KnnGraph
from .label_issues import DEFAULT_POWER

DEFAULT_K = 15  # neighbours: links between errors, a row's local error rate
DEFAULT_MIN_SIZE = 10
DEFAULT_MAX_SLICES = 10
SHARED = 0.2  # share of their k neighbours two linked errors have in common
JOIN = 0.5  # share of a row's neighbours in a core from which it joins the core's slice
PART = 3  # a slice of more than PART x min_size rows is cut into parts of about that size
ALPHA = 0.01  # a slice's errors must be this unlikely at the overall error rate
BACKED = 0.3  # share of the neighbours' vote that backs a label or a prediction (benchmarks/slices.py)
REPEATED = 0.05  # share of the vote for look-alikes with the same label and the same wrong prediction
KINDS = ("label", "model", "ambiguous")


@dataclass
class Slice:
    """One failure slice: ``members`` (row numbers, most typical first), of which ``errors`` are errors."""

    members: np.ndarray
    errors: int
    error_rate: float
    lift: float | None  # its error rate over the rate of the evaluated rows outside it (None: no errors outside)
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
    from scipy.stats import binom

    errors = np.asarray(errors, dtype=bool)
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    n = len(errors)
    if graph.indices.shape[0] != n or len(vectors) != n:
        raise ConfigError(f"vectors, graph and errors must cover the same rows ({len(vectors)}, "
                          f"{graph.indices.shape[0]}, {n})")
    overall = float(errors.mean()) if n else 0.0
    rate = (errors + errors[graph.indices].sum(axis=1)) / (1 + graph.k)
    slice_of = np.full(n, -1, dtype=np.int64)
    found: list[tuple[int, float, np.ndarray]] = []  # (its rank among its core's parts, harm, members)
    pointing = _edges(graph).T.tocsr()  # row r: the rows that list r among their neighbours
    inside = np.zeros(n, dtype=bool)
    for core in _cores(graph, errors, labels, predictions):
        inside[core] = True
        near = np.setdiff1d(pointing[core].indices, core)  # those that could join: they point at the core
        joins = near[(inside[graph.indices[near]].mean(axis=1) >= JOIN) & (labels[near] == labels[core[0]])]
        inside[core] = False
        parts = []
        for members in _parts(vectors, np.union1d(core, joins), PART * min_size):
            wrong = int(errors[members].sum())
            if len(members) >= min_size and binom.sf(wrong - 1, len(members), overall) <= ALPHA:
                parts.append((wrong - overall * len(members), members))
        parts.sort(key=lambda f: -f[0])
        found += [(rank, harm, members) for rank, (harm, members) in enumerate(parts)]
    # Every core's most harmful part first, then every core's second...: a large slice's parts do not crowd out
    # the other slices.
    found.sort(key=lambda f: (f[0], -f[1]))
    slices: list[Slice] = []
    for _, _, members in found:
        members = members[slice_of[members] < 0]  # a row in two slices stays in the more harmful
        if len(slices) == max_slices or len(members) < min_size:
            continue
        slice_of[members] = len(slices)
        slices.append(_describe(vectors, members, errors, labels, predictions))
    return SliceResult(rate=rate, slice=slice_of, slices=slices, error_rate=overall)


def _edges(graph: KnnGraph, keep: np.ndarray | None = None) -> Any:
    """The graph's edges (row -> each of its neighbours; only those ``keep`` marks, in ``indices.ravel()`` order)
    as a sparse matrix."""
    from scipy.sparse import csr_matrix

    n, k = graph.indices.shape
    rows, cols = np.repeat(np.arange(n), k), graph.indices.ravel()
    if keep is not None:
        rows, cols = rows[keep], cols[keep]
    return csr_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))


def _parts(vectors: np.ndarray, rows: np.ndarray, size: int) -> list[np.ndarray]:
    """``rows`` as they are, or, when more than ``size``, cut by k-means into parts of about ``size``."""
    from sklearn.cluster import KMeans

    if len(rows) <= size:
        return [rows]
    part = KMeans(round(len(rows) / size), n_init=2, random_state=0).fit_predict(np.asarray(vectors[rows]))
    return [rows[part == p] for p in np.unique(part)]


def _cores(graph: KnnGraph, errors: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> list[np.ndarray]:
    """Connected parts of the errors linked by shared confusion, nearness (either way) and shared neighbours."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n, k = len(errors), graph.k
    rows, cols = np.repeat(np.arange(n), k), graph.indices.ravel()
    keep = errors[rows] & errors[cols] & (labels[rows] == labels[cols]) & (predictions[rows] == predictions[cols])
    one_way = _edges(graph, keep)
    pairs = (one_way + one_way.T).tocoo()  # either among the other's nearest
    a, b = pairs.row[pairs.row < pairs.col], pairs.col[pairs.row < pairs.col]
    shared = np.zeros(len(a), dtype=np.int64)
    for start in range(0, len(a), 1 << 15):  # (edges, k, k) comparisons, a slab at a time
        na, nb = graph.indices[a[start:start + (1 << 15)]], graph.indices[b[start:start + (1 << 15)]]
        shared[start:start + len(na)] = (na[:, :, None] == nb[:, None, :]).sum(axis=(1, 2))
    linked = shared >= SHARED * k
    links = coo_matrix((np.ones(int(linked.sum()), np.int8), (a[linked], b[linked])), shape=(n, n))
    _, part = connected_components(links, directed=False)
    part = np.where(errors, part, -1)
    order = np.argsort(part, kind="stable")
    bounds = np.flatnonzero(np.diff(part[order])) + 1
    return [group for group in np.split(order, bounds) if part[group[0]] >= 0 and len(group) >= 2]


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
    return Slice(members=members, errors=len(wrong), error_rate=rate, lift=rate / rest if rest > 0 else None,
                 label=_most_common(labels[wrong]), prediction=_most_common(predictions[wrong]),
                 typicality=typicality)


def _most_common(values: np.ndarray) -> int:
    if not len(values):
        return -1
    kinds, counts = np.unique(values, return_counts=True)
    return int(kinds[np.argmax(counts)])


def error_kinds(graph: KnnGraph, labels: np.ndarray, predictions: np.ndarray, rows: np.ndarray,
                power: float = DEFAULT_POWER) -> np.ndarray:
    """Whose mistake each error among ``rows`` is: ``label``, ``model`` or ``ambiguous`` (``""`` where label and
    prediction agree or either is missing). ``graph``, ``labels`` and ``predictions`` (``-1``: none) cover the
    whole run, so training neighbours vote; see the module docstring."""
    rows = np.asarray(rows, dtype=np.int64)
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    label, prediction = labels[rows], predictions[rows]
    error = (label >= 0) & (prediction >= 0) & (label != prediction)
    neighbours = graph.indices[rows]
    weights = np.clip(graph.sims[rows], 0, None) ** power
    total = np.maximum(weights.sum(axis=1), 1e-12)
    same_label = labels[neighbours] == label[:, None]
    shares = {  # the share of the vote: for the prediction, for the label, for the label with the same confusion
        "prediction": (weights * (labels[neighbours] == prediction[:, None])).sum(axis=1) / total,
        "label": (weights * same_label).sum(axis=1) / total,
        "repeated": (weights * (same_label & (predictions[neighbours] == prediction[:, None]))).sum(axis=1) / total,
    }
    model = (shares["label"] > BACKED) | (shares["repeated"] >= REPEATED)
    kinds = np.where(model, "model", np.where(shares["prediction"] > BACKED, "label", "ambiguous"))
    return np.where(error, kinds, "").astype(object)
