"""The exact index: NumPy brute force in memory, the reference the Qdrant placements are tested against."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import (
    Hit,
    Where,
    _check_vectors,
    _matches,
    best_score,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


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
