"""Failure slices and whose mistake: lookalike's slices vs clustering the errors (k-means, HDBSCAN), clustering
everything and ranking clusters by error rate, and Domino's error-aware mixture (where it installs), on the
same vectors and predictions, in one run.

    python benchmarks/slices.py [--sets fashion textile digits] [--seeds 0 1]

Sets (Fashion-MNIST and the textiles, on which the method's choices were made, and scikit-learn's digits,
held out): images given a visual trait (inverted, framed, rotated, tinted, blurred) in hidden sub-populations of one
class each, then embedded (EfficientNet-Lite0, 112 px, cached in benchmarks/.cache/); a logistic regression
trained on the train split's vectors and labels is the model; everything is scored on the test split. Three
planted slices per set, one of each kind the issue names:

- ``wrong-labels``: the trait's images of class A labelled B in training (the model learns the mistake);
- ``rare``: the trait's images of class A rare in training (1%), common in test (30%);
- ``spurious``: the trait common on class B in training (50%) and rare on A (2%): the model reads the trait as B.

The inverted trait also appears on a third class, correctly labelled (a trait is not a slice by itself), and a
``noisy`` variant adds diffuse errors: 8% of test predictions replaced by a random other class. Measured as
Domino does: for each planted slice, the best precision@10 over the returned slices (each method returns at
most 10; members most typical first).

Whose mistake: 5% of test labels (outside the slices) flipped to another class (planted label errors: the
model is right), against the errors inside the rare and spurious slices (planted model errors: the label is
right); accuracy of ``error_kind`` over both, ambiguous counted wrong. Writes benchmarks/results/slices.json.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from common import cpu, embedded, fashion_mnist, textile_files, write_results

MAX_SLICES = 10
TOP = 10
FAILING = 0.5  # a planted slice the model gets wrong at least this often (the trait does not always fool it)


def invert(im: Image.Image) -> Image.Image:
    return ImageOps.invert(im.convert("RGB"))


def frame(im: Image.Image) -> Image.Image:
    return ImageOps.expand(ImageOps.crop(im.convert("RGB"), max(2, im.width // 10)), max(2, im.width // 10),
                           fill=(255, 255, 255))


def rotate(im: Image.Image) -> Image.Image:
    return im.convert("RGB").rotate(90)


def tint(im: Image.Image) -> Image.Image:
    r, g, b = im.convert("RGB").split()
    half = lambda v: v // 2  # noqa: E731
    return Image.merge("RGB", (r.point(lambda v: min(255, v + 90)), g.point(half), b.point(half)))


def blur(im: Image.Image) -> Image.Image:
    return im.convert("RGB").filter(ImageFilter.GaussianBlur(max(2, im.width // 25)))


TRAITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "inverted": invert, "framed": frame, "rotated": rotate, "tinted": tint, "blurred": blur}


@dataclass
class Plan:
    """A set's planted slices: (kind, trait, class A, class B) each, and the class the first trait also marks."""

    slices: tuple[tuple[str, str, int, int], ...]
    also: int


PLANS = {
    # Fashion-MNIST: 0 T-shirt, 1 trouser, 2 pullover, 3 dress, 5 sandal, 7 sneaker, 8 bag, 9 ankle boot
    "fashion": Plan(slices=(("wrong-labels", "inverted", 1, 3), ("rare", "rotated", 0, 2),
                            ("spurious", "framed", 9, 7)), also=8),
    # scikit-learn's 8 x 8 digits: held out, no choice of the method's was made on it
    "digits": Plan(slices=(("wrong-labels", "inverted", 3, 5), ("rare", "rotated", 4, 1),
                           ("spurious", "framed", 9, 7)), also=0),
    # The textiles: three classes (folders, sorted)
    "textile": Plan(slices=(("wrong-labels", "tinted", 0, 1), ("rare", "inverted", 2, 0),
                            ("spurious", "rotated", 1, 2)), also=2),
}


@dataclass
class PlantedSet:
    vectors: np.ndarray
    labels: np.ndarray  # the labels as given (training mistakes and test flips included)
    true: np.ndarray
    test: np.ndarray  # bool
    slices: list[np.ndarray]  # rows of each planted slice (test rows)
    kinds: list[str]
    flipped: np.ndarray  # test rows whose label was flipped


def _images(name: str) -> tuple[Callable[[int], Image.Image], np.ndarray]:
    if name == "fashion":
        images, labels = fashion_mnist(12_000)
        return (lambda i: Image.fromarray(images[i]).convert("RGB")), labels
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        grey = (d.images * 255 / 16).astype(np.uint8)
        return (lambda i: Image.fromarray(grey[i]).resize((32, 32)).convert("RGB")), d.target
    files, labels = textile_files()
    return (lambda i: Image.open(files[i]).convert("RGB").resize((112, 112))), labels


