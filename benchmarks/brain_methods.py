"""fiftyone-brain's own methods on lookalike's index vs on its sklearn index, on the same vectors: near duplicates,
leaky splits and uniqueness (``compute_*(similarity_index=<lookalike key>)`` against ``compute_*(embeddings=v)``),
each in a fresh process (wall time, peak RSS), with the planted near duplicates and leaks each finds.

    python benchmarks/brain_methods.py --sizes 20000 100000

Vectors: seeded clustered unit vectors like embeddings (benchmarks/objects_scale.py: 2,000 centres in 512-d,
rows a centre plus noise), centred once so that sklearn's own centring leaves them as they are and both
indexes measure the same cosine distances; 1% of rows get a near copy (cosine distance about 0.03) appended,
half of the copies in the other split (a leak). Threshold: fiftyone-brain's default 0.2. Writes
benchmarks/results/brain-methods.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS, cpu
from objects_scale import vectors
from scale import stage

THRESHOLD = 0.2  # compute_near_duplicates' and compute_leaky_splits' default distance
COPIES = 0.01

_JOB = """
import json, sys, time, warnings
import numpy as np, fiftyone as fo, fiftyone.brain as fob
name, method, backend, out = sys.argv[1:5]
ds = fo.load_dataset(name)
kwargs = {{"similarity_index": "{key}"}} if backend == "lookalike" else {{"embeddings": np.load("{vectors}")}}
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    if method == "near duplicates":
        found = fob.compute_near_duplicates(ds, threshold={threshold}, **kwargs).duplicate_ids
    elif method == "leaky splits":
        found = fob.compute_leaky_splits(ds, splits="split", threshold={threshold}, **kwargs).leak_ids
    else:
        field = "uniqueness_" + backend
        fob.compute_uniqueness(ds, uniqueness_field=field, **kwargs)
        found = ds.values(field)
seconds = time.perf_counter() - t
json.dump({{"seconds": seconds, "found": list(found)}}, open(out, "w"))
"""


def planted(n: int, dim: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """``n`` rows plus the near copies of 1% of them; the split of each row (0 train, 1 test) and the pairs."""
    v, _ = vectors(n, dim)
    rng = np.random.default_rng(2)
    originals = rng.choice(n, int(COPIES * n), replace=False)
    copies = v[originals] + 0.25 / np.sqrt(dim) * rng.normal(size=(len(originals), dim)).astype(np.float32)
    v = np.concatenate([v, copies / np.linalg.norm(copies, axis=1, keepdims=True)])
    v -= v.mean(axis=0)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    split = (rng.random(len(v)) < 0.2).astype(np.int64)
    pairs = [(int(o), n + c) for c, o in enumerate(originals)]
    split[[c for _, c in pairs]] = [1 - split[o] if c % 2 else split[o] for o, c in pairs]
    return v.astype(np.float32), split, pairs


def make_dataset(name: str, split: np.ndarray) -> list[str]:
    import fiftyone as fo

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name, persistent=True)
    ds.add_samples([fo.Sample(filepath=f"/nonexistent/brain-methods/{i:07d}.jpg", split=("train", "test")[s])
                    for i, s in enumerate(split)], progress=False)
    return [str(i) for i in ds.values("id")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=int, default=[20_000, 100_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--methods", nargs="+", default=["near duplicates", "leaky splits", "uniqueness"])
    p.add_argument("--workdir", default="/tmp/lookalike-brain-methods")
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update({"HOME": str(work / "home"), "LOOKALIKE_HOME": str(work / "lookalike"),
                       "FIFTYONE_DATABASE_VALIDATION": "false", "FIFTYONE_DO_NOT_TRACK": "true"})
    from lookalike.database import start_private_database

    start_private_database(work / "db")  # before FiftyOne is imported
    from lookalike.brain import brain_key

    env = dict(os.environ)
    cli = [str(Path(sys.executable).parent / "lookalike")]
    print(f"CPU: {cpu()}")
    results: list[dict[str, Any]] = []
    for n in args.sizes:
        v, split, pairs = planted(n, args.dim)
        name = f"brain-methods-{n}"
        ids = make_dataset(name, split)
        np.save(work / "v.npy", v)
        (work / "v.ids.json").write_text(json.dumps(ids))
        print(f"\n{len(v):,} rows ({len(pairs):,} planted near copies, {sum(split[o] != split[c] for o, c in pairs):,}"
              f" across splits), {args.dim}-d; threshold {THRESHOLD}")
        print(f"{'job':<44} {'seconds':>9} {'peak RSS MB':>12}  found")
        stage("lookalike: import vectors (embed --vectors)", [*cli, "embed", name, "--vectors", str(work / "v.npy"),
                                                              "--ids", str(work / "v.ids.json"), "--model-name",
                                                              "planted"], env)
        script = work / "job.py"
        script.write_text(_JOB.format(key=brain_key("planted"), vectors=work / "v.npy", threshold=THRESHOLD))
        uniqueness: dict[str, np.ndarray] = {}
        for method in args.methods:
            for backend in ("lookalike", "sklearn"):
                out = work / "out.json"
                out.unlink(missing_ok=True)
                label = f"{backend}: {method}"
                r = stage(label, [sys.executable, str(script), name, method, backend, str(out)], env)
                found = json.loads(out.read_text())["found"]
                r.update(n=len(v), seconds_in_method=json.loads(out.read_text())["seconds"])
                if method == "uniqueness":
                    uniqueness[backend] = np.array(found, dtype=np.float64)
                    copies = np.array([c for _, c in pairs])
                    r["copies_in_least_unique_1pct"] = float(np.isin(copies, np.argsort(found)[:2 * len(pairs)]).mean())
                    note = f"planted copies among the 2% least unique: {r['copies_in_least_unique_1pct']:.3f}"
                else:
                    got = set(found)
                    wanted = [(ids[o], ids[c]) for o, c in pairs
                              if method == "near duplicates" or split[o] != split[c]]
                    r["planted_found"] = float(np.mean([a in got or b in got for a, b in wanted]))
                    r["flagged"] = len(got)
                    note = f"planted found {r['planted_found']:.3f}, flagged {len(got):,}"
                print(f"{'':<44} {'':>9} {'':>12}  {note} (in method {r['seconds_in_method']:.1f} s)", flush=True)
                results.append(r)
        if len(uniqueness) == 2:
            from scipy.stats import spearmanr

            rho = float(spearmanr(uniqueness["lookalike"], uniqueness["sklearn"]).statistic)
            print(f"  uniqueness, lookalike vs sklearn: Spearman {rho:.4f}")
            results.append({"n": len(v), "uniqueness_spearman": rho})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "brain-methods.json").write_text(json.dumps({"cpu": cpu(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
