"""The k-nearest-neighbour graph: computed once per embedding run, reused by every analysis.

Pure NumPy/torch: rows of L2-normalised vectors in, for each row the ``k`` most similar other rows
(indices and cosine similarities, most similar first) out. :func:`exact_knn` by blocked matrix products
(memory stays at ``block x N`` similarities whatever N is); :func:`approximate_knn` by NN-descent
(pynndescent, which umap-learn brings) for large N; :func:`update_knn` brings a graph up to date after
samples were added, changed or removed, searching only for what changed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .arrays import as_vectors
from .exceptions import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

NN_DESCENT_WIDTH = 30  # neighbours NN-descent tracks per row, at least


@dataclass(frozen=True)
class KnnGraph:
    """``indices[i]`` are the rows nearest to row ``i`` (itself excluded), ``sims[i]`` their cosines."""

    indices: np.ndarray  # (n, k) int64
    sims: np.ndarray  # (n, k) float32

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def save(self, path: str | Path, ids: Sequence[str]) -> None:
        """Store the graph with the sample ids of its rows."""
        np.savez(path, indices=self.indices, sims=self.sims, ids=np.asarray(ids, dtype=str))

    @classmethod
    def load(cls, path: str | Path) -> tuple[KnnGraph, list[str]]:
        """A stored graph and the sample ids of its rows."""
        with np.load(path) as f:
            return cls(indices=f["indices"], sims=f["sims"]), [str(i) for i in f["ids"]]

    def first(self, k: int) -> KnnGraph:
        """The same graph keeping only each row's ``k`` nearest neighbours."""
        return KnnGraph(indices=self.indices[:, :k], sims=self.sims[:, :k])


def _validate(vectors: np.ndarray, k: int) -> np.ndarray:
    v = as_vectors(vectors)
    if not 1 <= k < len(v):
        raise ConfigError(f"k must be between 1 and n - 1 = {len(v) - 1}, got {k}")
    return v


PRECISIONS = ("auto", "fp32", "bf16")
# Candidates kept per row from the bf16 products before exact re-scoring: bf16 rounds a cosine near 0.9 by up
# to 0.002, so neighbours just past the k-th can swap in; rows the margin cannot certify are searched in fp32.
LOW_PRECISION_MARGIN = 32
CHUNK = 32  # columns per chunk in the two-stage top-k selection
RESCORE_ROWS = 256  # rows re-scored at a time: their candidates' vectors are gathered (rows x wide x dim)
SCORE_BUDGET = 1 << 29  # bytes of one block's score matrix: the block's rows follow from it and N


