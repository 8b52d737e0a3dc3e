"""Does the pipeline keep the model busy? End-to-end embedding img/s over the model's forward-only img/s.

    python benchmarks/embedding_speed.py [--n 3072] [--models efficientnet-lite0 clip:ViT-B-32]

End to end is `lookalike.embed`'s own path, :func:`lookalike.embedding.embed_files`: hash each file, decode
and preprocess in worker processes, run the model, write vectors and thumbnails to a fresh cache. Forward
only is the model alone on the same images, preprocessed beforehand, in the same batches. Both in fp32 and
bf16 (autocast; AMX on CPUs that have it). Real Fashion-MNIST PNGs; ViT-B-32 has random weights (no
weights are reachable here), which is fine for speed. Fidelity of bf16 (efficientnet-lite0, real weights):
cosine to the fp32 vector per image, and the 10-NN label accuracy of both.
Results also go to benchmarks/results/embedding_speed.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS, fashion_mnist_files


def _forward(embedder: Any, paths: list[str], batch_size: int) -> tuple[float, np.ndarray]:
    import torch
    from PIL import Image

    batches = [torch.stack([embedder.preprocess(Image.open(p)) for p in paths[s:s + batch_size]])
               for s in range(0, len(paths), batch_size)]
    embedder.embed_images(batches[0])  # warm-up: kernel selection
    t = time.perf_counter()
    out = [embedder.embed_images(b) for b in batches]
    return len(paths) / (time.perf_counter() - t), np.concatenate(out)


def _end_to_end(embedder: Any, paths: list[str], batch_size: int, workers: int) -> float:
    from lookalike.embedding import EmbeddingCache, embed_files

    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(Path(tmp) / "cache.sqlite")
        embed_files(paths[:batch_size * 2], embedder, None, batch_size=batch_size, num_workers=0)  # warm-up
        t = time.perf_counter()
        result = embed_files(paths, embedder, cache, batch_size=batch_size, num_workers=workers)
        seconds = time.perf_counter() - t
        cache.close()
    assert result.computed == len(paths), result.errors
    return len(paths) / seconds


def _knn_accuracy(v: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    from lookalike.graph import exact_knn

    graph = exact_knn(v, k, precision="fp32")
    votes = np.zeros((len(v), int(labels.max()) + 1))
    np.add.at(votes, (np.repeat(np.arange(len(v)), k), labels[graph.indices].ravel()), 1)
    return float((votes.argmax(axis=1) == labels).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3072, help="images (default 3072)")
    p.add_argument("--models", nargs="+", default=["efficientnet-lite0", "clip:ViT-B-32"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    from lookalike.hardware import fast_bf16
    from lookalike.models import get_embedder

    print(f"bf16 fast on this CPU (lookalike.hardware.fast_bf16): {fast_bf16('cpu')}")
    print(f"{'model':<20} {'precision':<9} {'forward img/s':>14} {'end-to-end img/s':>17} {'ratio':>6}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths, labels = fashion_mnist_files(args.n, Path(tmp))
        for model in args.models:
            size = 112 if model == "efficientnet-lite0" else None
            pretrained = "random" if model.startswith("clip:") else None
            vectors = {}
            for precision in ("fp32", "bf16"):
                embedder = get_embedder(model, pretrained=pretrained, image_size=size, precision=precision)
                forward, vectors[precision] = _forward(embedder, paths, args.batch_size)
                e2e = _end_to_end(embedder, paths, args.batch_size, args.workers)
                rows.append({"model": model, "precision": precision, "forward": forward, "end_to_end": e2e,
                             "ratio": e2e / forward})
                print(f"{model:<20} {precision:<9} {forward:>14.0f} {e2e:>17.0f} {e2e / forward:>6.2f}", flush=True)
            if pretrained is None:
                cos = np.sum(vectors["fp32"] * vectors["bf16"], axis=1)
                acc = {k: _knn_accuracy(v, labels) for k, v in vectors.items()}
                rows.append({"model": model, "bf16_cosine_min": float(cos.min()), "bf16_cosine_p01":
                             float(np.quantile(cos, 0.01)), "knn10_accuracy": acc})
                print(f"  bf16 vs fp32 ({model}, {args.n} real images): cosine min {cos.min():.4f}, "
                      f"1st percentile {np.quantile(cos, 0.01):.4f}, share >= 0.99 {np.mean(cos >= 0.99):.4f}; "
                      f"10-NN label accuracy fp32 {acc['fp32']:.4f}, bf16 {acc['bf16']:.4f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "embedding_speed.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
