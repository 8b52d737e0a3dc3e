"""The embedded Qdrant store (qdrant-edge) at scale: upsert, HNSW build, top-10 query latency and recall
against exact search, unfiltered and filtered by label and by split (payload indexes).

    python benchmarks/store_scale.py --n 1000000 [--dim 512] [--queries 200]

Vectors: those of benchmarks/scale.py (real EfficientNet-Lite0 embeddings of 100k Fashion-MNIST images,
the rest their source's vector plus seeded noise, projected to ``--dim``), with the payload lookalike
writes (label, split, tags). Queries are indexed vectors (their own point excluded from the truth and the
hits, as `lookalike similar --sample` does). Results also go to benchmarks/results/store-N.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS
from lookalike.index import EdgeIndex
from scale import CLASSES, vectors_for

K = 10


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    args = p.parse_args()
    v = vectors_for(args.n, args.dim)
    rng = np.random.default_rng(0)
    labels = np.array([CLASSES[i % len(CLASSES)] for i in rng.integers(0, len(CLASSES), args.n)])
    splits = np.where(np.arange(args.n) % 10 == 0, "test", "train")
    ids = [f"{i:024x}" for i in range(args.n)]
    payloads = [{"label": str(labels[i]), "split": str(splits[i]), "tags": []} for i in range(args.n)]
    queries = rng.choice(args.n, args.queries, replace=False)
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-store-"))
    out: dict[str, object] = {"n": args.n, "dim": args.dim}
    try:
        store = EdgeIndex(tmp / "edge", args.dim, "bench")
        with store.session():
            t = time.perf_counter()
            for start in range(0, args.n, 50_000):
                store.upsert(ids[start:start + 50_000], v[start:start + 50_000], payloads[start:start + 50_000])
            out["upsert_s"] = time.perf_counter() - t
            t = time.perf_counter()
            store.optimize()
            out["hnsw_build_s"] = time.perf_counter() - t
            print(f"upsert {out['upsert_s']:.1f} s, HNSW build {out['hnsw_build_s']:.1f} s", flush=True)
            for name, where in (("unfiltered", None), ("label", "label"), ("split", "split")):
                times, recalls = [], []
                for q in queries:
                    mask = np.ones(args.n, dtype=bool)
                    flt = None
                    if where == "label":
                        flt, mask = {"label": str(labels[q])}, labels == labels[q]
                    elif where == "split":
                        flt, mask = {"split": "test"}, splits == "test"
                    sims = v @ v[q]
                    sims[~mask] = -np.inf
                    sims[q] = -np.inf
                    truth = {ids[i] for i in np.argpartition(-sims, K)[:K]}
                    t = time.perf_counter()
                    hits = store.query(v[q:q + 1], K, where=flt, exclude=[ids[q]])[0]
                    times.append(time.perf_counter() - t)
                    recalls.append(len({h.id for h in hits} & truth) / K)
                row = {"p50_ms": 1000 * float(np.median(times)), "p99_ms": 1000 * float(np.percentile(times, 99)),
                       "recall_at_10": float(np.mean(recalls))}
                out[name] = row
                print(f"{name:<11} p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
                      f"recall@10 {row['recall_at_10']:.4f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"store-{args.n}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
