"""Failure slices at scale: N samples with labels and a model's predictions, their vectors imported, then
``lookalike slices`` (which builds the kNN graph on first use), each a CLI command in its own process (wall time,
peak RSS), and the planted slices it finds.

    python benchmarks/slices_scale.py --n 1000000
    python benchmarks/slices_scale.py --n 100000

Data: seeded clustered vectors like embeddings (benchmarks/objects_scale.py: 2,000 centres in 512 dimensions, a
class of ten each); predictions right but for 8% diffuse errors (a random other class) and 8 planted slices: the
members of 8 centres all predicted one wrong class. Files are not read (imported vectors need no pixels).
Writes benchmarks/results/slices-scale-N.json.
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
from objects_scale import vectors
from scale import import_arguments, stage

CLASSES = 10
PLANTED = 8  # within the 10 slices returned by default
DIFFUSE = 0.08


def make_dataset(name: str, labels: np.ndarray, predictions: np.ndarray) -> None:
    import fiftyone as fo

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name, persistent=True)
    for start in range(0, len(labels), 50_000):
        ds.add_samples([fo.Sample(filepath=f"/nonexistent/slices-scale/{i:07d}.jpg",
                                  ground_truth=fo.Classification(label=f"class-{labels[i]}"),
                                  predictions=fo.Classification(label=f"class-{predictions[i]}"))
                        for i in range(start, min(len(labels), start + 50_000))], progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--workdir", default="/tmp/lookalike-slices-scale")
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    name = f"slices-scale-{args.n}"
    os.environ.update({"HOME": str(work / "home"), "LOOKALIKE_HOME": str(work / "lookalike"),
                       "FIFTYONE_DATABASE_VALIDATION": "false", "FIFTYONE_DO_NOT_TRACK": "true"})
    from lookalike.database import start_private_database

    start_private_database(work / "db")  # before FiftyOne is imported
    env = dict(os.environ)
    print(f"CPU: {cpu()}; {args.n:,} samples, {args.dim}-d, {PLANTED} planted slices, {DIFFUSE:.0%} diffuse errors")
    v, centre = vectors(args.n, args.dim)
    rng = np.random.default_rng(3)
    labels = centre % CLASSES
    planted = rng.choice(2000, PLANTED, replace=False)
    predictions = labels.copy()
    diffuse = rng.random(args.n) < DIFFUSE
    predictions[diffuse] = (labels[diffuse] + rng.integers(1, CLASSES, int(diffuse.sum()))) % CLASSES
    t = time.perf_counter()
    for c in planted:
        rows = centre == c
        predictions[rows] = (labels[rows] + 1 + c % (CLASSES - 1)) % CLASSES
    make_dataset(name, labels, predictions)
    results: list[dict[str, Any]] = [{"stage": "FiftyOne dataset", "seconds": time.perf_counter() - t}]
    print(f"{'stage':<40} {'seconds':>9} {'peak RSS MB':>12}")
    print(f"{results[0]['stage']:<40} {results[0]['seconds']:>9.1f}")
    import fiftyone as fo

    ids = fo.load_dataset(name).values("id")
    arguments = import_arguments(work, v, ids, "v")
    del v
    cli = [str(Path(sys.executable).parent / "lookalike")]
    results.append(stage("import vectors (embed --vectors)", [*cli, "embed", name, *arguments, "--model-name",
                                                              "planted"], env))
    results.append(stage("slices (builds the graph)", [*cli, "slices", name, "--prediction-field", "predictions"],
                         env))
    results.append(stage("slices again (graph stored)", [*cli, "slices", name, "--prediction-field", "predictions"],
                         env))
    ds = fo.load_dataset(name)
    ds.reload()  # the commands wrote to it
    listed = ds.get_brain_info("lookalike_run_slices").config.summary["slice_list"]
    row = {sid: r for r, sid in enumerate(ids)}
    tops = [[row[i] for i in ds.load_saved_view(f"lookalike-slice-{s['slice']}").limit(10).values("id")]
            for s in listed]
    precision = [max((float(np.mean(centre[top] == c)) for top in tops), default=0.0) for c in planted]
    found = sum(x >= 0.9 for x in precision)
    print(f"{len(listed)} slices returned (at most the default 10); planted slices found (precision@10 >= 0.9): "
          f"{found} of {PLANTED}; mean best precision@10 {np.mean(precision):.3f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"slices-scale-{args.n}.json"
    out.write_text(json.dumps({"cpu": cpu(), "n": args.n, "dim": args.dim, "stages": results,
                               "planted_found": found, "mean_precision_at_10": float(np.mean(precision))}, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
