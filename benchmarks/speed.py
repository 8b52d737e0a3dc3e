"""Time and peak memory: lookalike's graph and analyses vs fiftyone-brain and cleanlab, on the same vectors.

    python benchmarks/speed.py --sizes 10000 60000 [--dims 1280 512]

Real EfficientNet-Lite0 embeddings (1280-d) of the first N Fashion-MNIST images (benchmarks/common.py);
``--dims 512`` projects them to 512-d (seeded Gaussian projection, renormalised: the size of CLIP's).
Each job runs in a fresh process (so peak RSS is its own, imports included); the vectors are given to
every tool, so no job embeds anything. lookalike's duplicate finder also reads the 28-px images (its
thumbnails are made during embedding in real use; here from the arrays, and timed), and once more upscaled
to 64 px: images larger than a thumbnail, which the crop search and keypoint matching look at.

The floor is the bare bf16 product that an exact graph cannot avoid (every row against every row, in
the same blocks, nothing selected); the exact graph's ratio to it is printed, and its recall@50 and top-1
against the fp32 exact graph. Results also go to benchmarks/results/speed.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from common import RESULTS, embeddings, fashion_mnist


def _graph(v: np.ndarray) -> Any:
    """What lookalike builds: exact up to the default ``exact_graph_max``, approximate (cluster by cluster) beyond."""
    from lookalike.config import IndexConfig
    from lookalike.graph import knn

    return knn(v, 50, IndexConfig().exact_graph_max)


def lookalike_graph(v: np.ndarray, labels: np.ndarray) -> None:
    _graph(v)


def bf16_gemm_floor(v: np.ndarray, labels: np.ndarray) -> None:
    """Every row's bf16 products with every row, in the exact graph's blocks; nothing selected."""
    import torch

    from lookalike.graph import _block_rows

    low_t = torch.from_numpy(v).T.bfloat16().contiguous()  # as the graph holds them
    block = _block_rows(len(v), None, bf16=True)
    out = torch.empty(block, len(v), dtype=torch.bfloat16)
    with torch.inference_mode():
        for start in range(0, len(v), block):
            queries = low_t[:, start:start + block].T
            torch.matmul(queries, low_t, out=out[:len(queries)])


def exact_bf16(v: np.ndarray, labels: np.ndarray) -> None:
    from lookalike.graph import exact_knn

    np.save(RESULTS / f"graph-bf16-{len(v)}-{v.shape[1]}.npy", exact_knn(v, 50, precision="bf16").indices)


def exact_fp32(v: np.ndarray, labels: np.ndarray) -> None:
    from lookalike.graph import exact_knn

    np.save(RESULTS / f"graph-fp32-{len(v)}-{v.shape[1]}.npy", exact_knn(v, 50, precision="fp32").indices)


def lookalike_all(v: np.ndarray, labels: np.ndarray) -> None:
    """The graph once, then every analysis on it (what `lookalike run` does after embedding)."""
    from lookalike import maps
    from lookalike.label_issues import find_mislabels

    graph = _graph(v)
    find_mislabels(graph, labels, n_classes=10)
    maps.uniqueness(graph)
    _duplicates(v, graph)
    maps.clusters(maps.layout(v, graph))


def _duplicates(v: np.ndarray, graph: Any, side: int = 28) -> None:
    """The duplicate finder as `lookalike duplicates` runs it, on the images at ``side`` pixels: at 28 (as they
    are) too small for keypoints or the crop search; upscaled to 64, large enough for the crop search."""
    from PIL import Image

    from lookalike.dedup import find_duplicates
    from lookalike.thumbnails import image_facts

    images, _ = fashion_mnist(len(v))

    def image(row: int) -> Image.Image:
        im = Image.fromarray(images[row])
        return im if side == 28 else im.resize((side, side), Image.Resampling.BICUBIC)

    facts = [image_facts(image(r)) for r in range(len(images))]
    find_duplicates(facts, [str(i) for i in range(len(v))], [None] * len(v), graph=graph.first(10), open_image=image)


def lookalike_duplicates(v: np.ndarray, labels: np.ndarray) -> None:
    _duplicates(v, _graph(v))


def lookalike_duplicates_64px(v: np.ndarray, labels: np.ndarray) -> None:
    _duplicates(v, _graph(v), side=64)


def _brain_dataset(n: int) -> Any:
    import fiftyone as fo

    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f"/nonexistent/{i}.png") for i in range(n)], progress=False)
    return ds


def brain_near_duplicates(v: np.ndarray, labels: np.ndarray) -> float:
    import fiftyone.brain as fob

    ds = _brain_dataset(len(v))
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fob.compute_near_duplicates(ds, embeddings=v, progress=False)
    return time.perf_counter() - t


def brain_uniqueness(v: np.ndarray, labels: np.ndarray) -> float:
    import fiftyone.brain as fob

    ds = _brain_dataset(len(v))
    t = time.perf_counter()
    fob.compute_uniqueness(ds, embeddings=v, progress=False)
    return time.perf_counter() - t


def cleanlab_label_issues(v: np.ndarray, labels: np.ndarray) -> None:
    """What Datalab does with features: scikit-learn 10-NN (cosine), then find_label_issues."""
    from cleanlab.filter import find_label_issues
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=11, metric="cosine").fit(v)
    _, idx = nn.kneighbors(v)
    votes = np.zeros((len(v), 10))
    np.add.at(votes, (np.repeat(np.arange(len(v)), 10), labels[idx[:, 1:]].ravel()), 1)
    find_label_issues(labels, votes / 10, n_jobs=1)  # its worker pool cannot start in a spawned child


JOBS: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    "floor: bare bf16 GEMM, all pairs": bf16_gemm_floor,
    "lookalike: exact 50-NN graph, bf16 + fp32 re-score": exact_bf16,
    "lookalike: exact 50-NN graph, fp32": exact_fp32,
    "lookalike: 50-NN graph (default path)": lookalike_graph,
    "lookalike: near duplicates (graph + pixels)": lookalike_duplicates,
    "lookalike: near duplicates, images at 64 px": lookalike_duplicates_64px,
    "lookalike: graph + all analyses": lookalike_all,
    "fiftyone-brain: near duplicates": brain_near_duplicates,
    "fiftyone-brain: uniqueness": brain_uniqueness,
    "cleanlab: label issues (kNN)": cleanlab_label_issues,
}


def _vectors(n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    v, labels = embeddings(n)
    if dim != v.shape[1]:
        projection = np.random.default_rng(0).normal(size=(v.shape[1], dim)).astype(np.float32)
        v = v @ projection
        v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v, labels


def _child(name: str, n: int, dim: int, out: Any) -> None:
    v, labels = _vectors(n, dim)
    t = time.perf_counter()
    inner = JOBS[name](v, labels)
    seconds = inner if isinstance(inner, float) else time.perf_counter() - t
    out.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(name: str, n: int, dim: int) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=_child, args=(name, n, dim, out))
    p.start()
    p.join()
    if p.exitcode != 0:
        return float("nan"), float("nan")
    return out.get()


def _recall(n: int, dim: int) -> tuple[float, float] | None:
    """recall@50 and top-1 agreement of the bf16 graph against the fp32 one (where both ran)."""
    paths = [RESULTS / f"graph-{p}-{n}-{dim}.npy" for p in ("bf16", "fp32")]
    if not all(p.exists() for p in paths):
        return None
    bf16, fp32 = (np.load(p) for p in paths)
    hits = (np.sort(bf16, axis=1)[:, :, None] == np.sort(fp32, axis=1)[:, None, :]).any(axis=2).mean()
    return float(hits), float((bf16[:, 0] == fp32[:, 0]).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=int, default=[10_000, 60_000])
    p.add_argument("--dims", nargs="+", type=int, default=[1280])
    p.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    args = p.parse_args()
    RESULTS.mkdir(exist_ok=True)
    results = []
    print(f"{'job':<52} {'N':>7} {'dim':>5} {'seconds':>9} {'peak RSS MB':>12}")
    for dim in args.dims:
        for n in args.sizes:
            times = {}
            for name in args.jobs:
                seconds, rss = measure(name, n, dim)
                times[name] = seconds
                results.append({"job": name, "n": n, "dim": dim, "seconds": seconds, "peak_rss_mb": rss})
                print(f"{name:<52} {n:>7} {dim:>5} {seconds:>9.1f} {rss:>12.0f}", flush=True)
            floor = times.get("floor: bare bf16 GEMM, all pairs")
            graph = times.get("lookalike: exact 50-NN graph, bf16 + fp32 re-score")
            if floor and graph:
                print(f"  exact bf16 graph / bare bf16 GEMM: {graph / floor:.2f}x")
            checked = _recall(n, dim)
            if checked:
                print(f"  bf16 graph vs fp32 exact graph: recall@50 {checked[0]:.5f}, same top-1 {checked[1]:.5f}")
                results.append({"check": "bf16 vs fp32", "n": n, "dim": dim, "recall50": checked[0],
                                "top1": checked[1]})
            brain = times.get("fiftyone-brain: near duplicates")
            ours = times.get("lookalike: near duplicates (graph + pixels)")
            if brain and ours:
                print(f"  near duplicates: fiftyone-brain / lookalike = {brain / ours:.1f}x")
    (RESULTS / "speed.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
