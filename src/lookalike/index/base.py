"""What every placement of the vector index shares: the protocol (:class:`VectorIndex`), a search's
result (:class:`Hit`), point ids and collection names, the filters' and the recommendation's semantics, and
the helpers both Qdrant placements use to read points back."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from ..arrays import as_vectors
from ..exceptions import IndexMismatchError

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
T = TypeVar("T")

Where = Mapping[str, str | Sequence[str]]
PAYLOAD_KEYS = ("label", "split", "tags")  # indexed for filtering
_UPSERT_BATCH = 1024
_RETRIEVE_BATCH = 16_384  # points retrieved at a time


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
