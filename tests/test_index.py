"""Congruence: the exact NumPy index, the embedded Qdrant engine and qdrant-client return the same answers."""

from __future__ import annotations

import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from lookalike.exceptions import IndexMismatchError, IndexUnreachableError
from lookalike.index import EdgeIndex, ExactIndex, QdrantIndex, VectorIndex, open_index, point_id

N, D = 400, 24


@pytest.fixture
def data() -> tuple[list[str], np.ndarray, list[dict]]:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(8, D))
    v = centres[rng.integers(0, 8, N)] + 0.4 * rng.normal(size=(N, D))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"{i:024x}" for i in range(N)]
    payloads = [
        {"label": f"c{i % 3}", "split": "train" if i % 4 else "test", "tags": ["rare"] if i % 7 == 0 else []}
        for i in range(N)
    ]
    return ids, v, payloads


@pytest.fixture
def indexes(tmp_path: Path, data: tuple[list[str], np.ndarray, list[dict]]) -> list[VectorIndex]:
    ids, v, payloads = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qdrant = QdrantIndex.connect("c", D, path=str(tmp_path / "q"))
        out: list[VectorIndex] = [ExactIndex(D), EdgeIndex(tmp_path / "edge", D, "m"), qdrant]
    for ix in out:
        ix.upsert(ids, v, payloads)
    return out


def _ids(rows: list) -> list[list[str]]:
    return [[h.id for h in row] for row in rows]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"where": {"label": "c1"}},
        {"where": {"split": "train", "label": ["c0", "c2"]}},
        {"where": {"tags": "rare"}},
        {"exclude": [f"{i:024x}" for i in range(5)]},
        {"min_score": 0.8},
    ],
)
def test_queries_agree(indexes: list, data: tuple, kwargs: dict) -> None:
    ids, v, payloads = data
    results = [ix.query(v[:6], 10, **kwargs) for ix in indexes]
    reference = results[0]
    assert any(reference), "the query must find something"
    for rows in results[1:]:
        assert _ids(rows) == _ids(reference)
        for row, ref in zip(rows, reference, strict=True):
            np.testing.assert_allclose([h.score for h in row], [h.score for h in ref], atol=1e-5)
    for row in reference:
        for hit in row:
            p = payloads[ids.index(hit.id)]
            assert hit.payload["label"] == p["label"]
            if "where" in kwargs and "label" in kwargs["where"]:
                assert p["label"] in kwargs["where"]["label"]
            if "min_score" in kwargs:
                assert hit.score >= 0.8
            assert hit.id not in kwargs.get("exclude", [])


def test_self_is_nearest_with_cosine_one(indexes: list, data: tuple) -> None:
    ids, v, _ = data
    for ix in indexes:
        top = ix.query(v[10:11], 1)[0][0]
        assert top.id == ids[10]
        assert top.score == pytest.approx(1.0, abs=1e-5)


def test_recommend_agrees_and_pulls_towards_positives(indexes: list, data: tuple) -> None:
    ids, v, _ = data
    results = [ix.recommend(v[:2], v[2:3], 8, exclude=ids[:3]) for ix in indexes]
    assert [h.id for h in results[1]] == [h.id for h in results[0]]
    assert [h.id for h in results[2]] == [h.id for h in results[0]]
    pos_sim = v[[ids.index(h.id) for h in results[0]]] @ v[:2].T
    assert (pos_sim.max(axis=1) > 0.5).all()


