from __future__ import annotations

import numpy as np
import pytest

from lookalike.exceptions import ConfigError
from lookalike.graph import exact_knn
from lookalike.label_issues import find_mislabels


def _clusters(seed: int = 0, per: int = 40, classes: int = 3, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    labels = np.repeat(np.arange(classes), per)
    v = centres[labels] + rng.normal(size=(len(labels), dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32), labels


def test_the_planted_mislabel_ranks_first_with_the_right_suggestion() -> None:
    v, labels = _clusters()
    noisy = labels.copy()
    noisy[7] = 2  # a class-0 sample labelled 2
    result = find_mislabels(exact_knn(v, 20), noisy)
    assert int(np.nanargmax(result.score)) == 7
    assert result.flag[7] and result.suggested[7] == 0
    assert result.flag.sum() == 1
    assert np.nanmin(result.score) >= 0 and np.nanmax(result.score) <= 1


def test_a_small_class_is_not_outvoted_by_a_large_one() -> None:
    """5 members of a rare class at the edge of a crowd: neither they nor the crowd are suspects."""
    rng = np.random.default_rng(1)
    offset = np.zeros(8)
    offset[0] = 1.2
    big = rng.normal(size=(200, 8)) * 0.6 + 2.0
    rare = rng.normal(size=(5, 8)) * 0.3 + 2.0 + offset
    v = np.concatenate([big, rare])
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    labels = np.array([0] * 200 + [1] * 5)
    graph = exact_knn(v, 20)
    assert (labels[graph.indices[200:]] == 0).sum() >= 50  # the crowd dominates the rare class's neighbours
    result = find_mislabels(graph, labels)
    assert not result.flag.any()


def test_unlabeled_samples_neither_vote_nor_get_scored() -> None:
    v, labels = _clusters(seed=2)
    noisy = labels.copy()
    noisy[:10] = -1
    noisy[50] = 0  # a class-1 sample labelled 0
    result = find_mislabels(exact_knn(v, 20), noisy, n_classes=3)
    assert np.isnan(result.score[:10]).all() and not result.flag[:10].any()
    assert int(np.nanargmax(result.score)) == 50


def test_model_predictions_sharpen_the_vote() -> None:
    v, labels = _clusters(seed=3)
    noisy = labels.copy()
    noisy[5] = 1
    pred = np.eye(3)[labels] * 0.9 + 0.1 / 3
    with_model = find_mislabels(exact_knn(v, 20), noisy, pred_probs=pred)
    assert int(np.nanargmax(with_model.score)) == 5 and with_model.suggested[5] == 0
    with pytest.raises(ConfigError, match="pred_probs"):
        find_mislabels(exact_knn(v, 20), noisy, pred_probs=pred[:, :2])
    with pytest.raises(ConfigError, match="one entry per graph row"):
        find_mislabels(exact_knn(v, 20), noisy[:-1])
