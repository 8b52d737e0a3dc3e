"""A linear probe: out-of-sample class probabilities of every labeled sample from logistic regression on its
vector, what cleanlab recommends feeding its label-issue filter (``cleanlab.filter.find_label_issues``).

Each sample's probabilities come from a model that never saw it (stratified K-fold, seeded); the
regularisation is the one with the lowest cross-validated log-loss on the given labels, chosen on at most
``SELECT_MAX`` samples. Features are standardised inside each fold. Fitted in torch (L-BFGS, the objective
scikit-learn's ``LogisticRegression`` minimises), folds from scikit-learn.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from .exceptions import ConfigError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_FOLDS = 5
# Inverse regularisation strengths tried, strongest first, until the log-loss rises: on Fashion-MNIST and
# the textiles (1,280-d EfficientNet vectors) it was lowest at 0.001-0.003 and rose from there.
C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
SELECT_MAX = 20_000  # samples the regularisation is chosen on
MAX_ITER = 100  # L-BFGS iterations per fit
CHUNK_ROWS = 2048  # rows whose loss and gradient one thread computes (a fixed split: see _fit)
FIT_MAX = 100_000  # rows a fold trains on (and reads at once): 0.5 GB of 1,280-d vectors


def _fit(x: torch.Tensor, y: torch.Tensor, n_classes: int, c: float, init: torch.Tensor | None) -> torch.Tensor:
    """Multinomial logistic regression weights (d + 1, n_classes), bias last: the minimum of the mean
    cross-entropy plus ``|W|^2 / (2 c n)`` (scikit-learn's objective for ``C = c``), by L-BFGS.

    The loss and its gradient are sums over row chunks of ``CHUNK_ROWS``, each computed in one thread and added
    in order (:func:`_one_thread_each`), so they come out the same whatever the number of cores: a product split
    across threads sums in another order, and L-BFGS amplifies that (0.003 in the probabilities between 1 and 2
    threads, 0.0008 even in float64)."""
    import torch

    w = (init.clone() if init is not None else torch.zeros(x.shape[1] + 1, n_classes))
    parts = [(x[a:a + CHUNK_ROWS], y[a:a + CHUNK_ROWS]) for a in range(0, len(y), CHUNK_ROWS)]
    penalty = 1 / (2 * c * len(y))

    def part(chunk: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        xc, yc = chunk
        logp = torch.log_softmax(xc @ w[:-1] + w[-1], dim=1)
        rows = torch.arange(len(yc))
        error = logp.exp()
        error[rows, yc] -= 1  # d(-log p_y)/d(logits)
        return -logp[rows, yc].sum(), torch.cat([xc.T @ error, error.sum(dim=0, keepdim=True)])

    threads = torch.get_num_threads()

    def loss() -> torch.Tensor:
        total, grad = torch.zeros(()), torch.zeros_like(w)
        for part_loss, part_grad in _one_thread_each(part, parts, threads):  # in order
            total += part_loss
            grad += part_grad
        ridge = w.clone()
        ridge[-1] = 0  # the bias is not penalised
        w.grad = grad / len(y) + 2 * penalty * ridge
        return total / len(y) + penalty * w[:-1].square().sum()

    w.requires_grad_(False)
    optimiser = torch.optim.LBFGS([w], max_iter=MAX_ITER, history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-6, tolerance_change=1e-9)
    torch.set_num_threads(1)  # L-BFGS's own dot products too: a threaded sum differs in its last bits
    try:
        with torch.no_grad():
            optimiser.step(loss)
    finally:
        torch.set_num_threads(threads)
    return w


def _probs(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.softmax(x @ w[:-1] + w[-1], dim=1)


def _one_thread_each(work: Callable[[T], R], items: list[T], threads: int) -> list[R]:
    """``work`` on each item, each computed in one thread, ``threads`` at a time; results in order."""
    import torch

    def alone(item: T) -> R:
        torch.set_num_threads(1)  # OpenMP's setting is each thread's own: set in the thread that computes
        return work(item)

    if len(items) == 1 or threads == 1:
        before = torch.get_num_threads()
        try:
            return [alone(item) for item in items]
        finally:
            torch.set_num_threads(before)
    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(alone, items))


def _fold_probs(vectors: np.ndarray, rows: np.ndarray, y: np.ndarray, n_classes: int, folds: int, c: float,
                seed: int, init: list[torch.Tensor] | None = None, step: Callable[[], None] | None = None,
                ) -> tuple[np.ndarray, list[torch.Tensor]]:
    """Out-of-sample probabilities (len(rows), n_classes) of a K-fold logistic regression at strength ``c``
    over ``vectors[rows]`` (labels ``y``), and each fold's weights (a warm start for the next strength).
    Each fold trains on at most ``FIT_MAX`` of the other folds' rows and reads the rest a chunk at a time:
    ``vectors`` may be a memory map larger than memory."""
    import torch
    from sklearn.model_selection import StratifiedKFold

    with warnings.catch_warnings():  # a class with fewer members than folds: some folds do without it
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    rng = np.random.default_rng(seed)
    out = np.zeros((len(y), n_classes), dtype=np.float32)
    weights = []
    threads = torch.get_num_threads()
    for f, (train, test) in enumerate(splits):
        if len(train) > FIT_MAX:
            train = np.sort(rng.choice(train, FIT_MAX, replace=False))
        x = np.asarray(vectors[rows[train]], dtype=np.float32)
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6  # standardised on the fold's own rows
        w = _fit(torch.from_numpy((x - mean) / std), torch.from_numpy(y[train]), n_classes, c,
                 init[f] if init else None)
        del x
        for start in range(0, len(test), FIT_MAX):
            part = test[start:start + FIT_MAX]
            held = torch.from_numpy((np.asarray(vectors[rows[part]], dtype=np.float32) - mean) / std)
            chunks = [held[a:a + CHUNK_ROWS] for a in range(0, len(held), CHUNK_ROWS)]
            with torch.no_grad():
                out[part] = torch.cat(_one_thread_each(functools.partial(_probs, w), chunks, threads)).numpy()
        weights.append(w)
        if step:
            step()
    return out, weights


def out_of_sample_probs(vectors: np.ndarray, labels: np.ndarray, n_classes: int, folds: int = DEFAULT_FOLDS,
                        seed: int = 0, progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, float]:
    """Each labeled sample's class probabilities from a probe that did not see it, and the strength C
    chosen. Rows it cannot judge are NaN: unlabeled ones (``labels == -1``) and those of a class with a
    single member (all of them where fewer than two classes have two). ``vectors`` may be a memory map.
    ``progress(done, total)`` counts model fits."""
    labels = np.asarray(labels)
    if len(vectors) != len(labels):
        raise ConfigError(f"{len(vectors)} vectors but {len(labels)} labels")
    probs = np.full((len(labels), n_classes), np.nan, dtype=np.float32)
    counts = np.bincount(labels[labels >= 0], minlength=n_classes)
    rows = np.flatnonzero((labels >= 0) & (counts[np.maximum(labels, 0)] >= 2))
    if np.count_nonzero(counts >= 2) < 2:
        return probs, float("nan")
    y = labels[rows]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(y), SELECT_MAX, replace=False)) if len(y) > SELECT_MAX else np.arange(len(y))
    total = folds * (len(C_GRID) + (len(chosen) < len(y)))  # at most: the search stops past the best
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    best_c, best_loss, best = C_GRID[0], np.inf, np.zeros(0)
    weights = None
    for c in C_GRID:  # strongest regularisation first, each fit started from the last
        p, weights = _fold_probs(vectors, rows[chosen], y[chosen], n_classes, folds, c, seed, weights, step)
        loss = float(-np.log(np.clip(p[np.arange(len(chosen)), y[chosen]], 1e-12, None)).mean())
        if loss >= best_loss:
            break  # past the best strength
        best_c, best_loss, best = c, loss, p
    if len(chosen) < len(y):  # chosen on a sample: the out-of-sample probabilities of every row, at that C
        best = _fold_probs(vectors, rows, y, n_classes, folds, best_c, seed, step=step)[0]
    probs[rows] = best
    if progress:
        progress(total, total)
    return probs, best_c
