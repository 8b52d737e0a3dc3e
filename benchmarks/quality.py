"""Image quality: lookalike vs CleanVision, on planted cases among real images.

    python benchmarks/quality.py

Three sets, each a clean part and planted copies of some of its images, 30 per issue:
- ``textile``: the 2,000 textile images (PyPI conformal-clip-data), RGB 250 x 250;
- ``fashion``: 3,000 Fashion-MNIST images, grey 28 x 28 (no grayscale cases in a grey set, nor in the textiles);
- ``photos``: 600 crops (160-400 px, aspect 3:4 to 4:3) of the colour photos scikit-image ships.
Planted: ``dark`` (pixels x 0.2), ``bright`` (255 - (255 - x) x 0.2), ``blurry`` (Gaussian, sigma = side / 64,
at least 1 px), ``low_information`` (contrast x 0.08 around the mean), ``grayscale`` (colour removed),
``odd_size`` (sides x 1/3 or x 3), ``odd_aspect_ratio`` (a third of the height kept).
Prints, per set and method: the share of clean images flagged with any issue, and per issue the share of
its planted cases flagged with it (recall); then, for each issue at other ``z`` cuts, recall / the share of
clean images flagged with it (how each issue's ``Z_FLAG`` was chosen: recall >= 0.90 on every set, clean
flags rare).
Writes benchmarks/results/quality.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from common import fashion_mnist, textile_files, write_results
from lookalike.image_quality import COLOUR_MIN, ISSUES, image_stats, score_issues

PLANTED = 30
COLOUR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina", "hubble_deep_field")
CLEANVISION = {"dark": "dark", "bright": "light", "blurry": "blurry", "low_information": "low_information",
               "grayscale": "grayscale", "odd_size": "odd_size", "odd_aspect_ratio": "odd_aspect_ratio"}


def clean_set(name: str, rng: np.random.Generator) -> list[Image.Image]:
    if name == "textile":
        return [Image.open(p).convert("RGB") for p in textile_files()[0]]
    if name == "fashion":
        images, _ = fashion_mnist(3000)
        return [Image.fromarray(im) for im in images]
    from skimage import data

    out = []
    for photo in COLOUR_PHOTOS:
        im = Image.fromarray(getattr(data, photo)()).convert("RGB")
        for _ in range(600 // len(COLOUR_PHOTOS) + 1):
            side = int(rng.integers(160, 401))
            w = min(im.width, int(side * rng.uniform(0.87, 1.15)))
            h = min(im.height, side)
            x, y = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
            out.append(im.crop((x, y, x + w, y + h)))
    return out[:600]


def plant(image: Image.Image, issue: str, rng: np.random.Generator) -> Image.Image:
    x = np.asarray(image, dtype=np.float32)
    if issue == "dark":
        return Image.fromarray((x * 0.2).astype(np.uint8))
    if issue == "bright":
        return Image.fromarray((255 - (255 - x) * 0.2).astype(np.uint8))
    if issue == "low_information":
        return Image.fromarray(np.clip(x.mean() + (x - x.mean()) * 0.08, 0, 255).astype(np.uint8))
    if issue == "blurry":
        return image.filter(ImageFilter.GaussianBlur(max(1.0, max(image.size) / 64)))
    if issue == "grayscale":
        return image.convert("L").convert(image.mode)
    w, h = image.size
    if issue == "odd_size":
        f = 3.0 if rng.random() < 0.5 else 1 / 3
        return image.resize((max(4, round(w * f)), max(4, round(h * f))), Image.Resampling.BICUBIC)
    if issue == "odd_aspect_ratio":
        return image.crop((0, h // 3, w, h // 3 + max(1, h // 3)))
    raise ValueError(issue)


def build(name: str, seed: int = 0) -> tuple[list[Image.Image], list[str | None]]:
    """The clean images, then the planted ones; each image's planted issue (None: clean)."""
    rng = np.random.default_rng(seed)
    clean = clean_set(name, rng)
    grey = np.median([image_stats(im)[3] for im in clean[:200]]) < COLOUR_MIN  # no grayscale cases in a grey set
    issues = [i for i in ISSUES if not (grey and i == "grayscale")]
    sources = rng.choice(len(clean), PLANTED * len(issues), replace=False)
    planted = [plant(clean[s], issue, rng) for issue, s in zip(np.repeat(issues, PLANTED), sources, strict=True)]
    return clean + planted, [None] * len(clean) + list(np.repeat(issues, PLANTED))


