"""What the Ray engine costs on one machine: the same work local and on a local Ray cluster, and the ratio.

    python benchmarks/ray_overhead.py [--n 10000] [--image-size 112]

Three steps of a run, each timed with both engines on this machine: embedding real Fashion-MNIST PNGs
(efficientnet-lite0, real weights, fresh caches), the exact kNN graph (k 50) of those vectors, and the pixel
verification of the duplicate finder's candidate pairs (a pair's thumbnails aligned; here every image with
its 10 nearest in the graph). Ray's start is timed apart (a cluster is started once, not per step). The
results are checked equal (vectors: cosine; graph: neighbours; verification: scores). Also printed: the
per-image costs that the README's estimate for 10M and 100M images builds on. Results also go to
benchmarks/results/ray_overhead.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import fashion_mnist_files, write_results


def _timed(step: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = step()
    return time.perf_counter() - t, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--image-size", type=int, default=112)
    args = parser.parse_args()

    import lookalike.dedup as dedup
    from lookalike.dedup.alignment import verify
    from lookalike.embedding import EmbeddingCache, embed_files
    from lookalike.engines import LocalEngine, RayEngine
    from lookalike.graph import exact_knn
    from lookalike.models import get_embedder

    embedder = get_embedder("efficientnet-lite0", image_size=args.image_size)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths, _ = fashion_mnist_files(args.n, Path(tmp))
        start_s, ray_engine = _timed(RayEngine)
        results = {}
        for engine in (LocalEngine(), ray_engine):
            cache = EmbeddingCache(Path(tmp) / f"{engine.name}.sqlite")
            seconds, result = _timed(lambda e=engine, c=cache: embed_files(paths, embedder, c, batch_size=64,
                                                                           num_workers=2, engine=e))
            hashes = [h for h in result.hashes if h]
            thumbs = cache.thumbnails(hashes).thumbs
            cache.close()
            vectors = result.matrix(sorted(result.vectors))
            graph_s, graph = _timed(lambda e=engine, v=vectors: exact_knn(v, 50, engine=e))
            pairs = np.stack([np.repeat(np.arange(len(vectors)), 10), graph.indices[:, :10].ravel()], axis=1)
            pairs = np.unique(np.sort(pairs, axis=1), axis=0)
            verify_s, scores = _timed(lambda e=engine, t=thumbs, p=pairs: dedup._verified(e, verify, t, p))
            rows[engine.name] = {"embed_s": seconds, "graph_s": graph_s, "verify_s": verify_s}
            results[engine.name] = (vectors, graph, scores, len(pairs))
            print(f"{engine.name:6s} embed {seconds:7.1f} s ({args.n / seconds:6.1f} img/s)   graph {graph_s:6.2f} s   "
                  f"verify {len(pairs)} pairs {verify_s:6.2f} s", flush=True)
    (lv, lg, ls, npairs), (rv, rg, rs, _) = results["local"], results["ray"]
    cosine = float(np.min(np.sum(lv * rv, axis=1)))
    same_graph = float(np.mean(lg.indices == rg.indices))
    score_diff = float(np.max(np.abs(ls - rs)))
    print(f"\nRay start (local cluster, once): {start_s:.1f} s")
    print(f"{'step':10s} {'local s':>9s} {'ray s':>9s} {'ray/local':>10s}")
    ratios = {}
    for step in ("embed_s", "graph_s", "verify_s"):
        ratios[step] = rows["ray"][step] / rows["local"][step]
        print(f"{step[:-2]:10s} {rows['local'][step]:9.2f} {rows['ray'][step]:9.2f} {ratios[step]:9.2f}x")
    total_local = sum(rows["local"].values())
    total_ray = sum(rows["ray"].values())
    print(f"{'all':10s} {total_local:9.2f} {total_ray:9.2f} {total_ray / total_local:9.2f}x "
          f"(+ {start_s:.1f} s to start Ray)")
    print(f"equal: vectors min cosine {cosine:.6f}; graph neighbours equal {same_graph:.4f}; "
          f"verification max score difference {score_diff:.2e}")
    per_image = {"embed_ms": 1000 * rows["local"]["embed_s"] / args.n,
                 "verify_us_per_pair": 1e6 * rows["local"]["verify_s"] / npairs}
    print(f"per image here (2 cores): embed {per_image['embed_ms']:.2f} ms at {args.image_size} px; verification "
          f"{per_image['verify_us_per_pair']:.1f} us a pair")
    write_results("ray_overhead", {"n": args.n, "image_size": args.image_size, "ray_start_s": start_s,
                                   "seconds": rows, "ratios": ratios, "min_cosine": cosine,
                                   "graph_equal": same_graph, "score_diff": score_diff, "per_image": per_image})


if __name__ == "__main__":
    main()
