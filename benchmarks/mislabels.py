"""Label noise: lookalike vs cleanlab vs a plain kNN vote, on the same real embeddings.

    python benchmarks/mislabels.py --n 20000 --noise 0.1   (also try --noise 0.05, 0.2, 0.3)

EfficientNet-Lite0 embeddings (112 px) of the first N Fashion-MNIST train images (``--set textile``: the
2,000 textile images in 3 classes, a held-out check of the defaults); a seeded 10% of labels flipped to
another class. Prints precision, recall, F1 of each method's flags and AUPRC of its
ranking, plus an ablation of lookalike's steps.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from common import CACHE, embeddings
from lookalike.graph import KnnGraph, exact_knn
from lookalike.label_issues import DEFAULT_K, find_mislabels


def scores(flag: np.ndarray, rank_score: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, float]:
    from sklearn.metrics import average_precision_score

    tp = (flag & truth).sum()
    p = tp / max(1, flag.sum())
    r = tp / max(1, truth.sum())
    return p, r, 2 * p * r / max(1e-12, p + r), average_precision_score(truth, rank_score)


def textile() -> tuple[np.ndarray, np.ndarray]:
    """EfficientNet-Lite0 (112 px) embeddings of the textile images and their class (folder) numbers."""
    import torch
    from conformal_clip_data import textile_simulated_root
    from PIL import Image

    from lookalike.models import get_embedder

    files = sorted(p for p in textile_simulated_root().rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    names = sorted({f.parent.name for f in files})
    labels = np.array([names.index(f.parent.name) for f in files])
    path = CACHE / "textile-effnet-lite0-112px.npy"
    if not path.exists():
        model = get_embedder("efficientnet-lite0", image_size=112)
        CACHE.mkdir(exist_ok=True)
        np.save(path, np.concatenate([
            model.embed_images(torch.stack([model.preprocess(Image.open(f).convert("RGB")) for f in files[s:s + 64]]))
            for s in range(0, len(files), 64)]))
    return np.load(path), labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--k", type=int, default=DEFAULT_K)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", choices=["fashion", "textile"], default="fashion")
    args = p.parse_args()

    v, true_labels = embeddings(args.n) if args.set == "fashion" else textile()
    args.n = len(v)
    true_labels = true_labels.astype(np.int64)
    classes = int(true_labels.max()) + 1
    rng = np.random.default_rng(args.seed)
    noisy = true_labels.copy()
    flipped = rng.choice(args.n, int(args.noise * args.n), replace=False)
    noisy[flipped] = (noisy[flipped] + rng.integers(1, classes, len(flipped))) % classes
    truth = noisy != true_labels

    t = time.perf_counter()
    graph = exact_knn(v, args.k)
    graph_s = time.perf_counter() - t
    rows: list[tuple[str, tuple[float, float, float, float], float]] = []

    t = time.perf_counter()
    res = find_mislabels(graph, noisy)
    rows.append(("lookalike (default)", scores(res.flag, res.score, truth), time.perf_counter() - t + graph_s))
    ten = graph.first(10)  # the baselines' k
    variants: list[tuple[str, KnnGraph, dict[str, Any]]] = [
        ("  - k=10", ten, {}), ("  - unweighted votes (power 0)", graph, {"power": 0.0}),
        ("  - flag below support 0.1", graph, {"max_support": 0.1}),
        ("  - flag below support 0.3", graph, {"max_support": 0.3})]
    for label, g, kwargs in variants:
        r = find_mislabels(g, noisy, **kwargs)
        rows.append((label, scores(r.flag, r.score, truth), float("nan")))
    suggested_ok = float((res.suggested[truth & res.flag] == true_labels[truth & res.flag]).mean())

    # Plain kNN plurality vote: flag when the neighbours' majority label differs.
    votes = np.zeros((args.n, classes))
    np.add.at(votes, (np.repeat(np.arange(args.n), 10), noisy[ten.indices].ravel()), 1)
    knn_probs = votes / 10
    vote_flag = votes.argmax(axis=1) != noisy
    rows.append(("kNN majority vote", scores(vote_flag, 1 - knn_probs[np.arange(args.n), noisy], truth), graph_s))

    # cleanlab as Datalab runs it on features: leave-one-out 10-NN class fractions, then find_label_issues.
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    t = time.perf_counter()
    cl_flag = find_label_issues(noisy, knn_probs)
    cl_rank = 1 - get_label_quality_scores(noisy, knn_probs)
    rows.append(("cleanlab (Datalab's method)", scores(cl_flag, cl_rank, truth), time.perf_counter() - t + graph_s))

    print(f"N={args.n}, {truth.sum()} flipped labels, lookalike k={args.k}, baselines k=10, "
          f"exact graph {graph_s:.1f} s")
    print(f"{'method':<32} {'P':>6} {'R':>6} {'F1':>6} {'AUPRC':>6} {'time s':>7}")
    for name, (pr, rc, f1, ap), secs in rows:
        print(f"{name:<32} {pr:>6.3f} {rc:>6.3f} {f1:>6.3f} {ap:>6.3f} {secs:>7.1f}")
    print(f"lookalike's suggested label is the true one for {suggested_ok:.1%} of the flipped samples it flags")


if __name__ == "__main__":
    main()
