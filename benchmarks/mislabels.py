"""Label noise: lookalike vs cleanlab's two paths vs a plain kNN vote, on the same real embeddings.

    python benchmarks/mislabels.py                       (every set, noise 5/10/20/30%)
    python benchmarks/mislabels.py --sets fashion --noise 0.1 --n 20000

EfficientNet-Lite0 embeddings (112 px) of three sets: the first N Fashion-MNIST train images (10 classes),
the 2,000 textile images (3 classes; PyPI conformal-clip-data) and, held out from every choice of default,
scikit-learn's 1,797 digits (10 classes, 8 px upscaled). A seeded share of labels is flipped to another
class. Per set and noise level, precision, recall, F1 of each method's flags and AUPRC of its ranking:
- lookalike (default): neighbour votes mixed with a cross-validated linear probe, flagged against the best
  other class (:mod:`lookalike.label_issues`); ``--no-probe``: the neighbours alone;
- cleanlab, kNN path (what Datalab does with features): 10-NN class fractions into ``find_label_issues``;
- cleanlab, probe path (its recommended practice): out-of-sample probabilities of a cross-validated
  logistic regression, regularisation chosen by cross-validated log-loss, into
  ``find_label_issues(filter_by="both")`` (the same probabilities lookalike's probe makes);
- a 10-NN majority vote.
Then lookalike's F1 minus the better cleanlab path's, per set and noise (goal: >= +0.03 everywhere).
Writes benchmarks/results/mislabels.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import embedded, embeddings, textile, write_results
from lookalike.graph import KnnGraph, exact_knn
from lookalike.label_issues import DEFAULT_K, find_mislabels
from lookalike.probe import out_of_sample_probs

SETS = ("fashion", "textile", "digits")
NOISE = (0.05, 0.1, 0.2, 0.3)


def scores(flag: np.ndarray, rank_score: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, float]:
    from sklearn.metrics import average_precision_score

    tp = (flag & truth).sum()
    p = tp / max(1, flag.sum())
    r = tp / max(1, truth.sum())
    return float(p), float(r), float(2 * p * r / max(1e-12, p + r)), float(average_precision_score(truth, rank_score))


def digits() -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of scikit-learn's 8 x 8 digits (grey levels 0-16 stretched to 0-255) and their digits."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    return embedded("digits", lambda: [Image.fromarray((im * 255 / 16).astype(np.uint8)) for im in d.images]), d.target


def load(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    if name == "fashion":
        return embeddings(n)
    return textile() if name == "textile" else digits()


def flip(labels: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """A seeded ``noise`` share of labels flipped to another class, uniformly."""
    classes = int(labels.max()) + 1
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    flipped = rng.choice(len(labels), int(noise * len(labels)), replace=False)
    noisy[flipped] = (noisy[flipped] + rng.integers(1, classes, len(flipped))) % classes
    return noisy


def compare(v: np.ndarray, graph: KnnGraph, true_labels: np.ndarray, noise: float, seed: int,
            graph_s: float) -> dict[str, dict[str, float]]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    n, classes = len(v), int(true_labels.max()) + 1
    noisy = flip(true_labels, noise, seed)
    truth = noisy != true_labels
    rows: dict[str, dict[str, float]] = {}

    def add(name: str, flag: np.ndarray, rank: np.ndarray, seconds: float) -> None:
        p, r, f1, ap = scores(flag, rank, truth)
        rows[name] = {"precision": p, "recall": r, "f1": f1, "auprc": ap, "seconds": seconds}

    t = time.perf_counter()
    probe, _ = out_of_sample_probs(v, noisy, classes, seed=seed)
    probe_s = time.perf_counter() - t
    t = time.perf_counter()
    res = find_mislabels(graph, noisy, classes, probe_probs=probe)
    add("lookalike (default)", res.flag, res.score, time.perf_counter() - t + graph_s + probe_s)
    t = time.perf_counter()
    alone = find_mislabels(graph, noisy, classes)
    add("lookalike --no-probe", alone.flag, alone.score, time.perf_counter() - t + graph_s)
    rows["lookalike (default)"]["suggested_right"] = float(
        (res.suggested[truth & res.flag] == true_labels[truth & res.flag]).mean())

    ten = graph.first(10)  # the baselines' k
    votes = np.zeros((n, classes))
    np.add.at(votes, (np.repeat(np.arange(n), 10), noisy[ten.indices].ravel()), 1)
    knn_probs = votes / 10
    t = time.perf_counter()
    add("cleanlab, kNN path", find_label_issues(noisy, knn_probs),
        1 - get_label_quality_scores(noisy, knn_probs), time.perf_counter() - t + graph_s)
    t = time.perf_counter()
    add("cleanlab, probe path", find_label_issues(noisy, probe, filter_by="both"),
        1 - get_label_quality_scores(noisy, probe), time.perf_counter() - t + probe_s)
    add("10-NN majority vote", votes.argmax(axis=1) != noisy, 1 - knn_probs[np.arange(n), noisy], graph_s)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    p.add_argument("--noise", nargs="+", type=float, default=list(NOISE))
    p.add_argument("--n", type=int, default=20_000, help="Fashion-MNIST images")
    p.add_argument("--k", type=int, default=DEFAULT_K)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for name in args.sets:
        v, true_labels = load(name, args.n)
        true_labels = true_labels.astype(np.int64)
        t = time.perf_counter()
        graph = exact_knn(v, args.k)
        graph_s = time.perf_counter() - t
        results[name] = {}
        for noise in args.noise:
            rows = compare(v, graph, true_labels, noise, args.seed, graph_s)
            results[name][str(noise)] = rows
            print(f"\n{name}: N={len(v)}, {noise:.0%} of labels flipped, lookalike k={args.k}, baselines k=10")
            print(f"  {'method':<26} {'P':>6} {'R':>6} {'F1':>6} {'AUPRC':>6} {'time s':>7}")
            for method, r in rows.items():
                print(f"  {method:<26} {r['precision']:>6.3f} {r['recall']:>6.3f} {r['f1']:>6.3f} {r['auprc']:>6.3f} "
                      f"{r['seconds']:>7.1f}")
            print(f"  lookalike's suggested label is the true one for "
                  f"{rows['lookalike (default)']['suggested_right']:.1%} of the flipped samples it flags")
    print("\nF1, lookalike (default) minus the better cleanlab path (goal >= +0.03):")
    print(f"  {'set':<10}" + "".join(f"{n:>8.0%}" for n in args.noise))
    for name, by_noise in results.items():
        margins = [r["lookalike (default)"]["f1"] - max(r["cleanlab, kNN path"]["f1"], r["cleanlab, probe path"]["f1"])
                   for r in by_noise.values()]
        print(f"  {name:<10}" + "".join(f"{m:>+8.3f}" for m in margins))
    write_results("mislabels", {"k": args.k, "seed": args.seed, "n_fashion": args.n, "results": results})


if __name__ == "__main__":
    main()