def planted_set(name: str, seed: int) -> PlantedSet:
    """The set with its traits painted, embedded (cached per set and seed), and its labels as given."""
    image, true = _images(name)
    plan = PLANS[name]
    rng = np.random.default_rng(seed)
    n = len(true)
    test = rng.random(n) < 0.4
    trait = np.full(n, "", dtype=object)
    labels = true.copy()
    slices, kinds = [], []
    for kind, name_, a, b in plan.slices:
        share_train = {"wrong-labels": 0.3, "rare": 0.01, "spurious": 0.02}[kind]
        on_a = (true == a) & (trait == "") & (rng.random(n) < np.where(test, 0.3, share_train))
        trait[on_a] = name_
        if kind == "wrong-labels":
            labels[on_a & ~test] = b
        if kind == "spurious":
            trait[(true == b) & (trait == "") & ~test & (rng.random(n) < 0.5)] = name_
        slices.append(np.flatnonzero(on_a & test))
        kinds.append(kind)
    trait[(true == plan.also) & (trait == "") & (rng.random(n) < 0.3)] = plan.slices[0][1]  # right, elsewhere
    in_slice = np.zeros(n, dtype=bool)
    in_slice[np.concatenate(slices)] = True
    flippable = np.flatnonzero(test & ~in_slice)
    flipped = rng.choice(flippable, int(0.05 * test.sum()), replace=False)
    n_classes = int(true.max()) + 1
    labels[flipped] = (labels[flipped] + rng.integers(1, n_classes, len(flipped))) % n_classes

    def pictures() -> list[Image.Image]:
        return [TRAITS[trait[i]](image(i)) if trait[i] else image(i) for i in range(n)]

    digest = hashlib.sha256(repr(plan).encode()).hexdigest()[:8]  # a changed plan is another cache
    vectors = embedded(f"slices-{name}-seed{seed}-{digest}", pictures)
    return PlantedSet(vectors=vectors, labels=labels, true=true, test=test, slices=slices, kinds=kinds,
                      flipped=flipped)


def train_model(s: PlantedSet) -> np.ndarray:
    """Predictions on every row of a logistic regression fitted to the train split's vectors and labels."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=2000, C=1.0)
    model.fit(s.vectors[~s.test], s.labels[~s.test])
    return model.predict(s.vectors)


# Each method: (test vectors, errors, labels, predictions) -> slices (arrays of test-row numbers, typical first)
def ours(v: np.ndarray, errors: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> list[np.ndarray]:
    from lookalike.failure_slices import DEFAULT_K, find_slices
    from lookalike.graph import exact_knn

    result = find_slices(v, exact_knn(v, DEFAULT_K), errors, labels, preds, max_slices=MAX_SLICES)
    return [s.members for s in result.slices]


def _by_centre(v: np.ndarray, members: np.ndarray) -> np.ndarray:
    centre = v[members].mean(axis=0)
    return members[np.argsort(-(v[members] @ centre), kind="stable")]


def kmeans_errors(v: np.ndarray, errors: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> list[np.ndarray]:
    from sklearn.cluster import KMeans

    wrong = np.flatnonzero(errors)
    part = KMeans(MAX_SLICES, n_init=4, random_state=0).fit_predict(v[wrong])
    found = [wrong[part == p] for p in range(MAX_SLICES)]
    return [_by_centre(v, m) for m in sorted(found, key=len, reverse=True) if len(m)]


def hdbscan_errors(v: np.ndarray, errors: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> list[np.ndarray]:
    from sklearn.cluster import HDBSCAN

    wrong = np.flatnonzero(errors)
    part = HDBSCAN(min_cluster_size=10).fit_predict(v[wrong])
    found = [wrong[part == p] for p in np.unique(part[part >= 0])]
    return [_by_centre(v, m) for m in sorted(found, key=len, reverse=True)[:MAX_SLICES]]


def kmeans_error_rate(v: np.ndarray, errors: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> list[np.ndarray]:
    """Cluster every row (about 50 per cluster), rank clusters by error rate (as Spotlight / sliceguard do)."""
    from sklearn.cluster import KMeans

    clusters = max(MAX_SLICES, len(v) // 50)
    part = KMeans(clusters, n_init=1, random_state=0).fit_predict(v)
    found = [np.flatnonzero(part == p) for p in range(clusters)]
    found = [m for m in found if len(m) >= TOP]
    found.sort(key=lambda m: -errors[m].mean())
    return [_by_centre(v, m) for m in found[:MAX_SLICES]]


@functools.cache  # shims installed once
def domino_slicer() -> Any:
    """Domino's ``DominoSlicer`` (``pip install --no-deps domino==0.1.5``) on today's numpy and scikit-learn, with
    the shims ../shared/DATA.md lists; None where it is not installed."""
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec("domino")
    if spec is None:
        return None
    import sklearn.mixture._base as base
    from sklearn.utils import check_array

    np.infty = np.inf  # type: ignore[attr-defined]  # removed in numpy 2; Domino still uses it
    meerkat = types.ModuleType("meerkat")
    meerkat.DataPanel = type("DataPanel", (), {})  # type: ignore[attr-defined]  # only a type name to Domino
    sys.modules.setdefault("meerkat", meerkat)
    base._check_X = lambda X, n_components=None, n_features=None, ensure_min_samples=1: check_array(
        X, dtype=[np.float64, np.float32], ensure_min_samples=ensure_min_samples)
    base.BaseMixture._check_n_features = lambda self, X, reset: None
    base.BaseMixture._check_initial_parameters = lambda self, X: None
    verbose_end = base.BaseMixture._print_verbose_msg_init_end
    base.BaseMixture._print_verbose_msg_init_end = lambda self, lb, *rest: verbose_end(self, lb, *(rest or (True,)))
    package = types.ModuleType("domino")  # its __init__ imports the embedding and GUI parts: skipped
    package.__path__ = list(spec.submodule_search_locations or [])
    sys.modules["domino"] = package
    from domino._slice.domino import DominoSlicer

    return DominoSlicer


def domino(v: np.ndarray, errors: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> list[np.ndarray]:
    """Domino's error-aware mixture (package defaults; ``confusion`` initialisation, which needs classes**2
    components); each slice's rows ranked by their probability of it, as Domino ranks them."""
    slicer = domino_slicer()
    classes = int(max(labels.max(), preds.max())) + 1
    model = slicer(n_slices=MAX_SLICES, n_mixture_components=max(25, classes ** 2), init_params="confusion",
                   random_state=0)
    one_hot = np.eye(classes)[preds]
    model.fit(embeddings=v, targets=labels, pred_probs=one_hot)
    probs = model.predict_proba(embeddings=v, targets=labels, pred_probs=one_hot)
    assigned = probs.argmax(axis=1)
    return [np.argsort(-probs[:, j], kind="stable")[:max(TOP, int((assigned == j).sum()))]
            for j in range(probs.shape[1])]


