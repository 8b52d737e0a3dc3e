"""Same findings everywhere? The main job's steps (real Fashion-MNIST images, EfficientNet-Lite0 at 160 px, mislabels,
duplicates, map) run in fresh processes that differ in one way each from the first, and what moved is counted:

- ``1 thread``: OMP_NUM_THREADS=1 (model, graph, probe, map);
- ``bf16 graph``: the kNN graph's candidates from bf16 products (re-scored);
- ``AVX2 kernels``: ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2, as on a CPU without AVX-512;
- ``bf16 model``: the model under bf16 autocast (other vectors, by design: their own cache and collection).

    python benchmarks/same_findings.py [--n 2000]

For each: the cosine of each image's vector to the first run's, and the suspects, duplicate groups and cluster
assignments that differ. Writes benchmarks/results/same_findings.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from common import cpu, write_results

VARIANTS: dict[str, dict[str, str]] = {
    "first run": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "bf16 graph": {"SAME_FINDINGS_GRAPH": "bf16"},
    "AVX2 kernels": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "bf16 model": {"LOOKALIKE_PRECISION": "bf16"},
}


def one_run(images: Path, work: Path) -> None:
    """The main job's steps in this process, in a database and home of its own; findings by file name."""
    os.environ.update({"HOME": str(work / "home"), "LOOKALIKE_HOME": str(work / "lookalike"),
                       "FIFTYONE_DATABASE_VALIDATION": "false", "FIFTYONE_DO_NOT_TRACK": "true"})
    from lookalike.database import start_private_database

    start_private_database(work / "db")
    import fiftyone as fo

    import lookalike
    from lookalike.config import load_config

    config = load_config(overrides={"embed": {"num_workers": 0},
                                    "index": {"graph_precision": os.environ.get("SAME_FINDINGS_GRAPH", "fp32")}})
    lookalike.load(images, name="same")
    lookalike.embed("same", "efficientnet-lite0", image_size=160, config=config)
    ids, vectors = lookalike.embeddings("same", config=config)
    suspects = lookalike.mislabels("same", config=config)
    groups = lookalike.duplicates("same", config=config)
    lookalike.compute_map("same", config=config)
    ds = fo.load_dataset("same")
    name = {i: Path(p).name for i, p in zip(*ds.values(["id", "filepath"]), strict=True)}
    clusters = dict(zip(*ds.values(["id", "cluster"]), strict=True))
    np.save(work / "vectors.npy", vectors[np.argsort([name[i] for i in ids])])
    (work / "findings.json").write_text(json.dumps({
        "suspects": sorted(f"{name[s.id]}->{s.suggested_label}" for s in suspects if s.flagged),
        "groups": sorted(",".join(sorted(name[m.id] for m in g.members)) for g in groups),
        "clusters": {name[i]: c for i, c in clusters.items()}}))


def moved(first: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    from sklearn.metrics import adjusted_rand_score

    files = sorted(first["clusters"])
    return {"suspects": len(set(first["suspects"]) ^ set(other["suspects"])), "of_suspects": len(first["suspects"]),
            "groups": len(set(first["groups"]) ^ set(other["groups"])), "of_groups": len(first["groups"]),
            "cluster_ari": float(adjusted_rand_score([first["clusters"][f] for f in files],
                                                     [other["clusters"][f] for f in files]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--one-run", nargs=2, help=argparse.SUPPRESS)  # images, work: the child process
    args = p.parse_args()
    if args.one_run:
        one_run(Path(args.one_run[0]), Path(args.one_run[1]))
        return
    from lookalike.demo import write_fashion_mnist

    tmp = Path(tempfile.mkdtemp(prefix="lookalike-same-findings-"))
    images = write_fashion_mnist(tmp / "images", {"train": args.n * 4 // 5, "test": args.n // 5})
    print(f"CPU: {cpu()}; {args.n} Fashion-MNIST images, EfficientNet-Lite0 160 px")
    runs: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    results = {}
    for variant, env in VARIANTS.items():
        work = tmp / variant.replace(" ", "-")
        subprocess.run([sys.executable, __file__, "--one-run", str(images), str(work)], check=True,
                       env={**os.environ, **env}, capture_output=True)
        runs[variant] = np.load(work / "vectors.npy"), json.loads((work / "findings.json").read_text())
        v0, f0 = runs["first run"]
        v, f = runs[variant]
        cos = np.sum(v0 * v, axis=1)
        results[variant] = {"cosine_min": float(cos.min()), "cosine_p1": float(np.percentile(cos, 1)),
                            "identical_vectors": float(np.mean(np.all(v0 == v, axis=1))), **moved(f0, f)}
        r = results[variant]
        print(f"  {variant:<14} vectors identical {r['identical_vectors']:.3f}, cosine min {r['cosine_min']:.5f}; "
              f"suspects moved {r['suspects']} of {r['of_suspects']}, groups moved {r['groups']} of "
              f"{r['of_groups']}, clusters ARI {r['cluster_ari']:.3f}")
    write_results("same_findings", {"cpu": cpu(), "n": args.n, "results": results})


if __name__ == "__main__":
    main()
