"""What the pixel-level finders need of each image, made in the decode pass that feeds the model (or, for
imported vectors, a decode-only pass) and cached by content hash: a pixel hash, a small grey thumbnail, the
image's size (:mod:`lookalike.dedup` reads them) and its quality measures (:mod:`lookalike.image_quality`). Ingest
imports this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .image_quality import STATS, image_stats

if TYPE_CHECKING:
    from PIL import Image

THUMB = 32  # thumbnail side, pixels
BLUR = 1.0  # Gaussian sigma on the thumbnail, pixels


@dataclass(frozen=True)
class ImageFacts:
    """What the pixel-level finders need of one image: a pixel hash, a grey thumbnail, its size and its
    quality measures."""

    pixel_hash: str
    thumb: np.ndarray  # (THUMB, THUMB) float32
    width: int
    height: int
    stats: np.ndarray = field(default_factory=lambda: np.zeros(len(STATS), np.float32))  # quality.image_stats


@dataclass(frozen=True)
class Thumbnails:
    """The facts of many images as arrays, row by row: one (n, THUMB, THUMB) block, not n small arrays (a
    million of them, held once as facts and again stacked, took 8 GB). Thumbnails are held in float16: grey
    levels of 0-255 to within 1/16, in half the memory (2 GB at 1M). On 16,600 candidate pairs of textile
    thumbnails (blurred, fractional) correlations moved by 1.6e-4 on average and 0.001 at most, none across a
    threshold; Fashion-MNIST's (whole grey levels) are exact."""

    thumbs: np.ndarray  # (n, THUMB, THUMB) float16
    pixel_hashes: list[str]
    widths: np.ndarray  # (n,) int64
    heights: np.ndarray  # (n,) int64
    stats: np.ndarray  # (n, len(quality.STATS)) float32

    @classmethod
    def empty(cls, n: int) -> Thumbnails:
        """``n`` rows to be filled with :meth:`set`."""
        return cls(np.zeros((n, THUMB, THUMB), np.float16), [""] * n, np.zeros(n, np.int64), np.zeros(n, np.int64),
                   np.zeros((n, len(STATS)), np.float32))

    @classmethod
    def of(cls, facts: Sequence[ImageFacts]) -> Thumbnails:
        out = cls.empty(len(facts))
        for row, f in enumerate(facts):
            out.set(row, f.pixel_hash, f.thumb, f.width, f.height, f.stats)
        return out

    def set(self, row: int, pixel_hash: str, thumb: np.ndarray, width: int, height: int,
            stats: np.ndarray | None = None) -> None:
        self.thumbs[row], self.pixel_hashes[row] = thumb, pixel_hash
        self.widths[row], self.heights[row] = width, height
        if stats is not None:
            self.stats[row] = stats

    def __len__(self) -> int:
        return len(self.thumbs)


def image_facts(image: Image.Image) -> ImageFacts:
    """Hash an image's RGB pixels, measure its quality and make its grey THUMB x THUMB thumbnail: shrunk (and
    blurred, when shrunk a lot), or, for an image no larger than a thumbnail, its own pixels with reflected
    borders."""
    import cv2
    from PIL import Image

    rgb = image.convert("RGB")
    pixels = np.asarray(rgb)
    stats = image_stats(rgb)
    if max(rgb.size) <= THUMB:
        # Resampling a tiny image would turn a one-pixel shift into a blur; its own pixels align exactly.
        small = np.asarray(rgb.convert("L"), dtype=np.float32)
        top, left = (THUMB - small.shape[0]) // 2, (THUMB - small.shape[1]) // 2
        grey = cv2.copyMakeBorder(small, top, THUMB - small.shape[0] - top, left, THUMB - small.shape[1] - left,
                                  cv2.BORDER_REFLECT)
        return ImageFacts(_pixel_hash(pixels), np.asarray(grey, np.float32), rgb.width, rgb.height, stats)
    grey = np.asarray(rgb.convert("L").resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float32)
    if min(rgb.size) >= 4 * THUMB:
        # Low-pass an image shrunk a lot: its fine texture, averaged into thumbnail pixels, decorrelates
        # under a one-pixel shift; the picture's layout does not. Small images keep their detail.
        grey = np.asarray(cv2.GaussianBlur(grey, (0, 0), BLUR), dtype=np.float32)
    return ImageFacts(_pixel_hash(pixels), grey, rgb.width, rgb.height, stats)


def _pixel_hash(pixels: np.ndarray) -> str:
    return hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()