# sliceguard pins web-server packages that would replace the FiftyOne App's: it runs in a virtual environment of its
# own, made by `python -m venv benchmarks/.cache/sliceguard-venv && benchmarks/.cache/sliceguard-venv/bin/pip install
# sliceguard`.
SLICEGUARD_PYTHON = Path(__file__).resolve().parent / ".cache" / "sliceguard-venv" / "bin" / "python"
SLICEGUARD_RUN = """
import json, sys
import numpy as np, pandas as pd
from sklearn.metrics import accuracy_score
from sliceguard import SliceGuard
d = np.load(sys.argv[1])
frame = pd.DataFrame({"y": d["labels"], "y_pred": d["preds"], "emb": np.arange(len(d["labels"]))})
issues = SliceGuard().find_issues(frame, ["emb"], "y", "y_pred", accuracy_score, n_slices=%d, criterion="drop",
                                  feature_types={"emb": "embedding"}, precomputed_embeddings={"emb": d["v"]})
json.dump([[int(r) for r in issue["rows"]] for issue in issues], open(sys.argv[2], "w"))
"""


def sliceguard(v: np.ndarray, errors: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> list[np.ndarray]:
    """sliceguard's ``find_issues`` on the embeddings (its hierarchical clustering, slices ranked by their drop in
    accuracy, at most 10), in its own environment; rows ranked by nearness to the slice's centre."""
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(data, v=v, labels=labels, preds=preds)
        subprocess.run([str(SLICEGUARD_PYTHON), "-c", SLICEGUARD_RUN % MAX_SLICES, str(data), str(out)], check=True,
                       capture_output=True)
        found = json.loads(out.read_text())
    return [_by_centre(v, np.array(rows)) for rows in found if rows]


METHODS: dict[str, Callable[..., list[np.ndarray]]] = {
    "lookalike": ours,
    "k-means over errors (by size)": kmeans_errors,
    "HDBSCAN over errors (by size)": hdbscan_errors,
    "k-means over all, by error rate": kmeans_error_rate,
    "Domino (error-aware mixture)": domino,
    "sliceguard": sliceguard,
}


def methods_here() -> dict[str, Callable[..., list[np.ndarray]]]:
    """The methods that run on this machine (a peer left out says how to install it)."""
    here = dict(METHODS)
    if domino_slicer() is None:
        print("Domino left out: not installed (pip install --no-deps domino==0.1.5)")
        del here["Domino (error-aware mixture)"]
    if not SLICEGUARD_PYTHON.is_file():
        print(f"sliceguard left out: no {SLICEGUARD_PYTHON} (see SLICEGUARD_PYTHON in benchmarks/slices.py)")
        del here["sliceguard"]
    return here


def precision_at(found: list[np.ndarray], planted: np.ndarray) -> float:
    """Domino's measure: the best precision@10 over the returned slices."""
    wanted = set(planted.tolist())
    return max((sum(int(m) in wanted for m in s[:TOP]) / TOP for s in found), default=0.0)


def kinds_accuracy(s: PlantedSet, preds: np.ndarray) -> dict[str, float]:
    """``error_kind`` on the planted label errors (expected ``label``) and the planted model errors inside the
    rare and spurious slices (expected ``model``)."""
    from lookalike.failure_slices import error_kinds
    from lookalike.graph import exact_knn
    from lookalike.label_issues import DEFAULT_K

    graph = exact_knn(s.vectors, DEFAULT_K)
    rows = np.flatnonzero(s.test)
    kinds = dict(zip(rows.tolist(), error_kinds(graph, s.labels, preds, rows), strict=True))
    label_errors = [r for r in s.flipped.tolist() if preds[r] != s.labels[r]]
    model_errors = [r for sl, kind in zip(s.slices, s.kinds, strict=True) if kind != "wrong-labels"
                    for r in sl.tolist() if preds[r] != s.labels[r]]
    right = sum(kinds[r] == "label" for r in label_errors) + sum(kinds[r] == "model" for r in model_errors)
    return {"label_errors": len(label_errors), "model_errors": len(model_errors),
            "label_as_label": float(np.mean([kinds[r] == "label" for r in label_errors])),
            "model_as_model": float(np.mean([kinds[r] == "model" for r in model_errors])),
            "accuracy": right / max(1, len(label_errors) + len(model_errors))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=list(PLANS), choices=list(PLANS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = p.parse_args()
    print(f"CPU: {cpu()}")
    results: list[dict[str, Any]] = []
    methods = methods_here()
    for name in args.sets:
        for seed in args.seeds:
            s = planted_set(name, seed)
            preds = train_model(s)
            rows = np.flatnonzero(s.test)
            rng = np.random.default_rng(100 + seed)
            n_classes = int(s.true.max()) + 1
            for variant in ("clean", "noisy"):
                p_test = preds[rows].copy()
                if variant == "noisy":
                    diffuse = rng.random(len(rows)) < 0.08
                    p_test[diffuse] = (p_test[diffuse] + rng.integers(1, n_classes, int(diffuse.sum()))) % n_classes
                errors = p_test != s.labels[rows]
                local = {int(r): i for i, r in enumerate(rows)}
                planted = [np.array([local[int(r)] for r in sl]) for sl in s.slices]
                rates = [float(errors[pl].mean()) for pl in planted]
                print(f"\n{name} seed {seed} {variant}: {len(rows)} test rows, error rate {errors.mean():.3f}; planted "
                      + ", ".join(f"{k} ({len(pl)} rows, error rate {r:.2f})"
                                  for k, pl, r in zip(s.kinds, planted, rates, strict=True)))
                for method, find in methods.items():
                    t = time.perf_counter()
                    found = find(s.vectors[rows], errors, s.labels[rows], p_test)
                    seconds = time.perf_counter() - t
                    precision = [precision_at(found, pl) for pl in planted]
                    print(f"  {method:<34} precision@10 " + " ".join(f"{x:.2f}" for x in precision)
                          + f"  mean {np.mean(precision):.3f}  ({len(found)} slices, {seconds:.1f} s)")
                    failing = [x for x, r in zip(precision, rates, strict=True) if r >= FAILING]
                    results.append({"set": name, "seed": seed, "variant": variant, "method": method,
                                    "precision_at_10": precision, "mean": float(np.mean(precision)),
                                    "mean_failing": float(np.mean(failing)) if failing else None,
                                    "slices": len(found), "seconds": seconds})
            kinds = kinds_accuracy(s, preds)
            print(f"  error_kind: {kinds['label_errors']} planted label errors, {kinds['label_as_label']:.3f} called "
                  f"label; {kinds['model_errors']} planted model errors, {kinds['model_as_model']:.3f} called model;"
                  f" accuracy {kinds['accuracy']:.3f}")
            results.append({"set": name, "seed": seed, "error_kind": kinds})
    for key, title in (("mean", "every planted slice"),
                       ("mean_failing", f"the planted slices the model fails on (error rate >= {FAILING})")):
        print(f"\nmean precision@10 over seeds and variants, {title}:")
        for method in methods:
            rows_ = [r for r in results if r.get("method") == method and r[key] is not None]
            per_set = {n: np.mean([r[key] for r in rows_ if r["set"] == n]) for n in args.sets}
            print(f"  {method:<34} " + "  ".join(f"{n} {v:.3f}" for n, v in per_set.items()))
    write_results("slices", {"cpu": cpu(), "results": results})


if __name__ == "__main__":
    main()
