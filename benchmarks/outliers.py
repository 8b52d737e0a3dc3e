"""Outliers: lookalike vs cleanlab's out-of-distribution score, on planted out-of-distribution images.

    python benchmarks/outliers.py

Sets of real EfficientNet-Lite0 embeddings (112 px), with planted images of the other kind:
- ``fashion``: 5,000 Fashion-MNIST images + 10 textile images (PyPI conformal-clip-data);
- ``fashion-50``: the same + 50 textiles (1%; they are each other's neighbours: a group, not outliers);
- ``textile``: the 2,000 textile images + 20 Fashion-MNIST images (1%).
Prints AUROC (planted = positive), precision among the top-scored as many as were planted, and, for
lookalike, the precision and recall of its flag. Methods on the same vectors and k = 10: lookalike's score
(the larger of two measures judged against the collection: the mean neighbour distance, cleanlab's measure,
and the Ledoit-Wolf Mahalanobis distance), the neighbour distance alone and divided by the neighbours'
(local), cleanlab ``OutOfDistribution`` (features), and lookalike's uniqueness (fiftyone-brain's method).
Writes benchmarks/results/outliers.json.
"""

from __future__ import annotations

import time

import numpy as np

from common import embeddings, textile, write_results
from lookalike.graph import exact_knn
from lookalike.maps import uniqueness
from lookalike.outlier_scores import DEFAULT_K, outlier_scores


def evaluate(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    top = np.argsort(-scores, kind="stable")[: int(truth.sum())]
    return {"auroc": float(roc_auc_score(truth, scores)), "precision_at_planted": float(truth[top].mean())}


def main() -> None:
    fashion, _ = embeddings(5000)
    textiles, _ = textile()
    rng = np.random.default_rng(0)
    planted = textiles[rng.choice(len(textiles), 50, replace=False)]
    sets = {"fashion": (fashion, planted[:10]), "fashion-50": (fashion, planted),
            "textile": (textiles, fashion[rng.choice(len(fashion), 20, replace=False)])}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, (clean, planted) in sets.items():
        vectors = np.concatenate([clean, planted]).astype(np.float32)
        truth = np.r_[np.zeros(len(clean), bool), np.ones(len(planted), bool)]
        graph = exact_knn(vectors, DEFAULT_K)
        print(f"\n{name}: {len(clean)} + {len(planted)} planted")
        print(f"  {'method':<34} {'AUROC':>7} {'P@planted':>10} {'flag P':>7} {'flag R':>7} {'seconds':>8}")
        rows = {}
        t0 = time.perf_counter()
        ours = outlier_scores(graph, vectors=vectors)
        rows["lookalike (default)"] = (ours, time.perf_counter() - t0)
        rows["lookalike, neighbour distance alone"] = (outlier_scores(graph), 0.0)
        rows["lookalike, local (LOF-like)"] = (outlier_scores(graph, local=True), 0.0)
        rows["uniqueness (fiftyone-brain's method)"] = (uniqueness(graph), 0.0)
        try:
            from cleanlab.outlier import OutOfDistribution

            t0 = time.perf_counter()
            ood = OutOfDistribution(params={"k": DEFAULT_K})
            cl = 1 - ood.fit_score(features=vectors)  # its score: lower = more out of distribution
            rows["cleanlab OutOfDistribution"] = (cl, time.perf_counter() - t0)
        except ImportError:
            print("  (cleanlab not installed: pip install -e '.[bench]')")
        results[name] = {}
        for method, (scores, seconds) in rows.items():
            r = evaluate(np.asarray(scores, np.float64), truth)
            if method.startswith("lookalike"):
                flags = scores >= 0.5
                r["flag_precision"] = float(truth[flags].mean()) if flags.any() else 0.0
                r["flag_recall"] = float(flags[truth].mean())
            results[name][method] = r
            flag = f"{r['flag_precision']:7.2f} {r['flag_recall']:7.2f}" if "flag_recall" in r else f"{'':7} {'':7}"
            print(f"  {method:<34} {r['auroc']:7.4f} {r['precision_at_planted']:10.2f} {flag} {seconds:8.2f}")
    write_results("outliers", results)


if __name__ == "__main__":
    main()
