"""Boxes at scale: N images x 4 boxes through an import of box vectors, the kNN graph with box mislabels, and the
map, each a CLI command in its own process (wall time, peak RSS); fiftyone-brain's patch similarity (its sklearn
backend, ``compute_similarity(patches_field=...)`` with the same vectors) and one patch query beside it.

    python benchmarks/objects_scale.py --images 250000          (1M boxes)
    python benchmarks/objects_scale.py --images 25000           (100k boxes)

Data: samples with four boxes each (files are not read: imported box vectors need no pixels). Vectors: seeded
clustered ones, like embeddings (2,000 centres in 512 dimensions, each a class of ten, rows a centre plus
noise), 5% of box labels flipped. Writes benchmarks/results/objects-scale-N.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS, cpu
from scale import import_arguments, stage

FIELD = "ground_truth_detections"
CLASSES = 10


def vectors(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clustered unit vectors and each one's centre (its class: the centre modulo the classes)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    which = rng.integers(0, len(centres), n)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        rows = slice(start, min(n, start + 100_000))
        v = centres[which[rows]] + 0.8 * rng.normal(size=(len(which[rows]), dim)).astype(np.float32)
        out[rows] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out, which


def make_dataset(name: str, images: int, labels: np.ndarray) -> None:
    """The samples, four boxes each, labelled (5% flipped), in batches."""
    import fiftyone as fo

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name, persistent=True)
    rng = np.random.default_rng(1)
    noisy = labels.copy()
    flip = rng.random(len(labels)) < 0.05
    noisy[flip] = (noisy[flip] + rng.integers(1, CLASSES, int(flip.sum()))) % CLASSES
    boxes = [[0.05, 0.05, 0.4, 0.4], [0.55, 0.05, 0.4, 0.4], [0.05, 0.55, 0.4, 0.4], [0.55, 0.55, 0.4, 0.4]]
    for start in range(0, images, 10_000):
        batch = [fo.Sample(filepath=f"/nonexistent/objects-scale/{i:07d}.jpg", **{FIELD: fo.Detections(detections=[
            fo.Detection(label=f"class-{noisy[4 * i + b]}", bounding_box=boxes[b]) for b in range(4)])})
            for i in range(start, min(images, start + 10_000))]
        ds.add_samples(batch, progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=250_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--workdir", default="/tmp/lookalike-objects-scale")
    p.add_argument("--no-brain", action="store_true", help="leave fiftyone-brain's sklearn patch index out")
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    n, name = 4 * args.images, f"objects-scale-{args.images}"
    os.environ.update({"HOME": str(work / "home"), "LOOKALIKE_HOME": str(work / "lookalike"),
                       "FIFTYONE_DATABASE_VALIDATION": "false", "FIFTYONE_DO_NOT_TRACK": "true"})
    from lookalike.database import start_private_database

    start_private_database(work / "db")
    env = dict(os.environ)
    print(f"CPU: {cpu()}; {args.images:,} images x 4 = {n:,} boxes, {args.dim}-d")
    print(f"{'stage':<44} {'seconds':>9} {'peak RSS MB':>12}")
    v, centres = vectors(n, args.dim)
    classes = centres % CLASSES
    t = time.perf_counter()
    make_dataset(name, args.images, classes)
    results: list[dict[str, Any]] = [{"stage": "FiftyOne dataset (samples and boxes)",
                                      "seconds": time.perf_counter() - t}]
    print(f"{results[0]['stage']:<44} {results[0]['seconds']:>9.1f}")
    import fiftyone as fo

    ids = fo.load_dataset(name).values(f"{FIELD}.detections.id", unwind=True)
    arguments = import_arguments(work, v, ids, "boxes")
    del v
    cli = [str(Path(sys.executable).parent / "lookalike")]
    for label, command in (
            ("import box vectors (embed --vectors --patches)",
             ["embed", name, "--patches", FIELD, *arguments, "--model-name", "boxes"]),
            ("mislabels --patches (builds the graph)", ["mislabels", name, "--patches", FIELD, "--json"]),
            ("map --patches", ["map", name, "--patches", FIELD]),
            ("similar --patches (one query)", ["similar", name, "--patches", FIELD, "--sample", ids[0], "-k", "10"])):
        results.append(stage(label, cli + command, env))
    total = sum(r["seconds"] for r in results)
    peak = max(r.get("peak_rss_mb", 0) for r in results)
    print(f"{'lookalike, all':<44} {total:>9.1f} {peak:>12.0f}")
    if not args.no_brain:
        code = ("import fiftyone as fo, fiftyone.brain as fob, numpy as np, json, time\n"
                f"ds = fo.load_dataset({name!r}); v = np.load({str(work / 'boxes.npy')!r})\n"
                f"ids = json.load(open({str(work / 'boxes.ids.json')!r}))\n"
                "if 'sk' in ds.list_brain_runs():\n    ds.delete_brain_run('sk')\n"
                "t = time.perf_counter()\n"
                "v = list(v.reshape(len(ds), 4, v.shape[1]))  # per sample, its boxes' vectors in order\n"
                f"index = fob.compute_similarity(ds, patches_field={FIELD!r}, embeddings=v, backend='sklearn', "
                "brain_key='sk', progress=False)\n"
                f"ds.to_patches({FIELD!r}).sort_by_similarity(ids[0], k=10, brain_key='sk')\n"
                "print(time.perf_counter() - t)\n")
        script = work / "brain.py"
        script.write_text(code)
        results.append(stage("fiftyone-brain sklearn patch index + 1 query", [sys.executable, str(script)], env))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"objects-scale-{n}.json"
    out.write_text(json.dumps({"cpu": cpu(), "images": args.images, "boxes": n, "dim": args.dim,
                               "stages": results}, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
