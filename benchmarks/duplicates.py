"""Near duplicates: lookalike vs fiftyone-brain, on planted augmented copies among real images.

    python benchmarks/duplicates.py

Four sets with planted copies. In the first two, one copy per source with one augmentation each, in turn:
JPEG quality 30, a 1-2 px shift, brightness +-10%, a horizontal flip, a 10% crop resized back:
- ``fashion``: 10,000 Fashion-MNIST test images + 500 copies;
- ``textile``: 2,000 textile images (PyPI conformal-clip-data; distinct fabrics that look alike, the hard
  negatives) + 200 copies.
- ``photos``: 20 real photos (scikit-image) among the 2,000 textiles, each with three copies that thumbnails
  cannot line up: a heavy crop (60-80% of each side kept, off-centre) resized back, a rotation by 5-15
  degrees, and a cut-out (70% of each side) kept at its size. A photo and its copies are all duplicates of
  each other (6 pairs a photo).
- ``photo-groups``: the same 20 photos among the textiles, each with five copies, one per augmentation of
  the first two sets: groups of 6 (15 pairs a photo), larger than the crowd rule lets thumbnails find.
- ``crops``: the 20 photos among the textiles; 200 of the textiles and every photo re-cropped: 5-25% of each
  side cut (one share for both sides), off-centre, resized back.
Embeddings: EfficientNet-Lite0 at 112 px. Prints pair precision and recall at each method's default
(and lookalike at other thresholds, and without keypoint matching), counting only planted pairs as true.
"""

from __future__ import annotations

import argparse
import io
import itertools
import time
import warnings

import numpy as np
from PIL import Image, ImageEnhance

from common import CACHE, fashion_mnist, textile_files, write_results
from lookalike.dedup import DEFAULT_THRESHOLD, find_duplicates
from lookalike.graph import exact_knn
from lookalike.thumbnails import image_facts

AUGMENTATIONS = ("jpeg30", "shift", "brightness", "flip", "crop")
HEAVY = ("heavy-crop", "rotate", "cut-out")
CROPS = 200  # textiles cropped in the crops set (each of the 20 photos too)
PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel",
          "horse", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "cell",
          "logo")


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
    if kind == "rotate":
        return image.rotate(float(rng.uniform(5, 15) * rng.choice([-1, 1])), Image.Resampling.BICUBIC)
    w, h = image.size
    if kind == "re-crop":  # 5-25% of each side cut, off-centre, resized back
        keep = 1 - rng.uniform(0.05, 0.25)
        cw, ch = round(w * keep), round(h * keep)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return image.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BICUBIC)
    if kind == "crop":
        box = (round(0.05 * w), round(0.05 * h), w - round(0.05 * w), h - round(0.05 * h))
        return image.crop(box).resize((w, h), Image.Resampling.BICUBIC)
    keep = rng.uniform(0.6, 0.8) if kind == "heavy-crop" else 0.7
    cw, ch = int(w * keep), int(h * keep)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    cut = image.crop((x, y, x + cw, y + ch))
    return cut.resize((w, h), Image.Resampling.BICUBIC) if kind == "heavy-crop" else cut


def load_set(name: str) -> list[Image.Image]:
    if name == "fashion":
        images, _ = fashion_mnist(70_000)
        return [Image.fromarray(a) for a in images[60_000:70_000]]
    textiles = [Image.open(p).convert("RGB") for p in textile_files()[0]]
    if name == "textile":
        return textiles
    from skimage import data
    from skimage.util import img_as_ubyte

    return textiles + [Image.fromarray(img_as_ubyte(getattr(data, p)())).convert("RGB") for p in PHOTOS]


def plant(name: str, rng: np.random.Generator) -> tuple[list[Image.Image], list[tuple[int, str]]]:
    """The set's images followed by its planted copies, and each copy's (source, augmentation)."""
    originals = load_set(name)
    if name == "crops":
        textiles = rng.choice(len(originals) - len(PHOTOS), CROPS, replace=False).tolist()
        copies = [(s, "re-crop") for s in [*textiles, *range(len(originals) - len(PHOTOS), len(originals))]]
    elif name.startswith("photo"):
        kinds = HEAVY if name == "photos" else AUGMENTATIONS
        copies = [(s, kind) for s in range(len(originals) - len(PHOTOS), len(originals)) for kind in kinds]
    else:
        n = 500 if name == "fashion" else 200
        copies = [(int(s), AUGMENTATIONS[i % 5]) for i, s in enumerate(rng.choice(len(originals), n, replace=False))]
    return originals + [augment(originals[s], kind, rng) for s, kind in copies], copies


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


