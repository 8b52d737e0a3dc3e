"""The whole job at scale, as a user runs it: N image files loaded, vectors imported, every analysis; then 1%
more images, and the same commands again (the incremental run).

    python benchmarks/scale.py --n 1000000 [--dim 512] [--workdir /tmp/lookalike-scale]

Data: N 28-px PNGs in a train/ test/ class-folder tree: the 70,000 Fashion-MNIST images, then seeded
transforms of them (mirror, 1-2 px shift, brightness) until there are N. Vectors: real EfficientNet-Lite0
embeddings of the first 100,000 (benchmarks/common.py; beyond 70,000 they are the mirrored images'), and
for the rest their source's vector plus seeded noise, projected to ``--dim`` (seeded Gaussian projection:
512 is CLIP ViT-B-32's size), imported with `lookalike embed --vectors` (the decode-only thumbnail pass
still reads every file). Each stage is one CLI command in its own process; its wall time and peak RSS
(from ``wait4``) are printed. The FiftyOne database, the store and the caches live under ``--workdir``.
Results also go to benchmarks/results/scale-N.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import embeddings, fashion_mnist
from lookalike.database import start_private_database

RESULTS = Path(__file__).parent / "results"
CLASSES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle-boot")
REAL = 100_000  # rows with real embeddings; the rest are their source's vector plus noise
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
    code = (f"import fiftyone as fo, json; ds = fo.load_dataset({name!r}); "
            f"print(json.dumps(list(zip(ds.values('id'), ds.values('filepath')))))")
    pairs = json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                      text=True).stdout)
    v = vectors_for(n, dim)
    rows = [int(Path(p).stem) for _, p in pairs]
    np.save(out, v[rows])
    out.with_suffix(".ids.json").write_text(json.dumps([sid for sid, _ in pairs]))


def stage(name: str, command: list[str], env: dict[str, str], results: list[dict[str, object]]) -> float:
    """Run one CLI command; print and keep its wall time and peak RSS."""
    t = time.perf_counter()
    p = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"{name} failed ({' '.join(command)})")
    rss = usage.ru_maxrss / 1024
    results.append({"stage": name, "seconds": seconds, "peak_rss_mb": rss})
    print(f"{name:<40} {seconds:>9.1f} {rss:>12.0f}", flush=True)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--workdir", default="/tmp/lookalike-scale")
    p.add_argument("--no-incremental", action="store_true", help="stop after the full run (no +1%% run)")
    p.add_argument("--analyses-only", action="store_true",
                   help="reuse the loaded, embedded dataset of an earlier run and time only the analyses")
    args = p.parse_args()
    work = Path(args.workdir)
    root, name = work / "images", f"scale-{args.n}"
    # Its own mongod: FiftyOne attaches to any database service running on the machine (a test suite's).
    start_private_database(work / "db")
    env = {**os.environ, "HOME": str(work / "home"), "FIFTYONE_DATABASE_DIR": str(work / "db"),
           "LOOKALIKE_HOME": str(work / "lookalike"), "FIFTYONE_DATABASE_VALIDATION": "false",
           "FIFTYONE_DO_NOT_TRACK": "true"}
    cli = [str(Path(sys.executable).parent / "lookalike")]
    added = max(1, args.n // 100)
    results: list[dict[str, object]] = []
    print(f"{'stage':<40} {'seconds':>9} {'peak RSS MB':>12}")
    vectors = [str(work / "vectors.npy"), "--ids", str(work / "vectors.ids.json")]
    full = 0.0
    if not args.analyses_only:
        t = time.perf_counter()
        write_images(root, 0, args.n)
        print(f"{'(data: image files written)':<40} {time.perf_counter() - t:>9.1f}", flush=True)
        full += stage("load", [*cli, "load", str(root), "--name", name], env, results)
        write_vectors(name, args.n, args.dim, work / "vectors.npy", env)
        full += stage("embed --vectors (import + thumbnails)", [*cli, "embed", name, "--vectors", *vectors], env,
                      results)
    analyses = [("mislabels (builds the graph)", ["mislabels", name, "--json"]),
                ("duplicates", ["duplicates", name, "--json"]), ("map", ["map", name])]
    analysed = 0.0
    for label, command in analyses:
        analysed += stage(label, [*cli, *command], env, results)
    full += analysed
    print(f"{'graph + all analyses':<40} {analysed:>9.1f}")
    if not args.analyses_only:
        print(f"{'full run':<40} {full:>9.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale-{args.n}.json"
    out.write_text(json.dumps({"n": args.n, "dim": args.dim, "stages": results, "analyses_s": analysed,
                               "full_s": full}, indent=2))
    if args.no_incremental or args.analyses_only:
        return

    write_images(root, args.n, args.n + added)
    more = 0.0
    more += stage(f"+{added}: load", [*cli, "load", str(root), "--name", name], env, results)
    write_vectors(name, args.n + added, args.dim, work / "vectors.npy", env)
    more += stage(f"+{added}: embed --vectors", [*cli, "embed", name, "--vectors", *vectors], env, results)
    for label, command in analyses:
        more += stage(f"+{added}: {label.split(' ')[0]}", [*cli, *command], env, results)
    print(f"{'incremental run (+1%)':<40} {more:>9.1f}")
    print(f"incremental / full: {more / full:.3f}")
    out.write_text(json.dumps({"n": args.n, "dim": args.dim, "stages": results, "analyses_s": analysed,
                               "full_s": full, "incremental_s": more}, indent=2))


if __name__ == "__main__":
    main()
