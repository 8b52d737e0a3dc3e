from __future__ import annotations

import numpy as np
import pytest

from lookalike.exceptions import ConfigError
from lookalike.graph import exact_knn
from lookalike.label_issues import find_mislabels
from lookalike.probe import out_of_sample_probs


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
    """5 members of a rare class at the edge of a crowd: the class is not flagged wholesale (at most its member
    deepest in the crowd, whose own-class share of the votes is a quarter of its classmates'), nor is the crowd,
    with the neighbours alone or with the probe."""
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
    for probe in (None, out_of_sample_probs(v, labels, 2)[0]):
        result = find_mislabels(graph, labels, probe_probs=probe)
        assert not result.flag[:200].any() and result.flag[200:].sum() <= 1


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


def test_the_probe_finds_a_mislabeled_clump_its_neighbours_vouch_for() -> None:
    """8 near copies labeled 1 at the heart of class 0: their nearest neighbours are each other, so the votes
    back the wrong label; the probe knows where class 0 lies and flags all 8, suggesting 0, and nothing else."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    a[:, 0] += 4
    b[:, 0] -= 4
    clump = rng.normal(size=(8, 16)) * 0.02
    clump[:, 0] += 4
    v = np.concatenate([a, b, clump])
    v[:, 1] += 6  # off the origin, so the cosine neighbours are the Euclidean ones
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    labels = np.array([0] * 300 + [1] * 300 + [1] * 8)
    graph = exact_knn(v, 20)
    assert not find_mislabels(graph, labels).flag.any()  # the neighbours alone vouch for the clump
    probe, _ = out_of_sample_probs(v, labels, 2)
    result = find_mislabels(graph, labels, probe_probs=probe)
    assert result.flag[600:].all() and not result.flag[:600].any()
    assert (result.suggested[600:] == 0).all()


def test_the_probe_leaves_out_what_it_cannot_judge() -> None:
    v, labels = _clusters(seed=3)
    labels = labels.copy()
    labels[:5] = -1  # unlabeled
    labels[5] = 7  # the only member of its class
    probs, c = out_of_sample_probs(v, labels, 8)
    assert np.isnan(probs[:6]).all() and np.isfinite(probs[6:]).all() and c > 0
    assert np.allclose(probs[6:].sum(axis=1), 1, atol=1e-4)
    assert (probs[6:].argmax(axis=1) == labels[6:]).mean() > 0.9  # separable clusters: the probe gets them
    only_one_class = np.where(labels >= 0, 0, -1)
    assert np.isnan(out_of_sample_probs(v, only_one_class, 1)[0]).all()


def test_the_probe_reports_every_fit_including_the_last_on_all_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import lookalike.probe as probe

    monkeypatch.setattr(probe, "SELECT_MAX", 60)  # C chosen on a sample, then one more K-fold on every row
    v, labels = _clusters(seed=4)
    calls: list[tuple[int, int]] = []
    _, c = probe.out_of_sample_probs(v, labels, 3, progress=lambda done, total: calls.append((done, total)))
    tried = min(probe.C_GRID.index(c) + 2, len(probe.C_GRID))  # the search stops one past the best
    fits = [done for done, _ in calls[:-1]]
    assert fits == list(range(1, probe.DEFAULT_FOLDS * (tried + 1) + 1))
    assert calls[-1][0] == calls[-1][1] == calls[0][1]


def test_the_probe_gives_the_same_probabilities_whatever_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """A threaded sum adds in another order, and L-BFGS amplified that to 0.003 in the probabilities between 1
    and 2 threads (one suspect more or less on the demo); the fixed split into single-threaded chunks does not."""
    import torch

    import lookalike.probe as probe

    monkeypatch.setattr(probe, "CHUNK_ROWS", 500, raising=False)  # several chunks, as at scale
    rng = np.random.default_rng(4)
    v = rng.normal(size=(1500, 1280)).astype(np.float32)  # 12,810 weights: sums over them run threaded
    labels = rng.integers(0, 10, 1500)  # no structure: a long, ill-conditioned fit, where differences grow
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append(out_of_sample_probs(v, labels, 10)[0])
            assert torch.get_num_threads() == threads  # given back as it was
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(runs[0], runs[1])
