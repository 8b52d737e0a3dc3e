"""A linear probe: out-of-sample class probabilities of every labeled sample from logistic regression on its
vector, what cleanlab recommends feeding its label-issue filter (``cleanlab.filter.find_label_issues``).

Each sample's probabilities come from a model that never saw it (stratified K-fold, seeded); the
regularisation is the one with the lowest cross-validated log-loss on the given labels, chosen on at most
``SELECT_MAX`` samples. Features are standardised inside each fold. Pure NumPy + scikit-learn.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from .exceptions import ConfigError

DEFAULT_FOLDS = 5
C_GRID = (0.01, 0.1, 1.0)  # inverse regularisation strengths tried (benchmarks/mislabels.py)
SELECT_MAX = 20_000  # samples the regularisation is chosen on


def _fold_probs(x: np.ndarray, y: np.ndarray, n_classes: int, folds: int, c: float, seed: int,
                step: Callable[[], None] | None = None) -> np.ndarray:
    """Out-of-sample probabilities (n, n_classes) of a K-fold logistic regression at strength ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.zeros((len(y), n_classes), dtype=np.float32)
    with warnings.catch_warnings():  # a class with fewer members than folds: some folds do without it
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    for train, test in splits:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=200, random_state=seed))
        model.fit(x[train], y[train])
        out[np.ix_(test, model.classes_)] = model.predict_proba(x[test])  # a class missing from a fold gets 0
        if step:
            step()
    return out


def out_of_sample_probs(vectors: np.ndarray, labels: np.ndarray, n_classes: int, folds: int = DEFAULT_FOLDS,
                        seed: int = 0, progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, float]:
    """Each labeled sample's class probabilities from a probe that did not see it, and the strength C
    chosen. Rows it cannot judge are NaN: unlabeled ones (``labels == -1``) and those of a class with a
    single member (all of them where fewer than two classes have two). ``progress(done, total)`` counts
    model fits."""
    labels = np.asarray(labels)
    if len(vectors) != len(labels):
        raise ConfigError(f"{len(vectors)} vectors but {len(labels)} labels")
    probs = np.full((len(labels), n_classes), np.nan, dtype=np.float32)
    counts = np.bincount(labels[labels >= 0], minlength=n_classes)
    rows = np.flatnonzero((labels >= 0) & (counts[np.maximum(labels, 0)] >= 2))
    if np.count_nonzero(counts >= 2) < 2:
        return probs, float("nan")
    x, y = np.asarray(vectors, dtype=np.float32)[rows], labels[rows]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(y), SELECT_MAX, replace=False)) if len(y) > SELECT_MAX else np.arange(len(y))
    total = folds * (len(C_GRID) + (len(chosen) < len(y)))
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    best_c, best_loss, best = C_GRID[0], np.inf, np.zeros(0)
    for c in C_GRID:
        p = _fold_probs(x[chosen], y[chosen], n_classes, folds, c, seed, step)
        loss = float(-np.log(np.clip(p[np.arange(len(chosen)), y[chosen]], 1e-12, None)).mean())
        if loss < best_loss:
            best_c, best_loss, best = c, loss, p
    probs[rows] = best if len(chosen) == len(y) else _fold_probs(x, y, n_classes, folds, best_c, seed, step)
    return probs, best_c
