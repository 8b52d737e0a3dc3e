"""The whole job at scale, as a user runs it: N image files loaded, vectors imported, every analysis; then 1%
more images, and the same commands again (the incremental run).

    python benchmarks/scale.py --n 1000000 [--dim 512] [--workdir /tmp/lookalike-scale] [--part all]

Data: N 28-px PNGs in a train/ test/ class-folder tree: the 70,000 Fashion-MNIST images, then seeded
transforms of them (mirror, 1-2 px shift, brightness) until there are N. Vectors: real EfficientNet-Lite0
embeddings of the first 100,000 (benchmarks/common.py; beyond 70,000 they are the mirrored images'), and
for the rest their source's vector plus seeded noise, projected to ``--dim`` (seeded Gaussian projection:
512 is CLIP ViT-B-32's size), imported with `lookalike embed --vectors` (the decode-only thumbnail pass
still reads every file). Each stage is one CLI command in its own process; its wall time and peak RSS
(from ``wait4``, in a small launcher) are printed. The FiftyOne database, the store and the caches live
under ``--workdir``. Results also go to benchmarks/results/scale-N.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS, embeddings, fashion_mnist
from lookalike.database import start_private_database

CLASSES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle-boot")
REAL = 100_000  # rows with real embeddings; the rest are their source's vector plus noise
ANALYSIS_FIELDS = ("mislabel_score", "suggested_label", "suspect_label", "duplicate_group", "duplicate_keep",
                   "uniqueness", "cluster")
ANALYSIS_TAGS = ("suspect-label", "duplicate", "leak")
NOISE = 0.05


def _source(i: int) -> int:
    """The Fashion-MNIST image (0..69,999) that image ``i`` is made from."""
    return i % 70_000


def _transform(image: np.ndarray, i: int) -> np.ndarray:
    """Image ``i``: the original for the first 70,000, else a seeded mirror, shift or brightness change."""
    if i < 70_000:
        return image
    rng = np.random.default_rng(i)
    kind = int(rng.integers(3))
    if kind == 0:
        return np.ascontiguousarray(image[:, ::-1])
    if kind == 1:
        return np.roll(image, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
    return np.clip(image.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)


def write_images(root: Path, start: int, stop: int) -> None:
    """Images ``start`` to ``stop`` as PNGs (existing files are kept: a rerun is cheap)."""
    from PIL import Image

    images, labels = fashion_mnist(70_000)
    for i in range(start, stop):
        split = "test" if i % 10 == 0 else "train"
        folder = root / split / CLASSES[labels[_source(i)]]
        path = folder / f"{i:07d}.png"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_transform(images[_source(i)], i)).save(path)


def vectors_for(n: int, dim: int) -> np.ndarray:
    """Row ``i``: image ``i``'s vector (real for the first ``REAL``, else its source's plus noise)."""
    real, _ = embeddings(min(n, REAL))
    rng = np.random.default_rng(1)
    projection = rng.normal(size=(real.shape[1], dim)).astype(np.float32) if dim != real.shape[1] else None
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        rows = np.arange(start, min(n, start + 100_000))
        v = real[np.where(rows < len(real), rows, rows % 70_000)]
        noisy = rows >= len(real)
        v[noisy] += NOISE * rng.normal(size=(int(noisy.sum()), v.shape[1])).astype(np.float32) / np.sqrt(v.shape[1])
        if projection is not None:
            v = v @ projection
        out[rows] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def write_vectors(name: str, n: int, dim: int, out: Path, env: dict[str, str]) -> None:
    """The vectors file and its ids file, rows in the order of the dataset's samples."""
    # Written to a file, not printed: anything else the child prints (a notice from FiftyOne) would land in
    # the middle of the JSON.
    listing = out.with_suffix(".samples.json")
    code = (f"import fiftyone as fo, json; ds = fo.load_dataset({name!r}); open({str(listing)!r}, 'w').write("
            f"json.dumps(list(zip(ds.values('id'), ds.values('filepath')))))")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    pairs = json.loads(listing.read_text())
    v = vectors_for(n, dim)
    rows = [int(Path(p).stem) for _, p in pairs]
    np.save(out, v[rows])
    out.with_suffix(".ids.json").write_text(json.dumps([sid for sid, _ in pairs]))


# Each command is started by a small launcher that reports its peak RSS: a child forked straight from this
# process (which holds a million vectors) would carry this process's high-water mark across exec.
_LAUNCH = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
           "_, status, usage = os.wait4(p.pid, 0); print(usage.ru_maxrss); "
           "sys.exit(os.waitstatus_to_exitcode(status))")


def import_arguments(work: Path, vectors: np.ndarray, ids: list[str], stem: str) -> list[str]:
    """Write ``vectors`` and their ids for ``lookalike embed --vectors`` into ``work``, with a config that leaves
    the store's HNSW build out (store_scale.py times that); the command's arguments for them."""
    np.save(work / f"{stem}.npy", vectors)
    (work / f"{stem}.ids.json").write_text(json.dumps(ids))
    config = work / "config.yaml"
    config.write_text("index: {hnsw_above: 0}\n")
    return ["--vectors", str(work / f"{stem}.npy"), "--ids", str(work / f"{stem}.ids.json"), "--config", str(config)]


