from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.exceptions import ConfigError
from lookalike.graph import KnnGraph, exact_knn


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_matches_brute_force_across_block_boundaries() -> None:
    v = _unit(np.random.default_rng(0), 300, 16)
    graph = exact_knn(v, 7, block=64)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(graph.indices, expected)
    np.testing.assert_allclose(graph.sims, np.take_along_axis(sims, expected, axis=1), atol=1e-6)
    assert (np.diff(graph.sims, axis=1) <= 1e-7).all()


def test_planted_copy_is_the_nearest_neighbour_and_self_is_never_listed() -> None:
    rng = np.random.default_rng(1)
    v = _unit(rng, 50, 32)
    v[17] = v[3] + 0.01 * rng.normal(size=32).astype(np.float32)  # row 17: a near copy of row 3
    v[17] /= np.linalg.norm(v[17])
    v[40] = v[8]  # row 40: an exact copy of row 8
    graph = exact_knn(v, 3)
    assert graph.indices[3, 0] == 17 and graph.indices[17, 0] == 3
    assert graph.indices[8, 0] == 40 and graph.indices[40, 0] == 8
    assert graph.sims[8, 0] == pytest.approx(1.0, abs=1e-6)
    assert not (graph.indices == np.arange(50)[:, None]).any()


def test_round_trip_and_validation(tmp_path: Path) -> None:
    v = _unit(np.random.default_rng(2), 20, 8)
    graph = exact_knn(v, 4)
    ids = [f"{i:024x}" for i in range(20)]
    graph.save(tmp_path / "g.npz", ids)
    again, again_ids = KnnGraph.load(tmp_path / "g.npz")
    np.testing.assert_array_equal(again.indices, graph.indices)
    assert again.k == 4 and again_ids == ids
    np.testing.assert_array_equal(again.first(2).sims, graph.sims[:, :2])
    with pytest.raises(ConfigError, match="between 1 and n - 1"):
        exact_knn(v, 20)
    with pytest.raises(ConfigError, match="2-D"):
        exact_knn(v[0], 2)
    bad = v.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        exact_knn(bad, 2)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_update_equals_recomputing_after_adds_changes_and_removals(precision: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import lookalike.graph as graph
    from lookalike.graph import update_knn

    monkeypatch.setattr(graph, "MERGE_ROWS", 64)  # the untouched rows merge in several chunks

    rng = np.random.default_rng(4)
    old_v = _unit(rng, 400, 16)
    old = exact_knn(old_v, 8)
    # Keep 350 old samples (in a new order), change 20 of them, add 60 new ones; 50 are gone.
    keep = rng.permutation(400)[:350]
    new_v = np.concatenate([old_v[keep], _unit(rng, 60, 16)])
    old_rows = np.concatenate([keep, np.full(60, -1)])
    changed = rng.choice(350, 20, replace=False)
    new_v[changed] = _unit(rng, 20, 16)
    old_rows[changed] = -1
    updated = update_knn(old, old_rows, new_v, 8, precision=precision)
    fresh = exact_knn(new_v, 8, precision="fp32")
    np.testing.assert_allclose(updated.sims, fresh.sims, atol=1e-5)
    assert (updated.indices == fresh.indices).mean() > 0.999  # ties may order differently


def test_approximate_graph_recall_is_measured_against_exact() -> None:
    from lookalike.graph import approximate_knn, knn, recall

    rng = np.random.default_rng(5)
    centres = _unit(rng, 20, 32)
    v = centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    graph = approximate_knn(v, 10)
    assert graph.indices.shape == (3000, 10)
    assert not (graph.indices == np.arange(3000)[:, None]).any()
    rows = np.arange(0, 3000, 10)
    assert recall(graph, v, rows) > 0.9
    assert recall(exact_knn(v, 10), v, rows) == 1.0
    assert knn(v, 10, exact_max=5000).sims.tolist() == exact_knn(v, 10).sims.tolist()


def _clustered(rng: np.random.Generator, n: int, d: int, spread: float) -> np.ndarray:
    """Tight clusters: many neighbours within bf16's rounding (about 0.002 at cosine 0.9) of each other."""
    centres = _unit(rng, 12, d)
    v = centres[rng.integers(0, 12, n)] + spread * rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("block", [None, 97])
def test_bf16_graph_equals_the_fp32_graph(block: int | None) -> None:
    v = _clustered(np.random.default_rng(6), 1500, 64, 0.05)
    v[700] = v[3]  # planted: an exact copy and a near copy
    v[900] = v[5] + 1e-3
    v[900] /= np.linalg.norm(v[900])
    fp32 = exact_knn(v, 20, block=block, precision="fp32")
    bf16 = exact_knn(v, 20, block=block, precision="bf16")
    # The same top-1 everywhere: the same row, or its planted exact copy (a tie).
    assert (v[bf16.indices[:, 0]] == v[fp32.indices[:, 0]]).all()
    same = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(fp32.indices, bf16.indices, strict=True)])
    assert same >= 0.999  # only exact ties may differ
    np.testing.assert_allclose(bf16.sims, fp32.sims, atol=1e-5)  # re-scored in fp32, not bf16's 3 digits
    assert bf16.indices[3, 0] == 700 and bf16.indices[5, 0] == 900
    assert not (bf16.indices == np.arange(1500)[:, None]).any()


