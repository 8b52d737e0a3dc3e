"""A Qdrant server or cluster by URL (+ API key) through qdrant-client's query API, every request retried with
backoff; also runs on qdrant-client's local mode (``path=``), which is how the tests exercise it offline."""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import IndexMismatchError, IndexUnreachableError
from .base import (
    _RETRIEVE_BATCH,
    _UPSERT_BATCH,
    PAYLOAD_KEYS,
    Hit,
    T,
    Where,
    _alike,
    _check_vectors,
    _hits,
    _payload_id,
    _retrieved,
    point_id,
)

if TYPE_CHECKING:
    from ..config import IndexConfig

log = logging.getLogger(__name__)
POINT_JSON_BYTES = 120  # a point's JSON besides its vector and payload (id, keys, brackets)
FLOAT_JSON_BYTES = 22  # a float32 as JSON text, at most ("-0.0012345678901234567,")
PROBE_TIMEOUT = 4.0  # seconds for a Qdrant server to answer its first request (a wrong URL fails within 5 s)

class QdrantIndex:
    """A collection on a Qdrant server or cluster (or qdrant-client's local mode) via qdrant-client."""

    def __init__(self, client: Any, collection: str, dim: int, where: str = "",
                 settings: IndexConfig | None = None) -> None:
        from qdrant_client import models

        from ..config import IndexConfig

        self.client = client
        self.collection = collection
        self.dim = dim
        self.where = where
        self.settings = s = settings or IndexConfig()
        self._m = models
        try:
            exists = client.collection_exists(collection)
        except Exception as e:
            raise IndexUnreachableError(
                f"cannot reach the Qdrant server at {where or 'the given location'}: {e}. "
                "Check the URL and API key, and that the server is running"
            ) from e
        if exists:
            params = client.get_collection(collection).config.params.vectors
            size = getattr(params, "size", None)
            if size != dim:
                raise IndexMismatchError(
                    f"collection {collection!r} holds {size}-d vectors, but the model gives {dim}-d; "
                    f"rebuild it with `lookalike embed DATASET --rebuild` (drops and refills the collection)"
                )
        else:
            hnsw = (models.HnswConfigDiff(m=s.hnsw_m, ef_construct=s.hnsw_ef_construct)
                    if s.hnsw_m is not None or s.hnsw_ef_construct is not None else None)
            quantization = {
                "scalar": models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
                    type=models.ScalarType.INT8, always_ram=True)),
                "binary": models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True)),
            }.get(s.quantization)
            vectors = models.VectorParams(size=dim, distance=models.Distance.COSINE, on_disk=s.on_disk or None)
            self._send(
                client.create_collection, collection, vectors_config=vectors,
                shard_number=s.shard_number, replication_factor=s.replication_factor,
                write_consistency_factor=s.write_consistency_factor, on_disk_payload=s.on_disk_payload or None,
                hnsw_config=hnsw, quantization_config=quantization)
            with warnings.catch_warnings():  # local mode ignores payload indexes, and says so
                warnings.simplefilter("ignore")
                for key in PAYLOAD_KEYS:
                    self._send(client.create_payload_index, collection, key, models.PayloadSchemaType.KEYWORD)

    @classmethod
    def connect(cls, collection: str, dim: int, url: str | None = None, api_key: str | None = None,
                path: str | None = None, rebuild: bool = False, timeout: float = 60.0,
                settings: IndexConfig | None = None) -> QdrantIndex:
        """Open ``collection`` on the server at ``url``, or in qdrant-client's local mode at ``path``;
        ``rebuild`` drops it first."""
        from qdrant_client import QdrantClient

        where = url or path or ":memory:"
        if url:
            _probe(url, api_key)
            client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout), check_compatibility=False)
        else:
            client = QdrantClient(path=where)
        if rebuild:
            try:
                client.delete_collection(collection)
            except Exception as e:
                raise IndexUnreachableError(f"cannot reach the Qdrant server at {where}: {e}") from e
        return cls(client, collection, dim, where=where, settings=settings)

    def session(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def optimize(self) -> None:
        """Nothing to do: a Qdrant server builds its indexes itself."""

    def count(self) -> int:
        return int(self._send(self.client.count, self.collection, exact=True).count)

    def _send(self, request: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``request(*args, **kwargs)``, sent again after a transient failure (no connection, a timeout, HTTP 429
        or 5xx) up to ``settings.retries`` times, waiting 0.5 s, 1 s, 2 s ... (at most 30 s) between; then an
        IndexUnreachableError naming the server. Every request lookalike sends is idempotent: sending one twice
        leaves what sending it once does."""
        for attempt in range(self.settings.retries + 1):
            try:
                return request(*args, **kwargs)
            except Exception as e:
                if not _transient(e):
                    raise
                if attempt == self.settings.retries:
                    raise IndexUnreachableError(f"the Qdrant server at {self.where} failed {attempt + 1} times: "
                                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
                log.info("Qdrant request failed (%s); trying again", type(e).__name__)
                time.sleep(min(0.5 * 2 ** attempt, 30.0))
        raise AssertionError("unreachable")

    def _read_options(self) -> dict[str, Any]:
        """The read consistency of queries: how many replicas each asks (None: the server's default, one)."""
        rc = self.settings.read_consistency
        if rc is None:
            return {}
        return {"consistency": int(rc) if rc.isdigit() else self._m.ReadConsistencyType(rc)}

    def _search_params(self) -> Any:
        s, m = self.settings, self._m
        quantized = m.QuantizationSearchParams(rescore=s.rescore) if s.quantization != "none" else None
        return m.SearchParams(hnsw_ef=s.search_ef, quantization=quantized) if s.search_ef or quantized else None

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        """Points in requests of at most ``settings.request_mb`` (their JSON size, estimated), each retried."""
        m = self._m
        v = _check_vectors(vectors, self.dim)
        ordering = m.WriteOrdering(self.settings.write_ordering)
        limit = self.settings.request_mb * 1_000_000
        batch: list[Any] = []
        size = 0
        for i, sid in enumerate(ids):
            payload = {"sample_id": sid, **payloads[i]}  # a box's payload names its sample itself
            cost = POINT_JSON_BYTES + self.dim * FLOAT_JSON_BYTES + len(json.dumps(payload, default=str))
            if batch and (size + cost > limit or len(batch) >= _UPSERT_BATCH):
                self._upsert(batch, ordering)
                batch, size = [], 0
            batch.append(m.PointStruct(id=point_id(sid), vector=v[i].tolist(), payload=payload))
            size += cost
        if batch:
            self._upsert(batch, ordering)

    def _upsert(self, points: list[Any], ordering: Any) -> None:
        self._send(self.client.upsert, self.collection, points=points, wait=True, ordering=ordering)

    def set_payloads(self, ids: Sequence[str], changes: Sequence[Mapping[str, Any]]) -> None:
        for change, group in _alike(ids, changes):
            for start in range(0, len(group), _RETRIEVE_BATCH):
                chunk = [point_id(i) for i in group[start:start + _RETRIEVE_BATCH]]
                self._send(self.client.set_payload, self.collection, payload=change, points=chunk, wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            selector = self._m.PointIdsList(points=[point_id(i) for i in ids])
            self._send(self.client.delete, self.collection, points_selector=selector, wait=True)

    def payloads(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        offset = None
        while True:
            records, offset = self._send(self.client.scroll, self.collection, limit=4096, offset=offset,
                                         with_payload=True)
            for r in records:
                out[_payload_id(r.payload)] = dict(r.payload or {})
            if offset is None:
                return out

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        return _retrieved(lambda chunk: self._send(self.client.retrieve, self.collection, chunk, with_payload=True,
                                                   with_vectors=True), ids, self.dim)

    def _filter(self, where: Where | None, exclude: Sequence[str]) -> Any:
        m = self._m
        must: list[Any] = [
            m.FieldCondition(key=key, match=m.MatchValue(value=v) if isinstance(v, str) else m.MatchAny(any=list(v)))
            for key, v in (where or {}).items()
        ]
        must_not: list[Any] = [m.HasIdCondition(has_id=[point_id(i) for i in exclude])] if exclude else []
        return m.Filter(must=must or None, must_not=must_not or None) if must or must_not else None

    def query(self, vectors: np.ndarray, k: int, where: Where | None = None,
              exclude: Sequence[str] = (), min_score: float | None = None) -> list[list[Hit]]:
        m = self._m
        q = _check_vectors(vectors, self.dim)
        flt = self._filter(where, exclude)
        requests = [
            m.QueryRequest(query=row.tolist(), limit=k, filter=flt, with_payload=True, score_threshold=min_score,
                           params=self._search_params())
            for row in q
        ]
        responses = self._send(self.client.query_batch_points, self.collection, requests=requests,
                               **self._read_options())
        return [_hits(r.points) for r in responses]

    def recommend(self, positives: np.ndarray, negatives: np.ndarray, k: int, where: Where | None = None,
                  exclude: Sequence[str] = (), min_score: float | None = None) -> list[Hit]:
        m = self._m
        query = m.RecommendQuery(recommend=m.RecommendInput(
            positive=[r.tolist() for r in _check_vectors(positives, self.dim)],
            negative=[r.tolist() for r in _check_vectors(negatives, self.dim)] if len(negatives) else [],
            strategy=m.RecommendStrategy.BEST_SCORE,
        ))
        response = self._send(
            self.client.query_points, self.collection, query=query, limit=k, with_payload=True,
            query_filter=self._filter(where, exclude), score_threshold=min_score, search_params=self._search_params(),
            **self._read_options())
        return _hits(response.points)

    def drop(self) -> None:
        self._send(self.client.delete_collection, self.collection)


def _transient(error: Exception) -> bool:
    """A failure that sending the request again may cure: no connection, a timeout, HTTP 429 or 5xx."""
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(error, UnexpectedResponse):
        return error.status_code is not None and (error.status_code == 429 or error.status_code >= 500)
    return isinstance(error, ResponseHandlingException | httpx.TransportError | TimeoutError | ConnectionError)


def _probe(url: str, api_key: str | None) -> None:
    """Fail within ``PROBE_TIMEOUT`` s, naming the URL, where no Qdrant server answers there: qdrant-client's
    own timeout (long enough for a big upsert) would let a wrong or hanging address stall every command."""
    import httpx

    try:
        response = httpx.get(url.rstrip("/") + "/collections", headers={"api-key": api_key} if api_key else None,
                             timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as e:
        reason = f"no answer within {PROBE_TIMEOUT:.0f} s" if isinstance(e, httpx.TimeoutException) else str(e)
        raise IndexUnreachableError(f"cannot reach the Qdrant server at {url}: {reason or type(e).__name__}. "
                                    "Check the URL and that the server is running") from e
    if response.status_code in (401, 403):
        raise IndexUnreachableError(f"the Qdrant server at {url} refused the API key (HTTP {response.status_code}); "
                                    "check --qdrant-api-key or LOOKALIKE_QDRANT_API_KEY")
    if response.status_code != 200 or "result" not in response.text:
        raise IndexUnreachableError(f"{url} answered HTTP {response.status_code}, not as a Qdrant server does; "
                                    "check the URL (Qdrant's REST port is 6333)")
