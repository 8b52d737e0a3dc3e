"""Embedded vector stores on real embeddings: qdrant-edge vs qdrant-client local mode vs exact NumPy.

    python benchmarks/index_stores.py --sizes 10000 100000

Embeddings: EfficientNet-Lite0 (1280-d, 112 px) of Fashion-MNIST (70,000 images; beyond that, their
horizontal flips), computed once and cached in benchmarks/.cache/. For each size it prints upsert rate,
index build time, single-query latency p50/p99, recall@10 against exact search, reopen time and disk use.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from common import embeddings
from lookalike.index import EdgeIndex, ExactIndex, QdrantIndex

K = 10


def _top_ids(index: QdrantIndex, query: np.ndarray) -> list[str]:
    return [h.id for h in index.query(query, K)[0]]


def _latencies(query: Callable[[np.ndarray], list[str]], queries: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(query(q))
        times.append(time.perf_counter() - t)
    return found, np.array(times) * 1000


def _recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def _disk_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) / 1024


def bench(n: int, n_queries: int, slow_queries: int, rng: np.random.Generator) -> list[dict]:
    v, _ = embeddings(n)
    ids = [f"{i:024x}" for i in range(n)]
    payloads: list[dict[str, Any]] = [{"label": None, "split": None, "tags": []} for _ in range(n)]
    queries = v[rng.choice(n, n_queries, replace=False)]
    rows = []

    exact = ExactIndex(v.shape[1])
    t = time.perf_counter()
    exact.upsert(ids, v, payloads)
    upsert_s = time.perf_counter() - t
    truth, lat = _latencies(lambda q: [h.id for h in exact.query(q, K)[0]], queries)
    rows.append(dict(store="exact (NumPy)", n=n, upsert=n / upsert_s, build=0.0, p50=np.median(lat),
                     p99=np.percentile(lat, 99), recall=1.0, reopen=float("nan"), disk=0.0))

    tmp = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    try:
        edge = EdgeIndex(tmp / "edge", v.shape[1], "bench")
        with edge.session():
            t = time.perf_counter()
            edge.upsert(ids, v, payloads)
            upsert_s = time.perf_counter() - t
            plain, lat_plain = _latencies(lambda q: [h.id for h in edge.query(q, K)[0]], queries[:slow_queries])
            t = time.perf_counter()
            edge.optimize()
            build_s = time.perf_counter() - t
            found, lat = _latencies(lambda q: [h.id for h in edge.query(q, K)[0]], queries)
        t = time.perf_counter()
        edge.query(queries[:1], K)  # opens the shard, queries, closes it
        reopen_s = time.perf_counter() - t
        rows.append(dict(store="qdrant-edge, no HNSW", n=n, upsert=n / upsert_s, build=0.0, p50=np.median(lat_plain),
                         p99=np.percentile(lat_plain, 99), recall=_recall(plain, truth[:slow_queries]),
                         reopen=float("nan"), disk=float("nan")))
        rows.append(dict(store="qdrant-edge, HNSW", n=n, upsert=n / upsert_s, build=build_s, p50=np.median(lat),
                         p99=np.percentile(lat, 99), recall=_recall(found, truth), reopen=reopen_s,
                         disk=_disk_mb(tmp / "edge")))

        for label, path in (("qdrant-client :memory:", ":memory:"), ("qdrant-client local disk", str(tmp / "qc"))):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # local mode warns above 20,000 points
                qc = QdrantIndex.connect("bench", v.shape[1], path=path)
                t = time.perf_counter()
                qc.upsert(ids, v, payloads)
                upsert_s = time.perf_counter() - t
                found, lat = _latencies(partial(_top_ids, qc), queries[:slow_queries])
                reopen_s, disk = float("nan"), 0.0
                if path != ":memory:":
                    qc.client.close()
                    t = time.perf_counter()
                    QdrantIndex.connect("bench", v.shape[1], path=path).count()
                    reopen_s = time.perf_counter() - t
                    disk = _disk_mb(Path(path))
            rows.append(dict(store=label, n=n, upsert=n / upsert_s, build=0.0, p50=np.median(lat),
                             p99=np.percentile(lat, 99), recall=_recall(found, truth[:slow_queries]),
                             reopen=reopen_s, disk=disk))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--queries", type=int, default=200, help="queries for the fast stores")
    p.add_argument("--slow-queries", type=int, default=50, help="queries for qdrant-client local and unindexed edge")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    header = (f"{'store':<26} {'N':>7} {'upsert/s':>9} {'build s':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'recall@10':>9} {'reopen s':>8} {'disk MB':>8}")
    rows = [row for n in args.sizes for row in bench(n, args.queries, args.slow_queries, rng)]
    print(header)
    for r in rows:
        print(f"{r['store']:<26} {r['n']:>7} {r['upsert']:>9.0f} {r['build']:>8.1f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
              f"{r['recall']:>9.3f} {r['reopen']:>8.2f} {r['disk']:>8.1f}")


if __name__ == "__main__":
    main()
