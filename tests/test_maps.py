"""The map beyond its fitting size: a seeded sample is laid out by UMAP and clustered, every other row is
placed among its neighbours and takes the cluster of its nearest sampled point."""

from __future__ import annotations

import numpy as np

from lookalike.graph import exact_knn
from lookalike.maps import clusters, layout


def _planted(n: int = 1200, groups: int = 4, dim: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(groups, dim)).astype(np.float32)
    group = rng.integers(0, groups, n)
    v = centres[group] + 0.15 * rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True), group


def test_a_map_fitted_on_a_sample_places_every_row_with_its_own_group() -> None:
    v, group = _planted()
    graph = exact_knn(v, 15)
    points = layout(v, graph, seed=0, fit_max=300)
    assert points.shape == (len(v), 2) and np.isfinite(points).all()
    assert np.array_equal(points, layout(v, graph, seed=0, fit_max=300))  # seeded
    # Each row lies nearer its own group's centre than any other group's (the groups are far apart).
    centres = np.stack([points[group == g].mean(axis=0) for g in range(4)])
    nearest_centre = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    assert (nearest_centre == group).mean() > 0.99

    found = clusters(points, min_size=30, seed=0, fit_max=300)
    assert len(found) == len(v)
    # Every planted group is one cluster, whether its rows were sampled or placed.
    for g in range(4):
        values, counts = np.unique(found[group == g], return_counts=True)
        assert values[np.argmax(counts)] != -1 and counts.max() / counts.sum() > 0.95
    assert len({int(np.bincount(found[group == g] + 1).argmax()) for g in range(4)}) == 4