def test_update_delete_and_fetch(indexes: list, data: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    import lookalike.index.base

    ids, v, payloads = data
    monkeypatch.setattr(lookalike.index.base, "_RETRIEVE_BATCH", 7)  # vectors come back in chunks, in order
    for ix in indexes:
        np.testing.assert_allclose(ix.vectors(ids[3:6]), v[3:6], atol=1e-6)
        np.testing.assert_allclose(ix.vectors(ids[::-1]), v[::-1], atol=1e-6)
        ix.upsert(ids[:1], v[1:2], [{**payloads[0], "label": "moved"}])
        assert ix.payloads()[ids[0]]["label"] == "moved"
        ix.delete(ids[:10])
        assert ix.count() == N - 10
        with pytest.raises(KeyError):
            ix.vectors(ids[:1])


def test_point_ids_are_stable_uuids() -> None:
    assert point_id("6b03e3093726aafe37e3b375") == point_id("6b03e3093726aafe37e3b375")
    assert point_id("6b03e3093726aafe37e3b375") != point_id("6b03e3093726aafe37e3b376")
    assert len(point_id("not-an-object-id")) == 36


def test_dimension_mismatch_is_refused_with_the_fix(tmp_path: Path) -> None:
    EdgeIndex(tmp_path / "e", 8, "model-a")
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        EdgeIndex(tmp_path / "e", 16, "model-a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = QdrantIndex.connect("c", 8, path=str(tmp_path / "q"))
        q.client.close()
        with pytest.raises(IndexMismatchError, match=r"8-d.*16-d"):
            QdrantIndex.connect("c", 16, path=str(tmp_path / "q"))
    open_index("ds", "model-a", 8, home=tmp_path)
    with pytest.raises(IndexMismatchError):
        open_index("ds", "model-a", 16, home=tmp_path)
    assert open_index("ds", "model-a", 16, home=tmp_path, rebuild=True).dim == 16


def test_unreachable_server_fails_fast_naming_the_url() -> None:
    started = time.monotonic()
    with pytest.raises(IndexUnreachableError, match=r"127\.0\.0\.1:9"):
        QdrantIndex.connect("c", 8, url="http://127.0.0.1:9")
    assert time.monotonic() - started < 5


@contextmanager
def _server(answer: bytes | None) -> Iterator[str]:
    """A local TCP server that accepts and then says ``answer`` (None: nothing, ever); yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            if answer is not None:
                conn.recv(65536)
                conn.sendall(answer)
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


def test_a_hanging_server_fails_within_5_s_naming_the_url() -> None:
    with _server(None) as url:
        started = time.monotonic()
        with pytest.raises(IndexUnreachableError, match=re.escape(url) + ".*no answer within 4 s"):
            QdrantIndex.connect("c", 8, url=url)
        assert time.monotonic() - started < 5


def test_a_server_that_is_not_qdrant_is_named() -> None:
    page = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot here\n"
    with _server(page) as url, pytest.raises(IndexUnreachableError, match=re.escape(url) + " answered HTTP 404"):
        QdrantIndex.connect("c", 8, url=url)




def test_bad_vectors_are_refused(data: tuple) -> None:
    from lookalike.exceptions import ConfigError

    index = ExactIndex(D)
    with pytest.raises(IndexMismatchError, match=r"\(n, 24\)"):
        index.query(np.ones((1, D + 1), np.float32), 1)
    with pytest.raises(ConfigError, match="NaN"):
        index.upsert(["a" * 24], np.full((1, D), np.nan, np.float32), [{}])
    with pytest.raises(ConfigError, match="2-D"):
        index.query(np.ones((1, 1, D), np.float32), 1)


def test_set_payloads_changes_only_those_keys_and_filters_see_them(indexes: list, data: tuple) -> None:
    ids, v, _ = data
    changed = ids[1:4] + ids[10:12]
    changes = [{"tags": ["rare", "checked"]}] * 3 + [{"label": "c9"}, {"label": "c9"}]
    for ix in indexes:
        ix.set_payloads(changed, changes)
        payloads = ix.payloads()
        assert [payloads[sid]["tags"] for sid in changed[:3]] == [["rare", "checked"]] * 3
        assert payloads[ids[10]]["label"] == "c9" and payloads[ids[10]]["split"] == "train"  # the rest kept
        np.testing.assert_allclose(ix.vectors(changed), v[[1, 2, 3, 10, 11]], atol=1e-6)
        hits = ix.query(v[1:2], 10, where={"tags": "checked"})[0]
        assert sorted(h.id for h in hits) == sorted(changed[:3])
        assert {h.id for h in ix.query(v[10:11], 5, where={"label": "c9"})[0]} == set(ids[10:12])