def test_rows_bf16_cannot_certify_are_searched_again_in_fp32(monkeypatch: pytest.MonkeyPatch,
                                                             lookalike_log: pytest.LogCaptureFixture) -> None:
    import lookalike.graph as graph

    v = _clustered(np.random.default_rng(7), 800, 32, 0.02)
    monkeypatch.setattr(graph, "LOW_PRECISION_MARGIN", 1)  # too few candidates to certify most rows
    monkeypatch.setattr(graph, "WIDER_MARGIN", 2)
    bf16 = exact_knn(v, 15, precision="bf16")
    fp32 = exact_knn(v, 15, precision="fp32")
    np.testing.assert_allclose(bf16.sims, fp32.sims, atol=1e-5)
    assert "searched again in fp32" in lookalike_log.text
    with pytest.raises(ConfigError, match="unknown precision"):
        exact_knn(v, 3, precision="fp8")


def test_two_stage_top_k_equals_torch_top_k() -> None:
    import torch

    from lookalike.graph import _top

    for columns in (6400, 6421):  # whole chunks only, and a remainder past the last one
        scores = torch.from_numpy(np.random.default_rng(8).normal(size=(50, columns)).astype(np.float32))
        scores[7, -3] = 99.0  # planted in the remainder
        values, cols = _top(scores, 40)
        expected = torch.topk(scores, 40, dim=1)
        np.testing.assert_array_equal(values.numpy(), expected.values.numpy())
        np.testing.assert_array_equal(cols.numpy(), expected.indices.numpy())
        assert cols[7, 0] == columns - 3


def test_the_same_vectors_give_the_same_graph_whatever_the_path_and_threads() -> None:
    """bf16 candidates re-scored, fp32 products, 1 or 2 threads, exact or approximate search of the same rows:
    one graph, bit for bit; ties (copies of a row) ordered by row number."""
    import torch

    from lookalike.graph import approximate_knn

    rng = np.random.default_rng(6)
    v = rng.normal(size=(600, 64)).astype(np.float32)
    v[100:104] = v[99]  # four copies of row 99: their cosines to any row tie exactly
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    before = torch.get_num_threads()
    graphs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            graphs += [exact_knn(v, 8, precision=p) for p in ("fp32", "bf16")]
    finally:
        torch.set_num_threads(before)
    for g in graphs[1:]:
        assert np.array_equal(g.indices, graphs[0].indices) and np.array_equal(g.sims, graphs[0].sims)
    assert list(graphs[0].indices[99, :4]) == [100, 101, 102, 103]  # the copies, in row order
    assert list(graphs[0].indices[100, :4]) == [99, 101, 102, 103]
    approximate = approximate_knn(v, 8, precision="fp32")
    same = (approximate.indices == graphs[0].indices).all(axis=1)
    assert np.array_equal(approximate.sims[same], graphs[0].sims[same])  # the rows it finds whole: the same bits
