"""Qdrant's own engine in-process (qdrant-edge), stored in a folder: the default placement. The shard is opened
per operation (or per :meth:`EdgeIndex.session`) and closed right after, so a notebook and the App server can
use one store in turn."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import IndexError_, IndexMismatchError
from .base import (
    _RETRIEVE_BATCH,
    _UPSERT_BATCH,
    PAYLOAD_KEYS,
    Hit,
    Where,
    _alike,
    _check_vectors,
    _hits,
    _payload_id,
    _retrieved,
    point_id,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
STORE_WAIT = 120.0  # seconds to wait for another process to release the embedded store

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
