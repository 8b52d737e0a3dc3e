"""What lookalike asks of a Qdrant server or cluster, checked on the requests it sends (no Qdrant server can run
here): the collection's layout from configs/qdrant-cluster.yaml, upserts under the request limit, retries
with backoff on transient failures, read consistency and search parameters on every query."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from qdrant_client import models as m
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

import lookalike.index.server
from lookalike.config import load_config
from lookalike.exceptions import IndexUnreachableError
from lookalike.index import QdrantIndex

CLUSTER = Path(__file__).parents[1] / "configs" / "qdrant-cluster.yaml"


class Recorder:
    """A stand-in for qdrant-client's QdrantClient: records each call; ``failures`` makes the next calls of a
    method raise, ``answers`` what a method returns."""

    def __init__(self, failures: dict[str, list[Exception]] | None = None,
                 answers: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.failures = failures or {}
        self.answers = answers or {}

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            if self.failures.get(name):
                raise self.failures[name].pop(0)
            if name in self.answers:
                return self.answers[name]
            if name == "collection_exists":
                return False
            if name == "query_batch_points":
                return [SimpleNamespace(points=[]) for _ in kwargs["requests"]]
            if name == "query_points":
                return SimpleNamespace(points=[])
            return None

        return call

    def of(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for called, _, kwargs in self.calls if called == name]


def _index(client: Recorder, dim: int = 512) -> QdrantIndex:
    return QdrantIndex(client, "c", dim, where="http://qdrant-0:6333", settings=load_config(CLUSTER).index)


def test_the_cluster_config_lays_out_the_collection() -> None:
    client = Recorder()
    _index(client)
    (created,) = client.of("create_collection")
    assert created["shard_number"] == 6 and created["replication_factor"] == 2
    assert created["write_consistency_factor"] == 1 and created["on_disk_payload"] is True
    assert created["vectors_config"] == m.VectorParams(size=512, distance=m.Distance.COSINE, on_disk=True)
    assert created["hnsw_config"] == m.HnswConfigDiff(m=16, ef_construct=128)
    assert created["quantization_config"].scalar.type == m.ScalarType.INT8
    indexed = [args[1:] for name, args, _ in client.calls if name == "create_payload_index"]
    assert indexed == [(key, m.PayloadSchemaType.KEYWORD) for key in ("label", "split", "tags")]


def test_binary_quantization_and_server_defaults() -> None:
    client = Recorder()
    QdrantIndex(client, "c", 8, settings=load_config(overrides={"index": {"quantization": "binary"}}).index)
    (created,) = client.of("create_collection")
    assert isinstance(created["quantization_config"], m.BinaryQuantization)
    assert created["shard_number"] is None and created["replication_factor"] is None  # the server decides


def test_upserts_stay_under_the_request_limit() -> None:
    client = Recorder()
    index = _index(client)
    index.settings.request_mb = 1
    rng = np.random.default_rng(0)
    n = 1500
    ids = [f"{i:024x}" for i in range(n)]
    payloads = [{"label": "a" * 50, "split": "train", "tags": ["x"] * 5, "filepath": "/data/" + "p" * 80}] * n
    index.upsert(ids, rng.normal(size=(n, 512)).astype(np.float32), payloads)
    sent = client.of("upsert")
    assert len(sent) > 1 and sum(len(call["points"]) for call in sent) == n
    for call in sent:
        body = json.dumps({"points": [p.model_dump(mode="json") for p in call["points"]]})
        assert len(body) <= 1_000_000  # what the server receives, under the limit
        assert call["wait"] is True and call["ordering"] == m.WriteOrdering.MEDIUM


def test_transient_failures_are_retried_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(lookalike.index.server.time, "sleep", waits.append)
    busy = UnexpectedResponse(503, "Service Unavailable", b"", httpx.Headers())
    client = Recorder({"upsert": [ResponseHandlingException(ConnectionError("reset")), busy]})
    index = _index(client, dim=4)
    index.upsert(["a" * 24], np.ones((1, 4), np.float32), [{}])
    assert len(client.of("upsert")) == 3 and waits == [0.5, 1.0]
    client.failures["upsert"] = [ResponseHandlingException(ConnectionError("reset"))] * 9
    with pytest.raises(IndexUnreachableError, match=r"qdrant-0:6333 failed 6 times"):
        index.upsert(["a" * 24], np.ones((1, 4), np.float32), [{}])
    bad = UnexpectedResponse(400, "Bad Request", b"wrong vector size", httpx.Headers())  # not transient: at once
    client.failures["upsert"] = [bad]
    with pytest.raises(UnexpectedResponse):
        index.upsert(["a" * 24], np.ones((1, 4), np.float32), [{}])
    assert len(client.of("upsert")) == 3 + 6 + 1


def test_every_request_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not upserts and queries only: payload changes, deletions, scrolls, retrievals and counts cross the same
    network (a tag written during a rolling restart must not be lost to one dropped connection)."""
    monkeypatch.setattr(lookalike.index.server.time, "sleep", lambda _: None)
    names = ("set_payload", "delete", "scroll", "retrieve", "count", "delete_collection")
    sid = "a" * 24
    client = Recorder({name: [ResponseHandlingException(ConnectionError("reset"))] for name in names}, answers={
        "scroll": ([SimpleNamespace(payload={"sample_id": sid, "label": "cat"})], None),
        "retrieve": [SimpleNamespace(payload={"sample_id": sid}, vector=[1.0, 0.0, 0.0, 0.0])],
        "count": SimpleNamespace(count=1)})
    index = _index(client, dim=4)
    index.set_payloads([sid], [{"tags": ["x"]}])
    index.delete([sid])
    assert index.payloads() == {sid: {"sample_id": sid, "label": "cat"}} and index.count() == 1
    assert index.vectors([sid]).tolist() == [[1.0, 0.0, 0.0, 0.0]]
    index.drop()
    assert {name: len(client.of(name)) for name in names} == dict.fromkeys(names, 2)


def test_queries_carry_read_consistency_and_search_parameters() -> None:
    client = Recorder()
    index = _index(client, dim=4)
    index.query(np.ones((2, 4), np.float32), 5, where={"split": "train"})
    index.recommend(np.ones((1, 4), np.float32), np.zeros((0, 4), np.float32), 5)
    (batch,) = client.of("query_batch_points")
    (single,) = client.of("query_points")
    assert batch["consistency"] == single["consistency"] == m.ReadConsistencyType.MAJORITY
    for params in [r.params for r in batch["requests"]] + [single["search_params"]]:
        assert params.hnsw_ef == 128 and params.quantization.rescore is True
    numbered = Recorder()
    QdrantIndex(numbered, "c", 4, settings=load_config(overrides={"index": {"read_consistency": "2"}}).index).query(
        np.ones((1, 4), np.float32), 1)
    assert numbered.of("query_batch_points")[0]["consistency"] == 2
    plain = Recorder()
    QdrantIndex(plain, "c", 4).query(np.ones((1, 4), np.float32), 1)  # the defaults: nothing extra is asked
    assert "consistency" not in plain.of("query_batch_points")[0]
    assert plain.of("query_batch_points")[0]["requests"][0].params is None
