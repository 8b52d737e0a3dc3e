"""Image quality: dark, bright, blurry, low information, grayscale, odd size and odd aspect ratio — the
issues CleanVision, fastdup and FiftyOne's Data Quality panel flag — from pixels.

:func:`image_stats` measures each image once, in the decode pass that makes its thumbnail (cached with it);
:func:`score_issues` turns a collection's measurements into one score per issue. Each issue has a measure
that grows with it (darkness: minus the log of the 99th luminance percentile; blur: minus the log of the
Laplacian's variance over the luminance's; ...). An image is judged against the collection it is in, as
these tools do for size: ``z`` is its measure's distance above the collection's median in robust standard
deviations (1.4826 MAD, with a floor per issue so a collection of identical images does not flag a pixel's
difference). ``score = clip(z / (2 * Z_FLAG[issue]), 0, 1)``: 0 for a typical image, 0.5 at the flag, 1 far out.
``Z_FLAG`` (per issue) and the floors were chosen with ``benchmarks/quality.py`` on planted cases (darkened,
brightened, blurred, flattened, greyed, resized and cut copies of real images) in three sets.
Grayscale is judged against a colour collection only: in a grey dataset no image is flagged for it.
Some images are flagged whatever the collection (``ABSOLUTE``): where the collection varies widely (photos
of night skies beside daylight ones) its spread hides them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .arrays import flag_score, robust_z

if TYPE_CHECKING:
    from PIL import Image

STATS_SIDE = 512  # images are measured at most this large (blur that shows at a viewing size)
STATS = ("p1", "p99", "contrast", "chroma", "sharpness")  # what image_stats returns, in order
ISSUES = ("dark", "bright", "blurry", "low_information", "grayscale", "odd_size", "odd_aspect_ratio")
# Robust standard deviations above the median that flag each issue (benchmarks/quality.py).
# Each the lowest whose clean flags stay rare on every set; alone, dark and low information would need 3 to
# 3.5 to reach recall 0.90 on the photo crops (a deep-sky photo among daylight ones widens the spread), which
# flags 2-3% of Fashion-MNIST's dark garments on black: ABSOLUTE finds those instead.
Z_FLAG = {"dark": 4.0, "bright": 4.0, "blurry": 4.0, "low_information": 3.5, "grayscale": 4.0, "odd_size": 4.0,
          "odd_aspect_ratio": 4.0}
# The least spread assumed per issue (a collection of identical images has none): a flag then needs a
# measure Z_FLAG floors above the median. Sizes: 4x the area; aspect: 2x as elongated; grayscale: no colour
# at all against a colourful median.
FLOORS = {"dark": 0.08, "bright": 0.08, "blurry": 0.1, "low_information": 0.1, "grayscale": 0.35,
          "odd_size": float(np.log(4) / Z_FLAG["odd_size"]),
          "odd_aspect_ratio": float(np.log(2) / Z_FLAG["odd_aspect_ratio"])}
COLOUR_MIN = 0.03  # median chroma of a colour collection (grey ones score no grayscale)
# Flagged whatever the collection's spread, below these levels of a stat: nothing brighter than a fifth of
# white (more than 2.3 stops under an exposure whose highlights reach white), nothing darker than four
# fifths (as far over), a luminance that varies by under 2% (5 grey levels), no colour (in a colour
# collection). Clean images flagged by these alone, benchmarks/quality.py: 0.2% of the photo crops (black
# night sky), none of the textiles or Fashion-MNIST.
ABSOLUTE = {"dark": ("p99", 0.2), "bright": ("1-p1", 0.2), "low_information": ("contrast", 0.02),
            "grayscale": ("chroma", 0.01)}


def image_stats(image: Image.Image) -> np.ndarray:
    """An image's quality measures (``STATS``): luminance 1st and 99th percentiles (0..1), contrast (the
    luminance's standard deviation), mean chroma (max - min channel, 0..1) and sharpness: the Laplacian's
    energy at full size over its energy at half size. Blur empties the top octave first; in sharp images
    of any content (their spectra fall off alike) the ratio stays near the same value. Measured at most
    ``STATS_SIDE`` pixels a side."""
    import cv2
    from PIL import Image

    rgb = image.convert("RGB")
    if max(rgb.size) > STATS_SIDE:
        scale = STATS_SIDE / max(rgb.size)
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                         Image.Resampling.BOX)
    pixels = np.asarray(rgb, dtype=np.float32) / 255
    lum = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    p1, p99 = np.percentile(lum, [1, 99])
    chroma = float((pixels.max(axis=2) - pixels.min(axis=2)).mean())
    sharpness = 0.0
    if min(lum.shape) >= 6:
        half = cv2.resize(lum, (lum.shape[1] // 2, lum.shape[0] // 2), interpolation=cv2.INTER_AREA)
        # Less the Laplacian energy of 8-bit rounding (sum of its squared weights, 20, times 1/12 of a grey
        # level squared), which a flat or blurred image's would otherwise be all of.
        noise = 20 / 12 / 255**2
        sharpness = float(max(cv2.Laplacian(lum, cv2.CV_32F).var() - noise, 1e-7)
                          / (cv2.Laplacian(half, cv2.CV_32F).var() + 1e-9))
    return np.array([p1, p99, lum.std(), chroma, sharpness], dtype=np.float32)


def measures(stats: np.ndarray, widths: np.ndarray, heights: np.ndarray) -> dict[str, np.ndarray]:
    """Per issue, a measure that grows with it, for each image (rows of ``stats`` as ``image_stats``)."""
    p1, p99, contrast, chroma, sharpness = (stats[:, i].astype(np.float64) for i in range(len(STATS)))
    area = np.log(np.maximum(widths * heights, 1).astype(np.float64))
    aspect = np.log(np.maximum(widths, 1) / np.maximum(heights, 1))
    return {
        "dark": -np.log(p99 + 0.02),
        "bright": -np.log(1 - p1 + 0.02),
        "blurry": -np.log(sharpness + 1e-3),
        "low_information": -np.log(contrast + 0.002),
        "grayscale": -np.log(chroma + 0.002),
        "odd_size": np.abs(area - np.median(area)) if len(area) else area,
        "odd_aspect_ratio": np.abs(aspect - np.median(aspect)) if len(aspect) else aspect,
    }


def score_issues(stats: np.ndarray, widths: np.ndarray, heights: np.ndarray,
                 z_flag: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Per issue, each image's score in [0, 1] (0.5 at the flag); see the module docstring."""
    z_flag = {**Z_FLAG, **(z_flag or {})}
    out = {}
    colourful = len(stats) > 0 and float(np.median(stats[:, STATS.index("chroma")])) >= COLOUR_MIN
    for issue, m in measures(stats, widths, heights).items():
        if not len(m) or (issue == "grayscale" and not colourful):
            out[issue] = np.zeros(len(m), dtype=np.float32)
            continue
        z = robust_z(m, FLOORS[issue], centre=0.0 if issue in ("odd_size", "odd_aspect_ratio") else None)
        if issue in ABSOLUTE:
            stat, level = ABSOLUTE[issue]
            value = 1 - stats[:, STATS.index("p1")] if stat == "1-p1" else stats[:, STATS.index(stat)]
            z = np.where(value <= level, np.maximum(z, z_flag[issue]), z)
        out[issue] = flag_score(z, z_flag[issue])
    return out
