"""Time and peak memory: lookalike's graph and analyses vs fiftyone-brain and cleanlab, on the same vectors.

    python benchmarks/speed.py --sizes 10000 60000

Real EfficientNet-Lite0 embeddings (1280-d) of the first N Fashion-MNIST images (benchmarks/common.py).
Each job runs in a fresh process (so peak RSS is its own, imports included); the vectors are given to
every tool, so no job embeds anything. lookalike's duplicate finder also reads the 28-px images (its
thumbnails are made during embedding in real use; here from the arrays, and timed).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from common import embeddings, fashion_mnist


def _graph(v: np.ndarray) -> Any:
    """What lookalike builds: exact up to the default ``exact_graph_max``, NN-descent beyond."""
    from lookalike.config import IndexConfig
    from lookalike.graph import knn

    return knn(v, 50, IndexConfig().exact_graph_max)


def lookalike_graph(v: np.ndarray, labels: np.ndarray) -> None:
    _graph(v)


def lookalike_all(v: np.ndarray, labels: np.ndarray) -> None:
    """The graph once, then every analysis on it (what `lookalike run` does after embedding)."""
    from lookalike import maps
    from lookalike.label_issues import find_mislabels

    graph = _graph(v)
    find_mislabels(graph, labels, n_classes=10)
    maps.uniqueness(graph)
    _duplicates(v, graph)
    maps.clusters(maps.layout(v, graph))


def _duplicates(v: np.ndarray, graph: Any) -> None:
    """The duplicate finder as `lookalike duplicates` runs it (28-px images: too small for keypoints)."""
    from PIL import Image

    from lookalike.dedup import find_duplicates, image_facts

    images, _ = fashion_mnist(len(v))
    facts = [image_facts(Image.fromarray(a)) for a in images]
    find_duplicates(facts, [str(i) for i in range(len(v))], [None] * len(v), graph=graph.first(10),
                    open_image=lambda r: Image.fromarray(images[r]))


def lookalike_duplicates(v: np.ndarray, labels: np.ndarray) -> None:
    _duplicates(v, _graph(v))


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
    "lookalike: 50-NN graph": lookalike_graph,
    "lookalike: near duplicates (graph + pixels)": lookalike_duplicates,
    "lookalike: graph + all analyses": lookalike_all,
    "fiftyone-brain: near duplicates": brain_near_duplicates,
    "fiftyone-brain: uniqueness": brain_uniqueness,
    "cleanlab: label issues (kNN)": cleanlab_label_issues,
}


def _child(name: str, n: int, out: Any) -> None:
    v, labels = embeddings(n)
    t = time.perf_counter()
    inner = JOBS[name](v, labels)
    seconds = inner if isinstance(inner, float) else time.perf_counter() - t
    out.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(name: str, n: int) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=_child, args=(name, n, out))
    p.start()
    p.join()
    if p.exitcode != 0:
        return float("nan"), float("nan")
    return out.get()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=int, default=[10_000, 60_000])
    p.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    args = p.parse_args()
    print(f"{'job':<46} {'N':>7} {'seconds':>9} {'peak RSS MB':>12}")
    for n in args.sizes:
        for name in args.jobs:
            seconds, rss = measure(name, n)
            print(f"{name:<46} {n:>7} {seconds:>9.1f} {rss:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
