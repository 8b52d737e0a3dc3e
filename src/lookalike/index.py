"""Vector indexes: one protocol, three placements.

- :class:`ExactIndex` — NumPy brute force in memory; the reference the others are tested against.
- :class:`EdgeIndex` — Qdrant's engine in-process (qdrant-edge), stored in a folder: the default.
  Chosen over qdrant-client's local mode by ``benchmarks/index_stores.py`` (see README).
  The shard is opened per operation (or per :meth:`EdgeIndex.session`) and closed right after, so a
  notebook and the App server can use one store in turn.
- :class:`QdrantIndex` — a Qdrant server or cluster by URL (+ API key) through qdrant-client's query API;
  also runs on qdrant-client's local mode (``path=``), which is how the tests exercise it offline.

Points are keyed by a UUID derived from the row id (the sample id; a box's label id); the payload carries
``sample_id``, ``label``, ``split``, ``tags``, ``filepath`` and ``content_hash`` (a box's also ``label_id``,
``label_tags``, ``box`` and ``box_size``). ``where`` filters (``{"label": "cat"}``,
``{"tags": ["a", "b"]}``: any of) run inside Qdrant.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from .arrays import as_vectors
from .exceptions import IndexError_, IndexMismatchError, IndexUnreachableError

if TYPE_CHECKING:
    from .config import IndexConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

Where = Mapping[str, str | Sequence[str]]
PAYLOAD_KEYS = ("label", "split", "tags")  # indexed for filtering
_UPSERT_BATCH = 1024
_RETRIEVE_BATCH = 16_384  # points retrieved at a time
POINT_JSON_BYTES = 120  # a point's JSON besides its vector and payload (id, keys, brackets)
FLOAT_JSON_BYTES = 22  # a float32 as JSON text, at most ("-0.0012345678901234567,")
STORE_WAIT = 120.0  # seconds to wait for another process to release the embedded store
PROBE_TIMEOUT = 4.0  # seconds for a Qdrant server to answer its first request (a wrong URL fails within 5 s)


@dataclass(frozen=True)
class Hit:
    """A search result: sample id, cosine similarity (or recommendation score) and payload."""

    id: str
    score: float
    payload: dict[str, Any]


class VectorIndex(Protocol):
    """What every index offers. Vectors are L2-normalised float32 rows; scores are cosine similarities."""

    dim: int

    def session(self) -> AbstractContextManager[Any]:
        """Hold the index open across several operations (a no-op where nothing needs holding)."""
        ...

    def optimize(self) -> None:
        """Build the approximate-search graph where the placement leaves that to the caller."""
        ...

    def count(self) -> int: ...

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None: ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def set_payloads(self, ids: Sequence[str], changes: Sequence[Mapping[str, Any]]) -> None:
        """Set the keys in ``changes[i]`` on point ``ids[i]``'s payload, its vector and other keys kept."""
        ...

    def payloads(self) -> dict[str, dict[str, Any]]:
        """Every point's payload by sample id."""
        ...

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Stored vectors of ``ids`` in that order; raises ``KeyError`` for an unknown id."""
        ...

    def query(
        self,
        vectors: np.ndarray,
        k: int,
        where: Where | None = None,
        exclude: Sequence[str] = (),
        min_score: float | None = None,
    ) -> list[list[Hit]]:
        """The ``k`` nearest points to each row of ``vectors``, most similar first."""
        ...

    def recommend(
        self,
        positives: np.ndarray,
        negatives: np.ndarray,
        k: int,
        where: Where | None = None,
        exclude: Sequence[str] = (),
        min_score: float | None = None,
    ) -> list[Hit]:
        """Qdrant's best-score recommendation: near any positive, away from every negative."""
        ...


def point_id(sample_id: str) -> str:
    """A Qdrant point id (UUID) for a sample id; FiftyOne's 24-hex ObjectIds map one to one."""
    if re.fullmatch(r"[0-9a-fA-F]{24}", sample_id):
        return str(uuid.UUID(sample_id.lower() + "0" * 8))
    return str(uuid.uuid5(uuid.NAMESPACE_URL, sample_id))


def collection_name(dataset: str, model_key: str) -> str:
    """One collection per (dataset, model)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", f"lookalike-{dataset}-{model_key}")


def _check_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    """One vector or a 2-D batch, of this index's dimension."""
    v = np.asarray(vectors, dtype=np.float32)
    v = as_vectors(v[None, :] if v.ndim == 1 else v)
    if v.shape[1] != dim:
        raise IndexMismatchError(f"expected vectors of shape (n, {dim}), got {v.shape}")
    return v


