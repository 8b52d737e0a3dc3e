"""The k-nearest-neighbour graph: computed once per embedding run, reused by every analysis.

Pure NumPy/torch: rows of L2-normalised vectors in, for each row the ``k`` most similar other rows
(indices and cosine similarities, most similar first) out. :func:`exact_knn` by blocked matrix products
(memory stays at ``block x N`` similarities whatever N is), in bf16 where the machine runs it fast, with
fp32 re-scoring so the graph is the fp32 one; :func:`approximate_knn` cluster by
cluster (spherical k-means, each cluster searched among its nearest clusters) for large N; :func:`update_knn`
brings a graph up to date after samples were added, changed or removed, searching only for what changed;
:func:`nearest` and :func:`approximate_nearest` serve candidate searches that are verified exactly
afterwards. ``benchmarks/speed.py`` times them against the bare bf16 product.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .arrays import as_vectors
from .engines import LocalEngine, is_distributed, spans
from .exceptions import ConfigError
from .hardware import use_bf16

if TYPE_CHECKING:
    import torch

    from .engines import Engine

log = logging.getLogger(__name__)

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


# Candidates kept per row from the bf16 products before exact re-scoring: bf16 rounds a cosine near 0.9 by up
# to 0.002, so neighbours just past the k-th can swap in; rows the margin cannot certify are searched in fp32.
LOW_PRECISION_MARGIN = 32
WIDER_MARGIN = 256  # candidates, beyond k, for the few rows (about 0.2%) the first margin cannot certify
CHUNK = 64  # columns per chunk in the two-stage top-k selection (benchmarked: 16, 32, 64, 128)
RESCORE_ROWS = 256  # rows re-scored at a time: their candidates' vectors are gathered (rows x wide x dim)
# Bytes of one block's score matrix: the block's rows follow from it and N. At 60k rows it allows 4096 rows
# in bf16, where the product runs fastest (500 GFLOP/s here, 350 at 2236 rows).
SCORE_BUDGET = 1 << 29


def _block_rows(n: int, block: int | None, bf16: bool = False) -> int:
    return block or int(np.clip(SCORE_BUDGET // ((2 if bf16 else 4) * max(n, 1)), 64, 4096))


def _top(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` largest scores and their columns, sorted, in two stages: the ``k`` chunks of ``CHUNK``
    columns with the largest maxima hold the ``k`` largest scores (with the few columns past the last whole
    chunk), so only they are ranked. One top-k over whole rows of a 60k-column block cost about as much as
    the bf16 product itself; this costs a third of it."""
    import torch

    rows, n = scores.shape
    chunks = n // CHUNK
    if chunks <= 2 * k:
        return torch.topk(scores, k, dim=1)
    whole = scores.as_strided((rows, chunks, CHUNK), (scores.stride(0), CHUNK, 1))  # no copy
    best_chunks = torch.topk(whole.amax(dim=2), k, dim=1, sorted=False).indices  # (rows, k)
    inside = whole[torch.arange(rows)[:, None], best_chunks].view(rows, k * CHUNK)  # 4x faster than gather
    if n > chunks * CHUNK:  # the columns past the last whole chunk compete as they are
        inside = torch.cat([inside, scores[:, chunks * CHUNK:]], dim=1)
    values, at = torch.topk(inside, k, dim=1)
    in_chunk = best_chunks.gather(1, (at // CHUNK).clamp_max(k - 1)) * CHUNK + at % CHUNK
    return values, torch.where(at < k * CHUNK, in_chunk, at - k * CHUNK + chunks * CHUNK)


def _rescore(base: torch.Tensor, queries: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """fp32 cosines of each row of ``queries`` with its candidates ``cand`` (rows of ``base``, queries x wide),
    ``RESCORE_ROWS`` at a time. The candidates' vectors are gathered into one reused buffer: a fresh 100 MB
    tensor each time cost 6x the gather itself in page faults."""
    import torch

    out = torch.empty(cand.shape, dtype=torch.float32)
    gathered = torch.empty(min(len(queries), RESCORE_ROWS) * cand.shape[1], base.shape[1])
    for r in range(0, len(queries), RESCORE_ROWS):
        c = cand[r:r + RESCORE_ROWS]
        g = gathered[:c.numel()]
        torch.index_select(base, 0, c.flatten(), out=g)
        q = queries[r:r + RESCORE_ROWS, :, None]
        out[r:r + RESCORE_ROWS] = torch.bmm(g.view(*c.shape, base.shape[1]), q)[..., 0]
    return out


def _certified(base: torch.Tensor, queries: torch.Tensor, scores: torch.Tensor, k: int,
               wide: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``wide`` best bf16 candidates of each row of ``scores``, re-scored in fp32 and sorted, cut to ``k``;
    and which rows are in doubt: where the last candidate's bf16 score, plus twice the largest rounding
    error seen among the re-scored candidates, reaches the k-th exact score, a column outside the candidates
    might beat it."""
    import torch

    approx, cand = _top(scores, wide)
    exact = _rescore(base, queries, cand)
    error = float((exact - approx.float()).abs().max())
    exact, order = torch.sort(exact, dim=1, descending=True)
    cand = cand.gather(1, order)
    doubt = approx[:, -1].float() + 2 * error >= exact[:, k - 1]
    if wide >= scores.shape[1] - 1:  # every other row is a candidate
        doubt[:] = False
    return exact[:, :k].contiguous(), cand[:, :k].contiguous(), doubt


def _rows(matrix: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    return matrix[start:stop]


def _products(queries: Callable[[int, int], torch.Tensor], count: int, other: torch.Tensor,
              block: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Blocks of products: ``queries(start, stop)`` (rows of queries) times ``other`` (dim x N), ``block`` rows
    at a time, as (start, scores). One buffer serves every block: fresh pages cost more than the work."""
    import torch

    buffer = torch.empty(min(block, count), other.shape[1], dtype=other.dtype)
    for start in range(0, count, block):
        part = queries(start, min(start + block, count))
        yield start, torch.matmul(part, other, out=buffer[:len(part)])


def _search(base: torch.Tensor, low_t: torch.Tensor | None, queries: torch.Tensor, itself: np.ndarray | None,
            k: int, block: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The exact ``k`` nearest rows of ``base`` to each row of ``queries`` (fp32), ``block`` queries at a
    time; ``itself[i]``, where given, is query ``i``'s own row of ``base``, never its neighbour. With
    ``low_t`` (``base`` in bf16, transposed: the layout the product reads fastest), the bf16 products pick
    ``k + LOW_PRECISION_MARGIN`` candidates, re-scored in fp32 (:func:`_certified`); rows in doubt take
    ``k + WIDER_MARGIN`` candidates, and rows still in doubt are searched in fp32. Also returns how many
    rows were searched in fp32."""
    import torch

    n, count = len(base), len(queries)
    k = min(k, n - 1 if itself is not None else n)
    indices = np.empty((count, k), dtype=np.int64)
    sims = np.empty((count, k), dtype=np.float32)
    redone = 0
    own = torch.from_numpy(itself) if itself is not None else None
    others = n - 1 if itself is not None else n

    def low(start: int, stop: int) -> torch.Tensor:
        return queries[start:stop].to(low_t.dtype) if low_t is not None else queries[start:stop]

    for start, s in _products(low, count, low_t if low_t is not None else base.T, block):
        q = queries[start:start + len(s)]
        if own is not None:
            s[torch.arange(len(s)), own[start:start + len(s)]] = -torch.inf  # not its own neighbour
        if low_t is None:
            values, cand = _top(s, k)
        else:
            values, cand, doubt = _certified(base, q, s, k, min(others, k + LOW_PRECISION_MARGIN))
            again = torch.nonzero(doubt).flatten()
            if len(again):
                v2, c2, doubt2 = _certified(base, q[again], s[again], k, min(others, k + WIDER_MARGIN))
                values[again], cand[again] = v2, c2
                last = again[doubt2]
                if len(last):  # in fp32, all at once
                    full = q[last] @ base.T
                    if own is not None:
                        full[torch.arange(len(last)), own[start:start + len(s)][last]] = -torch.inf
                    values[last], cand[last] = torch.topk(full, k, dim=1)
                    redone += len(last)
        indices[start:start + len(s)] = cand.numpy()
        sims[start:start + len(s)] = values.float().numpy()
    return indices, sims, redone


def _tensor(vectors: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Vectors as a tensor: a checked float32 array shared, or a tensor as it is (candidate searches may hold
    their rows in bf16 already: half the memory of float32)."""
    import torch

    return vectors if isinstance(vectors, torch.Tensor) else torch.from_numpy(as_vectors(vectors))


def nearest(queries: np.ndarray | torch.Tensor, base: np.ndarray | torch.Tensor, k: int,
            precision: str = "auto") -> np.ndarray:
    """The rows of ``base`` with the ``k`` largest products with each query row, by the exact graph's
    blocked products (bf16 where fast) and two-stage top-k, without re-scoring: for candidate searches
    whose every pair is checked exactly afterwards. A query that is also a row of ``base`` finds itself."""
    import torch

    with torch.inference_mode():
        q, b = _tensor(queries), _tensor(base)
        bf16 = b.dtype == torch.bfloat16 or use_bf16(precision)
        other = b.T.bfloat16().contiguous() if bf16 else b.T
        out = np.empty((len(q), k), dtype=np.int64)
        for start, s in _products(lambda a, z: q[a:z].to(other.dtype), len(q), other, _block_rows(len(b), None, bf16)):
            out[start:start + len(s)] = _top(s, k)[1].numpy()
    return out


def exact_knn(vectors: np.ndarray, k: int, block: int | None = None, precision: str = "auto",
              engine: Engine | None = None) -> KnnGraph:
    """Exact cosine kNN of every row against all others, ``block`` query rows at a time (by default as
    many as fit ``SCORE_BUDGET``).

    ``precision``: ``bf16`` picks candidates by bf16 products (AMX tiles, about 5x the fp32 rate) and
    re-scores them in fp32, so the graph equals the fp32 one; ``fp32`` multiplies in fp32; ``auto`` uses
    bf16 where :func:`lookalike.hardware.fast_bf16` measures it faster. A row never lists itself, even
    when another row is identical to it. ``engine`` (:mod:`lookalike.engines`): a distributed one searches
    blocks of rows as tasks against the shared vectors, each by this same kernel, and stacks their rows.
    """
    v = _validate(vectors, k)
    wide = min(k + TIE_MARGIN, len(v) - 1)
    parts = (engine or LocalEngine()).map(_exact_rows, (v, wide, block, precision), spans(len(v), engine))
    indices = np.concatenate([p[0] for p in parts])  # their cosines are summed again, canonically
    redone = sum(p[2] for p in parts)
    if redone:
        log.info("exact kNN: %d of %d rows searched again in fp32 (bf16 candidates not certified)", redone, len(v))
    return _canonical(v, indices).first(k)


# Neighbours searched beyond k, so that which of the rows tied at the k-th place are kept (copies of a row tie
# exactly; fp32 and bf16 products break near ties apart differently) is decided by the canonical order too.
TIE_MARGIN = 4
CANONICAL_ROWS = 64  # rows whose neighbours are gathered at once: 3.1 s at 100k x 30 x 512 (7.7 s at 2048 rows)


def _canonical(v: np.ndarray, indices: np.ndarray) -> KnnGraph:
    """The graph as every path and machine gives it for the same vectors: each neighbour's cosine summed in
    float64 and rounded to float32 (whatever products found it: bf16 candidates re-scored, fp32 blocks, more or
    fewer threads, another CPU's kernels, which differ in the last bits), each row ordered by cosine, then by
    row number (the fp32 and bf16 paths ordered near ties differently in 0.08% of rows)."""
    import torch

    base = torch.from_numpy(v)
    sims = np.empty(indices.shape, dtype=np.float32)
    with torch.inference_mode():
        for a in range(0, len(indices), CANONICAL_ROWS):
            rows = torch.from_numpy(indices[a:a + CANONICAL_ROWS])
            near = base[rows.clamp_min(0)].double()  # (rows, k, dim)
            cos = torch.bmm(near, base[a:a + CANONICAL_ROWS].double()[:, :, None])[..., 0].float()
            sims[a:a + CANONICAL_ROWS] = cos.masked_fill(rows < 0, -np.inf).numpy()
    by_row = np.argsort(indices, axis=1, kind="stable")
    indices, sims = np.take_along_axis(indices, by_row, axis=1), np.take_along_axis(sims, by_row, axis=1)
    order = np.argsort(-sims, axis=1, kind="stable")
    return KnnGraph(indices=np.take_along_axis(indices, order, axis=1), sims=np.take_along_axis(sims, order, axis=1))


def _exact_rows(problem: tuple[np.ndarray, int, int | None, str], rows: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """The exact graph's rows ``rows[0]:rows[1]`` of ``problem`` = (vectors, k, block, precision): a whole local
    graph, or one task's share of a distributed one (each task decides bf16 for its own machine)."""
    import torch

    v, k, block, precision = problem
    bf16 = use_bf16(precision)
    start, stop = rows
    with torch.inference_mode():
        base = torch.from_numpy(v)
        low_t = base.T.bfloat16().contiguous() if bf16 else None
        return _search(base, low_t, base[start:stop], np.arange(start, stop), k, _block_rows(len(v), block, bf16))


# The approximate search (beyond ``index.exact_graph_max`` rows): rows are split into about sqrt(N) clusters by
# spherical k-means, and each cluster's rows are searched exactly, by the same bf16 products, among the rows of
# the PROBES clusters whose centroids are nearest its own. Measured at 200k x 512 (benchmarks/scale.py data):
# 40 probes, 60 s at recall@50 0.95; NN-descent (pynndescent) 151 s at 0.998; faiss IVF-Flat (16 of 1,788
# lists) 131 s at 0.92, while another job ran. 2.5x NN-descent's speed for 5% of the neighbours.
PROBES = 40
KMEANS_ROUNDS = 8
KMEANS_SAMPLE = 32  # rows per cluster the centroids are fitted on
QUERY_ROWS = 2048  # a cluster's rows searched at a time


def _clusters(low: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means of the rows (bf16 or fp32) into about sqrt(N) clusters: each row's cluster, and for
    each cluster the others, nearest centroid first (itself last)."""
    import torch

    n = len(low)
    count = max(1, int(np.sqrt(n)))
    rng = np.random.default_rng(seed)
    sample = low[torch.from_numpy(rng.choice(n, min(n, KMEANS_SAMPLE * count), replace=False))]
    centroids = sample[torch.from_numpy(rng.choice(len(sample), count, replace=False))].float()
    for _ in range(KMEANS_ROUNDS):
        nearest_centroid = (sample @ centroids.to(low.dtype).T).argmax(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, nearest_centroid, sample.float())
        empty = torch.bincount(nearest_centroid, minlength=count) == 0
        sums[empty] = centroids[empty]  # an empty cluster keeps its centroid
        centroids = torch.nn.functional.normalize(sums, dim=1)
    low_centroids = centroids.to(low.dtype).T.contiguous()
    assigned = torch.empty(n, dtype=torch.int64)
    for start in range(0, n, 1 << 16):
        assigned[start:start + (1 << 16)] = (low[start:start + (1 << 16)] @ low_centroids).argmax(dim=1)
    closeness = centroids @ centroids.T
    closeness.fill_diagonal_(-torch.inf)
    return assigned, torch.argsort(closeness, dim=1, descending=True)


def _partitioned(vectors: np.ndarray | torch.Tensor, k: int, queries: int, exclude_self: bool, rescore: bool,
                 precision: str, seed: int, engine: Engine | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Approximate ``k`` nearest rows of ``vectors`` to each of its first ``queries`` rows (see ``PROBES``):
    indices and similarities, most similar first. Products in bf16 where fast (or where ``vectors`` are
    bf16 already), then (with ``rescore``, from float32 vectors) the best ``k + LOW_PRECISION_MARGIN``
    re-scored in fp32. ``engine``: a distributed one searches ranges of clusters as tasks (float32 arrays)."""
    import torch

    with torch.inference_mode():
        base = _tensor(vectors)
        bf16 = base.dtype != torch.bfloat16 and use_bf16(precision)
        low = base.bfloat16() if bf16 else base
        assigned, neighbours = _clusters(low, seed)
        order = torch.argsort(assigned)
        sizes = torch.bincount(assigned, minlength=len(neighbours))
        starts = torch.cumsum(sizes, 0) - sizes
    wide = k + LOW_PRECISION_MARGIN if rescore and low.dtype != base.dtype else k
    plan = (order.numpy(), sizes.numpy(), starts.numpy(), neighbours.numpy(), k, queries, exclude_self, wide)
    indices = np.full((queries, k), -1, dtype=np.int64)
    sims = np.full((queries, k), -np.inf, dtype=np.float32)
    # Here the tensors are shared as they are; tasks get the float32 array and make their own.
    shared = (vectors, bf16, plan) if is_distributed(engine) else (base, low, plan)
    for part in (engine or LocalEngine()).map(_search_clusters, shared, spans(len(neighbours), engine)):
        for rows, found, values in part:
            indices[rows, :found.shape[1]] = found
            sims[rows, :values.shape[1]] = values
    return indices, sims


def _search_clusters(problem: tuple[Any, Any, tuple[Any, ...]], clusters: tuple[int, int]
                     ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The rows of clusters ``clusters[0]:clusters[1]`` searched among their probed clusters: (rows, their
    neighbours, similarities) per block of rows. ``problem``: (base, low, plan) as tensors, or (float32
    array, whether to search in bf16, plan) in a task, which makes the tensors itself."""
    import torch

    base, low, (order_np, sizes_np, starts_np, neighbours, k, queries, exclude_self, wide) = problem
    out = []
    with torch.inference_mode():
        if isinstance(base, np.ndarray):
            base = torch.from_numpy(base)
            low = base.bfloat16() if low else base
        order, sizes, starts = torch.from_numpy(order_np), sizes_np, starts_np
        for c in range(*clusters):
            own = order[starts[c]:starts[c] + sizes[c]]
            own = own[own < queries]
            if not len(own):
                continue
            probed = [c]  # at least PROBES clusters, and enough rows for k neighbours
            total = int(sizes[c])
            for other in neighbours[c, :-1].tolist():
                if len(probed) >= PROBES and total > k + 1:
                    break
                probed.append(other)
                total += int(sizes[other])
            cand = torch.cat([order[starts[j]:starts[j] + sizes[j]] for j in probed])
            cand_low = low[cand]
            w = min(wide, len(cand) - 1 if exclude_self else len(cand))
            for q in torch.split(own, QUERY_ROWS):
                scores = low[q] @ cand_low.T
                if exclude_self:  # a row's own cluster comes first among its candidates
                    head = scores[:, :int(sizes[c])]
                    head[q[:, None] == cand[None, :int(sizes[c])]] = -torch.inf
                values, at = _top(scores, w)
                found = cand[at]
                if wide > k:
                    values, ranked = torch.sort(_rescore(base, base[q], found), dim=1, descending=True)
                    found = found.gather(1, ranked)
                out.append((q.numpy(), found[:, :k].numpy(), values[:, :k].float().numpy()))
    return out


def approximate_knn(vectors: np.ndarray, k: int, precision: str = "auto", seed: int = 0,
                    engine: Engine | None = None) -> KnnGraph:
    """Approximate cosine kNN, cluster by cluster (see ``PROBES``), with fp32 similarities; rows never list
    themselves. ``engine``: a distributed one searches ranges of clusters as tasks (the clustering stays here)."""
    v = _validate(vectors, k)
    indices, _ = _partitioned(v, min(k + TIE_MARGIN, len(v) - 1), len(v), exclude_self=True, rescore=True,
                              precision=precision, seed=seed, engine=engine)
    return _canonical(v, indices).first(k)


def approximate_nearest(base: np.ndarray | torch.Tensor, k: int, queries: int, precision: str = "auto",
                        seed: int = 0) -> np.ndarray:
    """For each of the first ``queries`` rows of ``base``, about the ``k`` rows with the largest bf16 products
    (itself included): for candidate searches too large for :func:`nearest`, verified exactly afterwards."""
    return _partitioned(base, min(k, len(base)), queries, exclude_self=False, rescore=False,
                        precision=precision, seed=seed)[0]


def knn(vectors: np.ndarray, k: int, exact_max: int, precision: str = "auto", engine: Engine | None = None
        ) -> KnnGraph:
    """The exact graph up to ``exact_max`` rows, the approximate one beyond, on ``engine``."""
    if len(vectors) <= exact_max:
        return exact_knn(vectors, k, precision=precision, engine=engine)
    return approximate_knn(vectors, k, precision=precision, engine=engine)


def recall(graph: KnnGraph, vectors: np.ndarray, rows: np.ndarray) -> float:
    """Share of the true ``graph.k`` nearest neighbours of ``rows`` that the graph lists (exact search), a few
    rows at a time (200 rows' scores against a million, and their sort order, were 3 GB at once)."""
    v = as_vectors(vectors)
    found = 0
    for start in range(0, len(rows), 16):
        part = np.asarray(rows[start:start + 16])
        sims = v[part] @ v.T
        sims[np.arange(len(part)), part] = -np.inf
        truth = np.argpartition(-sims, graph.k, axis=1)[:, : graph.k]
        found += sum(len(set(t) & set(g)) for t, g in zip(truth.tolist(), graph.indices[part].tolist(), strict=True))
    return found / (graph.k * len(rows))


MERGE_ROWS = 1 << 16  # untouched rows merged at a time (their vectors are copied out of the matrix)
# How far a bf16 product of unit vectors may fall below the exact cosine: inputs rounded to 8 significant bits
# (at most 2 x 2^-9 of the product, by Cauchy-Schwarz) and the result rounded once more: under 0.006.
BF16_SLACK = 0.02


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
    bf16 = use_bf16(precision)
    with torch.inference_mode():
        if len(fresh):  # afresh: every row that is new or lost a neighbour
            low_t = base.T.bfloat16().contiguous() if bf16 else None
            indices[fresh], sims[fresh], _ = _search(base, low_t, base[torch.from_numpy(fresh)], fresh, k,
                                                     _block_rows(n, block, bf16))
        added = np.setdiff1d(np.arange(n), kept)
        if len(added) and len(clean):  # the untouched rows merge in their nearest added rows
            among = base[torch.from_numpy(added)]
            low_among = among.T.bfloat16().contiguous() if bf16 else None
            other = low_among if low_among is not None else among.T
            rows_per_block = _block_rows(len(added), block, bf16)
            for start in range(0, len(clean), MERGE_ROWS):
                part = clean[start:start + MERGE_ROWS]
                queries = base[torch.from_numpy(part)]
                # Only rows that an added row may enter: its best product, allowing for rounding, reaches the
                # row's k-th similarity. After 1% more samples most rows have none, and skip the search.
                low_queries = queries.to(other.dtype)
                best = torch.cat([s.amax(dim=1) for _, s in _products(
                    functools.partial(_rows, low_queries), len(part), other, rows_per_block)]).float()
                slack = BF16_SLACK if bf16 else 1e-6
                entered = (best + slack >= torch.from_numpy(sims[part, k - 1])).numpy()
                part, queries = part[entered], queries[torch.from_numpy(entered)]
                if not len(part):
                    continue
                near, near_sims, _ = _search(among, low_among, queries, None, k, rows_per_block)
                both_i = np.concatenate([indices[part], added[near]], axis=1)
                both_s = np.concatenate([sims[part], near_sims], axis=1)
                order = np.argsort(-both_s, axis=1, kind="stable")[:, :k]
                indices[part] = np.take_along_axis(both_i, order, axis=1)
                sims[part] = np.take_along_axis(both_s, order, axis=1)
    return _canonical(v, indices)  # in canonical order; rows tied at the k-th place are kept as searched