def stage(name: str, command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one CLI command; print and return its wall time and peak RSS."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _LAUNCH, *command], env=env, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({' '.join(command)})")
    rss = int(done.stdout.split()[-1]) / 1024
    print(f"{name:<40} {seconds:>9.1f} {rss:>12.0f}", flush=True)
    return {"stage": name, "seconds": seconds, "peak_rss_mb": rss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--workdir", default="/tmp/lookalike-scale")
    p.add_argument("--part", choices=("all", "full", "analyses", "incremental"), default="all",
                   help="full: the full run only; analyses: only its analyses, from scratch (their stored graph, "
                        "pairs and map removed), on the data an earlier run loaded and embedded; incremental: only "
                        "the +1%% run, after an earlier full run (default: all)")
    p.add_argument("--no-hnsw", action="store_true",
                   help="embed without building the store's HNSW graph (index.hnsw_above: 0; store_scale.py "
                        "times that build on its own)")
    args = p.parse_args()
    work = Path(args.workdir)
    root, name = work / "images", f"scale-{args.n}"
    # Its own mongod: FiftyOne attaches to any database service running on the machine (a test suite's).
    start_private_database(work / "db")
    env = {**os.environ, "HOME": str(work / "home"), "FIFTYONE_DATABASE_DIR": str(work / "db"),
           "LOOKALIKE_HOME": str(work / "lookalike"), "FIFTYONE_DATABASE_VALIDATION": "false",
           "FIFTYONE_DO_NOT_TRACK": "true"}
    cli = [str(Path(sys.executable).parent / "lookalike")]
    vectors = [str(work / "vectors.npy"), "--ids", str(work / "vectors.ids.json")]
    if args.no_hnsw:
        (work / "no-hnsw.yaml").write_text("index: {hnsw_above: 0}\n")
        vectors += ["--config", str(work / "no-hnsw.yaml")]
    analyses = [("mislabels (builds the graph)", ["mislabels", name, "--json"]),
                ("duplicates", ["duplicates", name, "--json"]), ("map", ["map", name])]
    out = RESULTS / f"scale-{args.n}.json"
    record = json.loads(out.read_text()) if out.is_file() and args.part in ("analyses", "incremental") else {}
    stages: dict[str, dict[str, Any]] = {r["stage"]: r for r in record.get("stages", [])}
    print(f"{'stage':<40} {'seconds':>9} {'peak RSS MB':>12}")

    def run(label: str, command: list[str]) -> float:
        stages[label] = stage(label, command, env)
        return float(stages[label]["seconds"])

    def save() -> None:
        RESULTS.mkdir(exist_ok=True)
        out.write_text(json.dumps({"n": args.n, "dim": args.dim, "stages": list(stages.values()), **totals},
                                  indent=2))

    totals: dict[str, float] = {k: v for k, v in record.items() if k.endswith("_s")}
    if args.part in ("all", "full"):
        t = time.perf_counter()
        write_images(root, 0, args.n)
        print(f"{'(data: image files written)':<40} {time.perf_counter() - t:>9.1f}", flush=True)
        totals["prepare_s"] = run("load", [*cli, "load", str(root), "--name", name])
        write_vectors(name, args.n, args.dim, work / "vectors.npy", env)
        totals["prepare_s"] += run("embed --vectors (import + thumbnails)",
                                   [*cli, "embed", name, "--vectors", *vectors])
    if args.part == "analyses":  # from scratch, as after a first embed: what earlier analyses left goes
        home = work / "lookalike"
        for stale in [*home.glob("graphs/*.npz"), *home.glob("duplicates/*"), *home.glob("maps/*.npz")]:
            stale.unlink()
        # Their fields and tags too: the write-back writes only values that differ from the stored ones.
        code = (f"import fiftyone as fo; ds = fo.load_dataset({name!r}); ds.untag_samples({list(ANALYSIS_TAGS)!r}); "
                f"ds.delete_sample_fields([f for f in {list(ANALYSIS_FIELDS)!r} if ds.has_field(f)])")
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        # The same vectors again: nothing to upsert, and what this version of embed leaves for the analyses
        # (the vectors' copy) is there, as after a first embed.
        run("embed --vectors again (unchanged)", [*cli, "embed", name, "--vectors", *vectors])
    if args.part != "incremental":
        totals["analyses_s"] = sum(run(label, [*cli, *command]) for label, command in analyses)
        print(f"{'graph + all analyses':<40} {totals['analyses_s']:>9.1f}")
        if "prepare_s" in totals:
            totals["full_s"] = totals["prepare_s"] + totals["analyses_s"]
            print(f"{'full run':<40} {totals['full_s']:>9.1f}")
        save()
    if args.part not in ("all", "incremental"):
        return
    if "full_s" not in totals:
        raise SystemExit(f"no full run on record in {out}: run --part full first")

    added = max(1, args.n // 100)
    write_images(root, args.n, args.n + added)
    more = run(f"+{added}: load", [*cli, "load", str(root), "--name", name])
    write_vectors(name, args.n + added, args.dim, work / "vectors.npy", env)
    more += run(f"+{added}: embed --vectors", [*cli, "embed", name, "--vectors", *vectors])
    for label, command in analyses:
        more += run(f"+{added}: {label.split(' ')[0]}", [*cli, *command])
    totals["incremental_s"] = more
    print(f"{'incremental run (+1%)':<40} {more:>9.1f}")
    print(f"incremental / full: {more / totals['full_s']:.3f}")
    save()


if __name__ == "__main__":
    main()