FIGURES: dict[str, dict[str, dict[str, float]]] = {}  # set -> method -> figures, written as JSON


def pr(found: set[tuple[int, int]], truth: set[tuple[int, int]], record: tuple[str, str] | None = None) -> str:
    tp = len(found & truth)
    p, r = tp / max(1, len(found)), tp / len(truth)
    if record:
        FIGURES.setdefault(record[0], {})[record[1]] = {"precision": p, "recall": r, "pairs": len(found)}
    return f"P {p:.3f}  R {r:.3f}  ({len(found)} pairs)"


def run(name: str, rng: np.random.Generator) -> None:
    images, copies = plant(name, rng)
    n0 = len(images) - len(copies)
    family: dict[int, list[int]] = {}  # a source and its copies: all duplicates of each other
    for i, (s, _) in enumerate(copies):
        family.setdefault(s, [s]).append(n0 + i)
    truth = {p for f in family.values() for p in itertools.combinations(f, 2)}
    cached = CACHE / f"duplicates-{name}-{len(copies)}-effnet-lite0-112px.npy"
    t = time.perf_counter()
    vectors = np.load(cached) if cached.exists() else embed(images)
    CACHE.mkdir(exist_ok=True)
    np.save(cached, vectors)
    print(f"\n{name}: {n0} images + {len(copies)} planted copies (embedded in {time.perf_counter() - t:.0f} s)")

    t = time.perf_counter()
    facts = [image_facts(im) for im in images]
    facts_s = time.perf_counter() - t
    graph = exact_knn(vectors, 10)
    nn_ok = np.mean([graph.indices[n0 + i, 0] in family[s] for i, (s, _) in enumerate(copies)])
    print(f"  copies whose nearest embedding neighbour is their source or a sibling copy: {nn_ok:.1%}")
    hashes = [f"file-{i}" for i in range(len(images))]  # every image is its own file
    for th, keypoints in [(th, True) for th in sorted({0.85, DEFAULT_THRESHOLD, 0.97})] + [(DEFAULT_THRESHOLD, False)]:
        t = time.perf_counter()
        groups, verified = find_duplicates(facts, hashes, [None] * len(images), graph=graph, threshold=th,
                                           open_image=images.__getitem__ if keypoints else None)
        scores = verified.best()
        found = {(a, b) for g in groups for a, b in itertools.combinations(g.members, 2)}
        default = th == DEFAULT_THRESHOLD and keypoints
        mark = f" (default; thumbnails {facts_s:.1f} s + graph and pairs {time.perf_counter() - t:.1f} s)" \
            if default else "" if keypoints else f" without keypoint matching ({time.perf_counter() - t:.1f} s)"
        method = f"lookalike {th}" + ("" if keypoints else " without keypoints")
        print(f"  lookalike threshold {th}: {pr(found, truth, (name, method))}{mark}")
        if default:
            print(f"  candidates cover {len(set(scores) & truth) / len(truth):.1%} of planted pairs")
            for kind in dict.fromkeys(k for _, k in copies):
                kind_truth = {(s, n0 + i) for i, (s, k) in enumerate(copies) if k == kind}
                print(f"    recall on {kind:<10}: {len(found & kind_truth) / len(kind_truth):.3f}")
            unplanted = sorted(p for p in found - truth if p[1] < n0)
            same = sum(np.abs(np.asarray(images[a], float) - np.asarray(images[b], float)).mean() < 2
                       for a, b in unplanted)
            print(f"  found pairs among the original images (not planted, so counted false): {len(unplanted)}, "
                  f"of which {same} differ by under 2 grey levels per pixel (copies already in the data)")
    t = time.perf_counter()
    print(f"  fiftyone-brain default: {pr(brain_pairs(vectors), truth, (name, 'fiftyone-brain'))}  "
          f"{time.perf_counter() - t:.1f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["fashion", "textile", "photos", "photo-groups", "crops"])
    args = p.parse_args()
    for name in args.sets:
        run(name, np.random.default_rng(0))
    write_results("duplicates", FIGURES)


if __name__ == "__main__":
    main()