def _matches(payload: Mapping[str, Any], where: Where | None) -> bool:
    for key, wanted in (where or {}).items():
        allowed = {wanted} if isinstance(wanted, str) else set(wanted)
        value = payload.get(key)
        values = set(value) if isinstance(value, list) else {value}
        if not values & allowed:
            return False
    return True


def best_score(positive_sims: np.ndarray, negative_sims: np.ndarray) -> np.ndarray:
    """Qdrant's best-score rule: sigmoid of the best positive similarity when it beats the best negative,
    else minus the sigmoid of the best negative. Inputs are (examples, points) similarity matrices."""
    pos = positive_sims.max(axis=0) if len(positive_sims) else np.full(positive_sims.shape[1], -np.inf)
    neg = negative_sims.max(axis=0) if len(negative_sims) else np.full(positive_sims.shape[1], -np.inf)

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 0.5 * (x / (1.0 + np.abs(x)) + 1.0)

    with np.errstate(invalid="ignore"):
        return np.where(pos > neg, sigmoid(pos), -sigmoid(neg)).astype(np.float32)


class ExactIndex:
    """Brute-force cosine search in NumPy: exact, in memory, the reference implementation."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._payloads: list[dict[str, Any]] = []

    def session(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def optimize(self) -> None:
        """Nothing to build: every query is a full scan."""

    def count(self) -> int:
        return len(self._row)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        v = _check_vectors(vectors, self.dim)
        new = []
        for i, sid in enumerate(ids):
            row = self._row.get(sid)
            if row is None:
                new.append(i)
            else:
                self._vectors[row] = v[i]
                self._payloads[row] = dict(payloads[i])
        for i in new:
            self._row[ids[i]] = len(self._ids)
            self._ids.append(ids[i])
            self._payloads.append(dict(payloads[i]))
        self._vectors = np.concatenate([self._vectors, v[new]])

    def set_payloads(self, ids: Sequence[str], changes: Sequence[Mapping[str, Any]]) -> None:
        for sid, change in zip(ids, changes, strict=True):
            self._payloads[self._row[sid]].update(change)

    def delete(self, ids: Sequence[str]) -> None:
        drop = set(ids)
        keep = [i for i, sid in enumerate(self._ids) if sid not in drop]
        self._ids = [self._ids[i] for i in keep]
        self._payloads = [self._payloads[i] for i in keep]
        self._vectors = self._vectors[keep]
        self._row = {sid: i for i, sid in enumerate(self._ids)}

    def payloads(self) -> dict[str, dict[str, Any]]:
        return {sid: dict(p) for sid, p in zip(self._ids, self._payloads, strict=True)}

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        return self._vectors[[self._row[sid] for sid in ids]]

    def _candidates(self, where: Where | None, exclude: Sequence[str]) -> np.ndarray:
        if not where and not exclude:
            return np.arange(len(self._ids))
        skip = set(exclude)
        return np.array(
            [i for i, (sid, p) in enumerate(zip(self._ids, self._payloads, strict=True))
             if sid not in skip and _matches(p, where)],
            dtype=np.int64,
        )

    def _top(self, scores: np.ndarray, rows: np.ndarray, k: int, min_score: float | None) -> list[Hit]:
        order = np.argsort(-scores, kind="stable")[:k]
        return [
            Hit(self._ids[rows[j]], float(scores[j]), dict(self._payloads[rows[j]]))
            for j in order
            if min_score is None or scores[j] >= min_score
        ]

    def query(self, vectors: np.ndarray, k: int, where: Where | None = None,
              exclude: Sequence[str] = (), min_score: float | None = None) -> list[list[Hit]]:
        q = _check_vectors(vectors, self.dim)
        rows = self._candidates(where, exclude)
        sims = q @ self._vectors[rows].T
        return [self._top(s, rows, k, min_score) for s in sims]

    def recommend(self, positives: np.ndarray, negatives: np.ndarray, k: int, where: Where | None = None,
                  exclude: Sequence[str] = (), min_score: float | None = None) -> list[Hit]:
        rows = self._candidates(where, exclude)
        base = self._vectors[rows]
        pos = _check_vectors(positives, self.dim) @ base.T
        neg = _check_vectors(negatives, self.dim) @ base.T if len(negatives) else np.zeros((0, len(rows)))
        return self._top(best_score(pos, neg), rows, k, min_score)


def _alike(ids: Sequence[str], changes: Sequence[Mapping[str, Any]]) -> list[tuple[dict[str, Any], list[str]]]:
    """Points grouped by the change to their payload: one request per group (after an analysis tags a million
    samples, their tags take a few distinct values)."""
    groups: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for sid, change in zip(ids, changes, strict=True):
        groups.setdefault(json.dumps(change, sort_keys=True), (dict(change), []))[1].append(sid)
    return list(groups.values())


def _payload_id(payload: Mapping[str, Any] | None) -> str:
    """A point's row id: a box's label id, else its sample id."""
    payload = payload or {}
    return str(payload.get("label_id") or payload["sample_id"])


def _in_order(records: Sequence[Any], ids: Sequence[str], dim: int) -> np.ndarray:
    """Retrieved records' vectors in the order of ``ids``; ``KeyError`` names ids the index lacks."""
    found = {_payload_id(r.payload): r.vector for r in records}
    missing = [i for i in ids if i not in found]
    if missing:
        raise KeyError(f"not in the index: {missing[:5]}")
    return np.asarray([found[i] for i in ids], dtype=np.float32).reshape(len(ids), dim)


