"""Pairs of rows, as (m, 2) int64 arrays of distinct rows ``(i, j)`` with ``i < j``, and the record of the pairs a
run verified, which a later run reuses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# What a saved record's pairs were searched by; a record of other searches is not reused (an update would
# search only the new rows, so pairs of old rows that a new search finds would be missed). 2: crops.
SEARCHES = 2
PIXEL, KEYPOINT, EXACT = 0, 1, 2  # how a pair was verified: thumbnails aligned, keypoints matched, same content


def distinct_pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Pairs ``(i, j)`` as distinct rows ``(min, max)`` of an (m, 2) int64 array, self-pairs left out."""
    i, j = np.asarray(i, dtype=np.int64).ravel(), np.asarray(j, dtype=np.int64).ravel()
    both = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)[i != j]
    return np.unique(both, axis=0) if len(both) else both.reshape(0, 2)


def among(pairs: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Whether each of ``pairs`` is one of ``other`` (both (m, 2) arrays of rows, compared as ordered)."""
    if not len(pairs) or not len(other):
        return np.zeros(len(pairs), dtype=bool)
    width = int(max(pairs.max(), other.max())) + 1
    return np.isin(pairs[:, 0] * width + pairs[:, 1], other[:, 0] * width + other[:, 1])


def without(pairs: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``pairs`` less those in ``other`` (both (m, 2) arrays of distinct pairs)."""
    return pairs[~among(pairs, other)]


def strongest(pairs: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct pair once, with its highest score."""
    if not len(pairs):
        return pairs, scores
    order = np.lexsort((-scores, pairs[:, 1], pairs[:, 0]))
    pairs, scores = pairs[order], scores[order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = (pairs[1:] != pairs[:-1]).any(axis=1)
    return pairs[first], scores[first]


def touching(pairs: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """The pairs with at least one of ``rows`` (of ``n``)."""
    mine = np.zeros(n, dtype=bool)
    mine[rows] = True
    return pairs[mine[pairs[:, 0]] | mine[pairs[:, 1]]]


def exact_pairs(pixel_hashes: Sequence[str], content_hashes: Sequence[str | None]) -> np.ndarray:
    """Pairs of the same bytes or the same pixels: each image with the first of its kind."""
    found: list[tuple[int, int]] = []
    for keys in (content_hashes, pixel_hashes):
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key is None:
                continue
            if key in first:
                found.append((first[key], i))
            else:
                first[key] = i
    return np.unique(np.array(found, dtype=np.int64).reshape(-1, 2), axis=0)


@dataclass
class Verified:
    """The candidate pairs a run verified (rows ``i < j``), each with its similarity and how it was verified
    (``PIXEL``, ``KEYPOINT`` or ``EXACT``). Loaded for a later run (:meth:`load`), ``covered`` marks the
    rows that earlier run covered: only pairs with another row are verified then."""

    pairs: np.ndarray  # (m, 2) int64
    scores: np.ndarray  # (m,) float32
    kind: np.ndarray  # (m,) int8
    covered: np.ndarray | None = None  # (n,) bool

    def best(self) -> dict[tuple[int, int], float]:
        """The highest similarity of each pair."""
        pairs, scores = strongest(self.pairs, self.scores)
        return {(i, j): score for (i, j), score in zip(pairs.tolist(), scores.tolist(), strict=True)}

    def save(self, path: str | Path, content_hashes: Sequence[str | None], candidate_cosine: float,
             keypoints: bool) -> None:
        """Written beside the pairs: each row's content hash (what a later run matches its rows by) and the
        settings the candidates depend on."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez(f, hashes=np.array([h or "" for h in content_hashes]), pairs=self.pairs.astype(np.int32),
                     scores=self.scores, kind=self.kind, candidate_cosine=candidate_cosine, keypoints=keypoints,
                     searches=SEARCHES)

    @classmethod
    def load(cls, path: str | Path, content_hashes: Sequence[str | None], candidate_cosine: float,
             keypoints: bool) -> Verified | None:
        """An earlier run's pairs among rows ``content_hashes`` (its rows found again by content), or None
        where there is none or it was made with other settings. Exact pairs are left out: they are cheap
        to find again."""
        path = Path(path)
        if not path.is_file():
            return None
        with np.load(path) as f:
            searches = int(f["searches"]) if "searches" in f else 1
            if float(f["candidate_cosine"]) != candidate_cosine or bool(f["keypoints"]) != keypoints \
                    or searches != SEARCHES:
                return None
            first: dict[str, int] = {}
            for row, h in enumerate(content_hashes):
                if h:
                    first.setdefault(h, row)
            now = np.array([first.get(h, -1) for h in f["hashes"].tolist()] + [-1], dtype=np.int64)
            pairs, scores, kind = now[f["pairs"]], f["scores"], f["kind"]
            # A row whose content the earlier run had is covered, a byte-for-byte copy of another row too (its
            # pairs are its twin's, and the exact pair joins them): at 1M, 28% of the rows were such copies,
            # and searching them again as new took longer than the whole first run.
            seen = set(f["hashes"].tolist()) - {""}
        covered = np.array([bool(h) and h in seen for h in content_hashes], dtype=bool)
        keep = (pairs.min(axis=1) >= 0) & (kind != EXACT)
        return cls(pairs=np.sort(pairs[keep], axis=1), scores=scores[keep], kind=kind[keep], covered=covered)

    def of(self, kind: int) -> tuple[np.ndarray, np.ndarray]:
        """The pairs verified one way, and their scores."""
        mine = self.kind == kind
        return self.pairs[mine], self.scores[mine]
