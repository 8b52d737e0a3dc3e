"""A detector's failure slices over boxes: lookalike's ``slices --patches`` against the peers of
benchmarks/slices.py (k-means / HDBSCAN over the errors, k-means over every box ranked by error rate, Domino's
error-aware mixture and sliceguard where they install), on the same box vectors and the same errors, in one run.

    python benchmarks/detector_slices.py [--sets fashion-on-textile digits-on-photos] [--seeds 0 1]

The detection sets of benchmarks/objects.py (real Fashion-MNIST items on real textiles, real handwritten digits on
real photos; 500 scenes, cached), loaded through FiftyOne's COCO importer and embedded box by box (EfficientNet-
Lite0, 112 px, the default context margin). A detector's boxes are synthesised from the labelled ones (each shifted
by up to 5%), with two planted failure slices of the kind detectors have, small objects (the smallest 40% of a
common class's objects, by box area):

- ``small-missed``: one class's small objects missed 80% of the time;
- ``small-confused``: another class's small objects named as a third class 80% of the time;

and diffuse failures elsewhere (6% missed, 5% another class) and false boxes (3% of scenes). The finder matches
the detector's boxes to the labelled ones by IoU itself (``(missed)`` where none matches); the peers get the
planted outcome of each box. Measured as Domino does: for each planted slice, the best precision@10 over the
returned slices (at most 10 each). Writes benchmarks/results/detector_slices.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import cpu, write_results
from objects import FIELD, SETS, build
from slices import MAX_SLICES, methods_here, precision_at

SMALL_SHARE = 0.4
FAILS = 0.8
COMMON = 100  # boxes a class has to host a planted slice


def plant(name: str, seed: int) -> tuple[dict[str, list[str]], dict[str, tuple[str, str]]]:
    """Write the synthetic detector's boxes to ``predictions``; returns the planted slices' label ids and each
    labelled box's (label, what the detector made of it: a class or ``(missed)``)."""
    import fiftyone as fo

    from lookalike.datasets import get_dataset

    rng = np.random.default_rng(seed)
    dataset = get_dataset(name)
    counts = dataset.count_values(f"{FIELD}.detections.label")
    classes = sorted(counts)
    common = [c for c in classes if counts[c] >= COMMON]  # the rare object is left alone
    missed_class, confused_class, confused_as = (common[(seed + i) % len(common)] for i in (0, 3, 6))
    planted: dict[str, list[str]] = {}
    for kind, cls in (("small-missed", missed_class), ("small-confused", confused_class)):
        areas = {d.id: d.bounding_box[2] * d.bounding_box[3]
                 for ds in dataset.values(f"{FIELD}.detections") for d in ds or [] if d.label == cls}
        cut = np.quantile(list(areas.values()), SMALL_SHARE)
        planted[kind] = [i for i, a in areas.items() if a <= cut]
    missed, confused = set(planted["small-missed"]), set(planted["small-confused"])
    outcome: dict[str, tuple[str, str]] = {}
    for sample in dataset.iter_samples(autosave=True, progress=False):
        predictions = []
        for d in sample[FIELD].detections if sample[FIELD] is not None else []:
            r = rng.random()
            if d.id in missed:
                guess = "(missed)" if r < FAILS else d.label
            elif d.id in confused:
                guess = confused_as if r < FAILS else d.label
            else:
                guess = "(missed)" if r < 0.06 else classes[int(rng.integers(len(classes)))] if r < 0.11 else d.label
            outcome[d.id] = (d.label, guess)
            if guess != "(missed)":
                x, y, w, h = d.bounding_box
                predictions.append(fo.Detection(label=guess, confidence=float(rng.uniform(0.5, 1.0)), bounding_box=[
                    x + rng.uniform(-0.05, 0.05) * w, y + rng.uniform(-0.05, 0.05) * h, w, h]))
        if rng.random() < 0.03:
            predictions.append(fo.Detection(label=classes[int(rng.integers(len(classes)))], confidence=0.5,
                                            bounding_box=[float(v) for v in (*rng.uniform(0, 0.7, 2), 0.2, 0.2)]))
        sample["predictions"] = fo.Detections(detections=predictions)
    return planted, outcome


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--scenes", type=int, default=500)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lookalike-detector-slices-"))
    os.environ.update({"HOME": str(work / "home"), "LOOKALIKE_HOME": str(work / "lookalike"),
                       "FIFTYONE_DATABASE_VALIDATION": "false", "FIFTYONE_DO_NOT_TRACK": "true"})
    from lookalike.database import start_private_database

    start_private_database(work / "db")
    import fiftyone as fo

    import lookalike

    print(f"CPU: {cpu()}; EfficientNet-Lite0 at 112 px, fp32")
    peers = {k: v for k, v in methods_here().items() if k != "lookalike"}
    results: list[dict[str, Any]] = []
    for name in args.sets:
        root, _ = build(name, args.scenes)
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
        lookalike.load(root, name=name, format="coco")
        lookalike.embed(name, "efficientnet-lite0", image_size=112, patches=FIELD)
        ids, vectors = lookalike.embeddings(name, patches=FIELD)
        for seed in args.seeds:
            planted, outcome = plant(name, seed)
            names = sorted({c for pair in outcome.values() for c in pair})
            code = {c: i for i, c in enumerate(names)}
            labels = np.array([code[outcome[i][0]] for i in ids])
            guesses = np.array([code[outcome[i][1]] for i in ids])
            errors = labels != guesses
            row = {i: r for r, i in enumerate(ids)}
            wanted = {k: np.array([row[i] for i in v if i in row]) for k, v in planted.items()}
            rates = {k: float(errors[v].mean()) for k, v in wanted.items()}
            print(f"\n{name} seed {seed}: {len(ids)} boxes, error rate {errors.mean():.3f}; planted "
                  + ", ".join(f"{k} ({len(v)} boxes, error rate {rates[k]:.2f})" for k, v in wanted.items()))
            t = time.perf_counter()
            found = lookalike.slices(name, patches=FIELD, prediction_field="predictions", max_slices=MAX_SLICES)
            seconds = time.perf_counter() - t
            ours = [np.array([row[m["id"]] for m in s.members]) for s in found]
            by_method = {"lookalike (slices --patches)": (ours, seconds)}
            for method, find in peers.items():
                t = time.perf_counter()
                by_method[method] = (find(vectors, errors, labels, guesses), time.perf_counter() - t)
            for method, (slices_, took) in by_method.items():
                precision = [precision_at(slices_, v) for v in wanted.values()]
                print(f"  {method:<34} precision@10 " + " ".join(f"{x:.2f}" for x in precision)
                      + f"  mean {np.mean(precision):.3f}  ({len(slices_)} slices, {took:.1f} s)")
                results.append({"set": name, "seed": seed, "method": method, "precision_at_10": precision,
                                "mean": float(np.mean(precision)), "slices": len(slices_), "seconds": took})
    print("\nmean precision@10 over seeds:")
    for method in dict.fromkeys(r["method"] for r in results):
        per_set = {n: np.mean([r["mean"] for r in results if r["method"] == method and r["set"] == n])
                   for n in args.sets}
        print(f"  {method:<34} " + "  ".join(f"{n} {v:.3f}" for n, v in per_set.items()))
    write_results("detector_slices", {"cpu": cpu(), "results": results})


if __name__ == "__main__":
    main()