def _block_rows(n: int, block: int | None) -> int:
    return block or int(np.clip(SCORE_BUDGET // (4 * max(n, 1)), 64, 4096))


def _use_bf16(precision: str) -> bool:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        from .hardware import fast_bf16

        return fast_bf16("cpu")
    return precision == "bf16"


def _top(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` largest scores and their columns, in two stages: the ``k`` chunks of ``CHUNK``
    columns with the largest maxima hold the ``k`` largest scores, so only they are ranked. About 5x
    cheaper than one top-k over the whole row, which cost as much as the bf16 product itself."""
    import torch

    rows, n = scores.shape
    chunks = -(-n // CHUNK)
    if chunks <= 2 * k:
        return torch.topk(scores, k, dim=1)
    padded = torch.nn.functional.pad(scores, (0, chunks * CHUNK - n), value=-torch.inf).view(rows, chunks, CHUNK)
    best_chunks = torch.topk(padded.amax(dim=2), k, dim=1).indices  # (rows, k)
    inside = torch.gather(padded, 1, best_chunks[:, :, None].expand(rows, k, CHUNK)).view(rows, k * CHUNK)
    values, at = torch.topk(inside, k, dim=1)
    return values, best_chunks.gather(1, at // CHUNK) * CHUNK + at % CHUNK


def _rescore(base: torch.Tensor, rows: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """fp32 cosines of each of ``rows`` with its candidates ``cand`` (rows x wide), ``RESCORE_ROWS`` at a time."""
    import torch

    out = torch.empty(cand.shape, dtype=torch.float32)
    for r in range(0, len(rows), RESCORE_ROWS):
        c = cand[r:r + RESCORE_ROWS]
        gathered = torch.index_select(base, 0, c.flatten()).view(*c.shape, base.shape[1])
        out[r:r + RESCORE_ROWS] = torch.bmm(gathered, base[rows[r:r + RESCORE_ROWS], :, None])[..., 0]
    return out


def _search(base: torch.Tensor, low: torch.Tensor | None, rows: np.ndarray, k: int,
            block: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The exact ``k`` nearest rows of ``base`` to each of ``rows`` (itself excluded), ``block`` rows at a
    time. With ``low`` (``base`` in bf16), the bf16 products pick ``k + LOW_PRECISION_MARGIN`` candidates,
    re-scored in fp32; a row whose candidates cannot be certified to hold its exact top ``k`` (the last
    candidate's bf16 score within the block's observed rounding error, doubled, of the k-th exact score) is
    searched again in fp32. Also returns how many rows were searched again."""
    import torch

    n = len(base)
    indices = np.empty((len(rows), k), dtype=np.int64)
    sims = np.empty((len(rows), k), dtype=np.float32)
    redone = 0
    wide = min(n - 1, k + LOW_PRECISION_MARGIN) if low is not None else k
    for start in range(0, len(rows), block):
        part = torch.from_numpy(rows[start:start + block])
        here = torch.arange(len(part))
        s = (low[part] @ low.T) if low is not None else base[part] @ base.T
        s[here, part] = -torch.inf  # not its own neighbour
        approx, cand = _top(s, wide)
        del s
        if low is not None:
            exact = _rescore(base, part, cand)
            error = float((exact - approx.float()).abs().max())
            exact, order = torch.sort(exact, dim=1, descending=True)
            cand = cand.gather(1, order)
            # A row is certified when no column outside its candidates can beat its k-th exact score.
            doubt = approx[:, -1].float() + 2 * error >= exact[:, k - 1]
            if wide >= n - 1:
                doubt[:] = False
            exact, cand = exact[:, :k].contiguous(), cand[:, :k].contiguous()
            for r in torch.nonzero(doubt).flatten().tolist():
                row = base[part[r]] @ base.T
                row[part[r]] = -torch.inf
                exact[r], cand[r] = torch.topk(row, k)
            redone += int(doubt.sum())
            approx = exact
        indices[start:start + len(part)] = cand.numpy()
        sims[start:start + len(part)] = approx.float().numpy()
    return indices, sims, redone


def exact_knn(vectors: np.ndarray, k: int, block: int | None = None, precision: str = "auto") -> KnnGraph:
    """Exact cosine kNN of every row against all others, ``block`` query rows at a time (by default as
    many as fit ``SCORE_BUDGET``).

    ``precision``: ``bf16`` picks candidates by bf16 products (AMX tiles, about 5x the fp32 rate) and
    re-scores them in fp32, so the graph equals the fp32 one; ``fp32`` multiplies in fp32; ``auto`` uses
    bf16 where :func:`lookalike.hardware.fast_bf16` measures it faster. A row never lists itself, even
    when another row is identical to it.
    """
    import torch

    v = _validate(vectors, k)
    bf16 = _use_bf16(precision)
    with torch.inference_mode():
        base = torch.from_numpy(v)
        low = base.bfloat16() if bf16 else None
        indices, sims, redone = _search(base, low, np.arange(len(v)), k, _block_rows(len(v), block))
    if redone:
        log.info("exact kNN: %d of %d rows searched again in fp32 (bf16 candidates not certified)", redone, len(v))
    return KnnGraph(indices=indices, sims=sims)


def approximate_knn(vectors: np.ndarray, k: int, seed: int = 0) -> KnnGraph:
    """Approximate cosine kNN by NN-descent (pynndescent); rows never list themselves."""
    from pynndescent import NNDescent

    v = _validate(vectors, k)
    # A wider search than k (at least NN_DESCENT_WIDTH) lifts recall at the k kept.
    width = min(len(v) - 1, max(k, NN_DESCENT_WIDTH)) + 1
    index = NNDescent(v, metric="dot", n_neighbors=width, random_state=seed, low_memory=True, compressed=True)
    found, distances = index.neighbor_graph
    sims = (1.0 - distances).astype(np.float32)  # pynndescent's "dot" distance is 1 - dot product
    sims[found == np.arange(len(v))[:, None]] = -np.inf  # never its own neighbour
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return KnnGraph(indices=np.take_along_axis(found, order, axis=1).astype(np.int64),
                    sims=np.take_along_axis(sims, order, axis=1))


def knn(vectors: np.ndarray, k: int, exact_max: int, precision: str = "auto") -> KnnGraph:
    """The exact graph up to ``exact_max`` rows, the approximate one beyond."""
    return exact_knn(vectors, k, precision=precision) if len(vectors) <= exact_max else approximate_knn(vectors, k)


def recall(graph: KnnGraph, vectors: np.ndarray, rows: np.ndarray) -> float:
    """Share of the true ``graph.k`` nearest neighbours of ``rows`` that the graph lists (exact search)."""
    v = as_vectors(vectors)
    sims = v[rows] @ v.T
    sims[np.arange(len(rows)), rows] = -np.inf
    truth = np.argpartition(-sims, graph.k, axis=1)[:, : graph.k]
    return float(np.mean([len(set(t) & set(g)) / graph.k for t, g in zip(truth, graph.indices[rows], strict=True)]))


def update_knn(old: KnnGraph, old_rows: np.ndarray, vectors: np.ndarray, k: int, block: int | None = None,
               precision: str = "auto") -> KnnGraph:
    """The kNN graph of ``vectors`` from ``old``, a graph of an earlier version of the same samples.

    ``old_rows[i]`` is the row of sample ``i`` in ``old``, or -1 where the sample is new or its vector
    changed. New rows, and kept rows that lost a neighbour, are searched afresh against all rows; every
    other kept row only merges in its similarities to the new rows. Exact where ``old`` was.
    """
    import torch

    v = _validate(vectors, k)
    n = len(v)
    old_rows = np.asarray(old_rows)
    now = np.full(len(old.indices), -1)
    kept = np.flatnonzero(old_rows >= 0)
    now[old_rows[kept]] = kept
    if old.k < k:
        return exact_knn(v, k, block, precision)
    indices = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), -np.inf, dtype=np.float32)
    moved = now[old.indices[old_rows[kept], :k]]
    whole = moved.min(axis=1) >= 0
    clean, fresh = kept[whole], np.setdiff1d(np.arange(n), kept[whole])
    indices[clean], sims[clean] = moved[whole], old.sims[old_rows[clean], :k]
    base = torch.from_numpy(v)
    with torch.inference_mode():
        if len(fresh):  # afresh: every row that is new or lost a neighbour
            low = base.bfloat16() if _use_bf16(precision) else None
            indices[fresh], sims[fresh], _ = _search(base, low, fresh, k, _block_rows(n, block))
        added = np.setdiff1d(np.arange(n), kept)
        step = _block_rows(n, block)
        for start in range(0, len(clean), step):  # merge the added rows into the untouched ones
            if not len(added):
                break
            part = clean[start:start + step]
            to_added = (base[torch.from_numpy(part)] @ base[torch.from_numpy(added)].T).numpy()
            both_i = np.concatenate([indices[part], np.broadcast_to(added, to_added.shape)], axis=1)
            both_s = np.concatenate([sims[part], to_added], axis=1)
            order = np.argsort(-both_s, axis=1, kind="stable")[:, :k]
            indices[part] = np.take_along_axis(both_i, order, axis=1)
            sims[part] = np.take_along_axis(both_s, order, axis=1)
    return KnnGraph(indices=indices, sims=sims)