def _retrieved(retrieve: Callable[[list[str]], Sequence[Any]], ids: Sequence[str], dim: int) -> np.ndarray:
    """The vectors of ``ids``, in order, retrieved ``_RETRIEVE_BATCH`` points at a time: a retrieved vector is
    a list of Python floats, 24 bytes a number (12 GB at once for 1M x 512)."""
    out = np.empty((len(ids), dim), dtype=np.float32)
    for start in range(0, len(ids), _RETRIEVE_BATCH):
        chunk = ids[start:start + _RETRIEVE_BATCH]
        out[start:start + len(chunk)] = _in_order(retrieve([point_id(i) for i in chunk]), chunk, dim)
    return out


def _hits(points: Sequence[Any]) -> list[Hit]:
    """Qdrant's scored points (either client's) as hits."""
    return [Hit(_payload_id(p.payload), float(p.score), dict(p.payload or {})) for p in points]


class EdgeIndex:
    """Qdrant's own engine in-process (qdrant-edge), one folder per collection."""

    def __init__(self, path: str | Path, dim: int, model_key: str) -> None:
        import qdrant_edge as qe

        self.path = Path(path)
        self.dim = dim
        self._qe = qe
        self._open: Any = None
        meta_path = self.path / "lookalike.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("dim") != dim or meta.get("model_key") != model_key:
                raise IndexMismatchError(
                    f"the store {self.path} holds {meta.get('dim')}-d vectors of {meta.get('model_key')}, "
                    f"not {dim}-d vectors of {model_key}; rebuild it with `lookalike embed DATASET --rebuild`"
                )
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
            shard = qe.EdgeShard.create(str(self.path), config)
            for key in PAYLOAD_KEYS:
                shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
            shard.flush()
            shard.close()
            meta_path.write_text(json.dumps({"dim": dim, "model_key": model_key}))

    @contextmanager
    def session(self) -> Iterator[Any]:
        """Hold the shard open across several operations (it is locked to this process meanwhile)."""
        if self._open is not None:
            yield self._open
            return
        self._open = self._load_waiting()
        try:
            yield self._open
        finally:
            self._open.flush()
            self._open.close()
            self._open = None

    def _load_waiting(self) -> Any:
        """The shard, opened once no other process holds it: the App server and a notebook take it in turn,
        each for one operation, so the other waits (up to ``STORE_WAIT`` seconds) instead of failing."""
        deadline = time.monotonic() + STORE_WAIT
        pause, said = 0.05, False
        while True:
            try:
                return self._qe.EdgeShard.load(str(self.path))
            except Exception as e:
                held = "WouldBlock" in str(e)
                if not held or time.monotonic() > deadline:
                    raise IndexError_(
                        f"cannot open the Qdrant store {self.path}: {e}. "
                        + (f"Another process (the App server, a notebook) held it for over {STORE_WAIT} s; "
                           "close it there and retry" if held else "Rebuild it with `lookalike embed DATASET "
                           "--rebuild` if it was damaged")
                    ) from e
                if not said:
                    log.info("the Qdrant store %s is in use by another process; waiting", self.path)
                    said = True
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def count(self) -> int:
        with self.session() as s:
            return int(s.count(self._qe.CountRequest(exact=True)))

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        qe = self._qe
        v = _check_vectors(vectors, self.dim)
        with self.session() as s:
            for start in range(0, len(ids), _UPSERT_BATCH):
                points = [
                    qe.Point(point_id(sid), v[i].tolist(), {"sample_id": sid, **payloads[i]})
                    for i, sid in enumerate(ids[start:start + _UPSERT_BATCH], start)
                ]
                s.update(qe.UpdateOperation.upsert_points(points))

    def optimize(self) -> None:
        """Build the HNSW graph (worth it beyond a few tens of thousands of points)."""
        with self.session() as s:
            s.optimize()

    def set_payloads(self, ids: Sequence[str], changes: Sequence[Mapping[str, Any]]) -> None:
        with self.session() as s:
            for change, group in _alike(ids, changes):
                for start in range(0, len(group), _RETRIEVE_BATCH):
                    chunk: list[Any] = [point_id(i) for i in group[start:start + _RETRIEVE_BATCH]]
                    s.update(self._qe.UpdateOperation.set_payload(chunk, change))

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            with self.session() as s:
                s.update(self._qe.UpdateOperation.delete_points([point_id(i) for i in ids]))

    def payloads(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        offset = None
        with self.session() as s:
            while True:
                records, offset = s.scroll(self._qe.ScrollRequest(offset=offset, limit=4096, with_payload=True))
                for r in records:
                    out[_payload_id(r.payload)] = dict(r.payload or {})
                if offset is None:
                    return out

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        with self.session() as s:
            return _retrieved(lambda chunk: s.retrieve(chunk, with_payload=True, with_vector=True), ids, self.dim)

    def _filter(self, where: Where | None, exclude: Sequence[str]) -> Any:
        qe = self._qe
        must = [
            qe.FieldCondition(key, match=qe.MatchValue(v) if isinstance(v, str) else qe.MatchAny(list(v)))
            for key, v in (where or {}).items()
        ]
        must_not = [qe.HasIdCondition({point_id(i) for i in exclude})] if exclude else []
        return qe.Filter(must=must or None, must_not=must_not or None) if must or must_not else None

    def query(self, vectors: np.ndarray, k: int, where: Where | None = None,
              exclude: Sequence[str] = (), min_score: float | None = None) -> list[list[Hit]]:
        qe = self._qe
        q = _check_vectors(vectors, self.dim)
        flt = self._filter(where, exclude)
        requests = [
            qe.QueryRequest(limit=k, query=qe.Query.Nearest(row.tolist()), filter=flt,
                            with_payload=True, score_threshold=min_score)
            for row in q
        ]
        with self.session() as s:
            results = s.query_batch(qe.QueryBatchRequest(requests))
        return [_hits(r) for r in results]

    def recommend(self, positives: np.ndarray, negatives: np.ndarray, k: int, where: Where | None = None,
                  exclude: Sequence[str] = (), min_score: float | None = None) -> list[Hit]:
        qe = self._qe
        pos = [r.tolist() for r in _check_vectors(positives, self.dim)]
        neg = [r.tolist() for r in _check_vectors(negatives, self.dim)] if len(negatives) else []
        query = qe.Query.RecommendBestScore(qe.RecommendQuery(positives=pos, negatives=neg))
        request = qe.QueryRequest(limit=k, query=query, filter=self._filter(where, exclude),
                                  with_payload=True, score_threshold=min_score)
        with self.session() as s:
            return _hits(s.query(request))

    def drop(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class QdrantIndex:
    """A collection on a Qdrant server or cluster (or qdrant-client's local mode) via qdrant-client."""

    def __init__(self, client: Any, collection: str, dim: int, where: str = "",
                 settings: IndexConfig | None = None) -> None:
        from qdrant_client import models

        from .config import IndexConfig

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


def open_index(dataset: str, model_key: str, dim: int, url: str | None = None, api_key: str | None = None,
               home: Path | None = None, rebuild: bool = False, settings: IndexConfig | None = None
               ) -> EdgeIndex | QdrantIndex:
    """The collection for (``dataset``, ``model_key``): on the server at ``url`` (laid out and written as
    ``settings`` say: shards, replicas, quantization, consistency), else the embedded store under ``home``.
    ``rebuild`` drops an existing collection first."""
    from .config import default_home

    name = collection_name(dataset, model_key)
    if url:
        return QdrantIndex.connect(name, dim, url=url, api_key=api_key, rebuild=rebuild, settings=settings)
    path = (home or default_home()) / "qdrant" / name
    if rebuild:
        shutil.rmtree(path, ignore_errors=True)
    return EdgeIndex(path, dim, model_key)
