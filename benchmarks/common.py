"""Shared benchmark inputs: real EfficientNet-Lite0 embeddings of Fashion-MNIST, cached on disk."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CACHE = Path(__file__).parent / ".cache"
RESULTS = Path(__file__).parent / "results"  # each benchmark's figures, as JSON


def cpu() -> str:
    """This machine's CPU model and its matrix units (AMX, AVX512-BF16: bf16 fast; AVX-512): every figure names it."""
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model} ({', '.join(extras) or 'no AVX-512, no AMX'})"


def write_results(name: str, results: object) -> Path:
    """Write a benchmark's figures to ``RESULTS/<name>.json`` and say where."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten {out}")
    return out


def fashion_mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Fashion-MNIST images and labels: train then test (70,000), then horizontal flips of those."""
    from lookalike.demo import read_fashion_mnist

    parts = [read_fashion_mnist("train"), read_fashion_mnist("test")]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if n > len(images):
        images = np.concatenate([images, images[:, :, ::-1]])
        labels = np.concatenate([labels, labels])
    if n > len(images):
        raise ValueError(f"at most {len(images)} images available")
    return images[:n], labels[:n]


def fashion_mnist_files(n: int, folder: Path) -> tuple[list[str], np.ndarray]:
    """The first ``n`` images of :func:`fashion_mnist` as PNG files in ``folder``, and their labels."""
    from PIL import Image

    images, labels = fashion_mnist(n)
    paths = []
    for i, a in enumerate(images):
        path = folder / f"{i:06d}.png"
        Image.fromarray(a).save(path)
        paths.append(str(path))
    return paths, labels


def embeddings(n: int, image_size: int = 112, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised EfficientNet-Lite0 embeddings of the first ``n`` images of :func:`fashion_mnist`,
    computed with lookalike's own preprocessing and model, cached in benchmarks/.cache/."""
    import torch
    from PIL import Image

    from lookalike.models import get_embedder

    images, labels = fashion_mnist(n)
    path = CACHE / f"fmnist-effnet-lite0-{image_size}px.npy"
    done = np.load(path, mmap_mode="r") if path.exists() else np.zeros((0, 1280), np.float32)
    if len(done) < n:
        done = np.array(done)
        embedder = get_embedder("efficientnet-lite0", image_size=image_size)
        chunks = [done]
        start, t0 = len(done), time.time()
        for s in range(start, n, batch_size):
            batch = torch.stack([embedder.preprocess(Image.fromarray(im)) for im in images[s:s + batch_size]])
            chunks.append(embedder.embed_images(batch))
            if (s // batch_size) % 20 == 0:
                rate = (s + batch_size - start) / (time.time() - t0)
                print(f"  embedded {s + batch_size}/{n} ({rate:.0f} img/s)", file=sys.stderr, flush=True)
                CACHE.mkdir(exist_ok=True)
                np.save(path, np.concatenate(chunks))
        done = np.concatenate(chunks)
        np.save(path, done)
    return np.array(done[:n]), labels


def textile_files() -> tuple[list[Path], np.ndarray]:
    """The 2,000 textile images (PyPI conformal-clip-data), in one order for every benchmark, and each one's
    class (its folder) as a number."""
    from conformal_clip_data import textile_simulated_root

    root = textile_simulated_root()
    files = sorted(root.rglob("*.jpg")) + sorted(root.rglob("*.png"))
    names = sorted({f.parent.name for f in files})
    return files, np.array([names.index(f.parent.name) for f in files])


def embedded(name: str, images: Callable[[], list[Any]]) -> np.ndarray:
    """EfficientNet-Lite0 (112 px) embeddings of the PIL images ``images()`` makes (called only when the cache,
    benchmarks/.cache/<name>-effnet-lite0-112px.npy, is missing)."""
    path = CACHE / f"{name}-effnet-lite0-112px.npy"
    if not path.exists():
        import torch

        from lookalike.models import get_embedder

        model = get_embedder("efficientnet-lite0", image_size=112)
        pictures = images()
        CACHE.mkdir(exist_ok=True)
        np.save(path, np.concatenate([
            model.embed_images(torch.stack([model.preprocess(im.convert("RGB")) for im in pictures[s:s + 64]]))
            for s in range(0, len(pictures), 64)]))
    return np.load(path)


def textile() -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the textile images and their classes."""
    from PIL import Image

    files, labels = textile_files()
    return embedded("textile", lambda: [Image.open(f) for f in files]), labels