def rates(flags: dict[str, np.ndarray], truth: list[str | None]) -> dict[str, float]:
    clean = np.array([t is None for t in truth])
    any_flag = np.any(np.stack(list(flags.values())), axis=0)
    out = {"clean_flagged": float(any_flag[clean].mean())}
    out.update({f"clean_{i}": float(f[clean].mean()) for i, f in flags.items()})
    for issue in ISSUES:
        mine = np.array([t == issue for t in truth])
        if mine.any() and issue in flags:
            out[issue] = float(flags[issue][mine].mean())
    return out


def measured(images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """lookalike's measures of each image (what the decode pass caches), and the seconds they took."""
    t0 = time.perf_counter()
    stats = np.stack([image_stats(im) for im in images])
    return stats, np.array([im.width for im in images]), np.array([im.height for im in images]), \
        time.perf_counter() - t0


def cleanvision_flags(images: list[Image.Image]) -> tuple[dict[str, np.ndarray], float]:
    from cleanvision import Imagelab

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, im in enumerate(images):
            path = Path(tmp) / f"{i:06d}.png"
            im.save(path)
            paths.append(str(path))
        t0 = time.perf_counter()
        lab = Imagelab(filepaths=paths)
        lab.find_issues({CLEANVISION[i]: {} for i in ISSUES}, verbose=False)
        seconds = time.perf_counter() - t0
        df = lab.issues.reindex(paths)
    return {i: df[f"is_{CLEANVISION[i]}_issue"].to_numpy(bool) for i in ISSUES}, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["textile", "fashion", "photos"])
    p.add_argument("--z", nargs="+", type=float, default=[3.0, 3.5, 4.0, 5.0, 6.0])
    p.add_argument("--no-cleanvision", action="store_true")
    args = p.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in args.sets:
        images, truth = build(name)
        print(f"\n{name}: {sum(t is None for t in truth)} clean + {sum(t is not None for t in truth)} planted")
        stats, widths, heights, seconds = measured(images)
        results[name] = {}
        print(f"  {'method':<22} {'clean flagged':>13}  " + " ".join(f"{i[:12]:>12}" for i in ISSUES) + "  seconds")
        default = {i: s >= 0.5 for i, s in score_issues(stats, widths, heights).items()}
        r = rates(default, truth)
        results[name]["lookalike"] = r
        print(f"  {'lookalike (default)':<22} {r['clean_flagged']:13.3f}  " +
              " ".join(f"{r[i]:12.2f}" if i in r else f"{'-':>12}" for i in ISSUES) + f"  {seconds:7.1f}")
        print(f"  {'  clean, by issue':<22} {'':13}  " + " ".join(f"{r['clean_' + i]:12.3f}" for i in ISSUES))
        for z in args.z:  # each issue's flag at other z: recall / share of clean images flagged
            r = rates({i: s >= 0.5 for i, s in score_issues(stats, widths, heights, {i: z for i in ISSUES}).items()},
                      truth)
            results[name][f"lookalike z={z:g}"] = r
            print(f"  {'  at z=' + format(z, 'g'):<22} {'':13}  " + " ".join(
                f"{r.get(i, float('nan')):5.2f}/{r['clean_' + i]:.3f}" for i in ISSUES))
        if not args.no_cleanvision:
            flags, seconds = cleanvision_flags(images)
            r = rates(flags, truth)
            results[name]["cleanvision"] = r
            print(f"  {'cleanvision (default)':<22} {r['clean_flagged']:13.3f}  " +
                  " ".join(f"{r[i]:12.2f}" if i in r else f"{'-':>12}" for i in ISSUES) + f"  {seconds:7.1f}")
    write_results("quality", results)


if __name__ == "__main__":
    main()
