"""Near duplicates: lookalike vs fiftyone-brain, on planted augmented copies among real images.

    python benchmarks/duplicates.py

Two sets, each with planted copies (one augmentation each, in turn: JPEG quality 30, a 1-2 px shift,
brightness +-10%, a horizontal flip, a 10% crop resized back):
- ``fashion``: 10,000 Fashion-MNIST test images + 500 copies;
- ``textile``: 2,000 textile images (PyPI conformal-clip-data; distinct fabrics that look alike, the hard
  negatives) + 200 copies.
Embeddings: EfficientNet-Lite0 at 112 px. Prints pair precision and recall at each method's default
(and lookalike at other thresholds), counting only planted pairs as true.
"""

from __future__ import annotations

import argparse
import io
import itertools
import time
import warnings

import numpy as np
from PIL import Image, ImageEnhance

from common import CACHE, fashion_mnist
from lookalike.dedup import DEFAULT_THRESHOLD, find_duplicates, image_facts
from lookalike.graph import exact_knn

AUGMENTATIONS = ("jpeg30", "shift", "brightness", "flip", "crop")


def augment(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    if kind == "jpeg30":
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="JPEG", quality=30)
        return Image.open(io.BytesIO(buf.getvalue())).convert(image.mode)
    if kind == "shift":
        dx, dy = rng.integers(1, 3, 2) * rng.choice([-1, 1], 2)
        return image.transform(image.size, Image.Transform.AFFINE, (1, 0, int(dx), 0, 1, int(dy)))
    if kind == "brightness":
        return ImageEnhance.Brightness(image).enhance(float(rng.choice([0.9, 1.1])))
    if kind == "flip":
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    w, h = image.size
    box = (round(0.05 * w), round(0.05 * h), w - round(0.05 * w), h - round(0.05 * h))
    return image.crop(box).resize((w, h), Image.Resampling.BICUBIC)


def load_set(name: str) -> list[Image.Image]:
    if name == "fashion":
        images, _ = fashion_mnist(70_000)
        return [Image.fromarray(a) for a in images[60_000:70_000]]
    from conformal_clip_data import textile_simulated_root

    root = textile_simulated_root()
    return [Image.open(p).convert("RGB") for p in sorted(root.rglob("*.jpg")) + sorted(root.rglob("*.png"))]


def embed(images: list[Image.Image]) -> np.ndarray:
    import torch

    from lookalike.models import get_embedder

    model = get_embedder("efficientnet-lite0", image_size=112)
    return np.concatenate([model.embed_images(torch.stack([model.preprocess(im) for im in images[s:s + 128]]))
                           for s in range(0, len(images), 128)])


def brain_pairs(vectors: np.ndarray) -> set[tuple[int, int]]:
    """fiftyone-brain's compute_near_duplicates at its default threshold, on the same vectors."""
    import fiftyone as fo
    import fiftyone.brain as fob

    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f"/nonexistent/{i}.png", row=i) for i in range(len(vectors))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = fob.compute_near_duplicates(ds, embeddings=vectors, progress=False)
    row = dict(zip(ds.values("id"), ds.values("row"), strict=True))
    pairs = {(min(row[a], row[b]), max(row[a], row[b]))
             for a, dups in index.neighbors_map.items() for b, _ in dups}
    ds.delete()
    return pairs


def pr(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> str:
    tp = len(found & truth)
    return f"P {tp / max(1, len(found)):.3f}  R {tp / len(truth):.3f}  ({len(found)} pairs)"


def run(name: str, copies: int, rng: np.random.Generator) -> None:
    originals = load_set(name)
    sources = rng.choice(len(originals), copies, replace=False)
    planted = [augment(originals[s], AUGMENTATIONS[i % 5], rng) for i, s in enumerate(sources)]
    images = originals + planted
    n0 = len(originals)
    truth = {(int(s), n0 + i) for i, s in enumerate(sources)}
    cached = CACHE / f"duplicates-{name}-{copies}-effnet-lite0-112px.npy"
    t = time.perf_counter()
    vectors = np.load(cached) if cached.exists() else embed(images)
    CACHE.mkdir(exist_ok=True)
    np.save(cached, vectors)
    print(f"\n{name}: {n0} images + {copies} planted copies (embedded in {time.perf_counter() - t:.0f} s)")

    t = time.perf_counter()
    facts = [image_facts(im) for im in images]
    facts_s = time.perf_counter() - t
    graph = exact_knn(vectors, 10)
    nn_ok = np.mean([graph.indices[n0 + i, 0] == s for i, s in enumerate(sources)])
    print(f"  copies whose source is their embedding nearest neighbour: {nn_ok:.1%}")
    hashes = [f"file-{i}" for i in range(len(images))]  # every image is its own file
    for th in sorted({0.85, DEFAULT_THRESHOLD, 0.95, 0.97}):
        t = time.perf_counter()
        groups, scores = find_duplicates(facts, hashes, [None] * len(images), graph=graph, threshold=th)
        found = {(a, b) for g in groups for a, b in itertools.combinations(g.members, 2)}
        mark = f" (default; thumbnails {facts_s:.1f} s + graph and pairs {time.perf_counter() - t:.1f} s)" \
            if th == DEFAULT_THRESHOLD else ""
        print(f"  lookalike threshold {th}: {pr(found, truth)}{mark}")
        if th == DEFAULT_THRESHOLD:
            print(f"  candidates from both searches cover {len(set(scores) & truth) / len(truth):.1%} of planted pairs")
            for kind in AUGMENTATIONS:
                kind_truth = {(int(s), n0 + i) for i, s in enumerate(sources) if AUGMENTATIONS[i % 5] == kind}
                print(f"    recall on {kind:<10}: {len(found & kind_truth) / len(kind_truth):.3f}")
            unplanted = sorted(p for p in found - truth if p[1] < n0)
            same = sum(np.abs(np.asarray(images[a], float) - np.asarray(images[b], float)).mean() < 2
                       for a, b in unplanted)
            print(f"  found pairs among the original images (not planted, so counted false): {len(unplanted)}, "
                  f"of which {same} differ by under 2 grey levels per pixel (copies already in the data)")
    t = time.perf_counter()
    print(f"  fiftyone-brain default: {pr(brain_pairs(vectors), truth)}  {time.perf_counter() - t:.1f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["fashion", "textile"])
    args = p.parse_args()
    for name in args.sets:
        run(name, 500 if name == "fashion" else 200, np.random.default_rng(0))


if __name__ == "__main__":
    main()
