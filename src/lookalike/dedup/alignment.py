"""Pixel verification: candidate pairs aligned over their thumbnails (mirror, zoom, shift), and the crowd
rule that tells a copy from a look-alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..thumbnails import THUMB

if TYPE_CHECKING:
    import torch

MARGIN = 4  # border left out of the comparison: borders move under shifts and crops
CENTRE = slice(MARGIN, THUMB - MARGIN)
# Zooms tried: crops of up to 10% either way, in steps of 1/30. With 5% steps a 28-px image cropped by a pixel
# a side (a 7.7% zoom) fell between two, and crop recall on Fashion-MNIST was 0.64 (0.86 now).
CROPS = (0.1, 0.2 / 3, 0.1 / 3)
SCALES = (*(1 / (1 - f) for f in CROPS), 1.0, *(1 - f for f in reversed(CROPS)))
SHIFT = 2  # pixels, either way
# In a crowd of look-alikes (28-px trousers, plain bags) distinct images line up pixel for pixel, so a pair
# must also beat each image's CROWD_RANK-th best candidate by CROWD_MARGIN: a group of up to CROWD_RANK
# near copies stands out of its crowd; larger groups are found where they are near identical, or (images of
# KEYPOINT_MIN_SIDE and more) where keypoints align them, which distinct look-alikes do not.
CROWD_RANK = 3
CROWD_MARGIN = 0.02
IDENTICAL = 0.995


def standardise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def copy_views() -> np.ndarray:
    """The views :func:`verify` tries of an image: every mirror x scale, as affine maps (views, 2, 3) from
    output to input coordinates (-1 to 1)."""
    return np.array([[[m / s, 0.0, 0.0], [0.0, 1 / s, 0.0]] for m in (1, -1) for s in SCALES], np.float32)


def _variants(thumbs: torch.Tensor, views: np.ndarray) -> torch.Tensor:
    """Each thumbnail seen through each of ``views`` (bilinear, reflected borders): (views, n, T, T)."""
    import torch
    import torch.nn.functional as F

    theta = torch.from_numpy(views)
    grid = F.affine_grid(theta, [len(theta), 1, THUMB, THUMB], align_corners=False)
    return F.grid_sample(thumbs[None].expand(len(theta), -1, -1, -1), grid, mode="bilinear",
                         padding_mode="reflection", align_corners=False)


def _window_norms(x: torch.Tensor, side: int) -> torch.Tensor:
    """The norm about its mean of every ``side`` x ``side`` window of the last two dimensions of ``x``."""
    import torch
    import torch.nn.functional as F

    # Centred first, so that float32 sums of squares do not cancel (a flat window's norm is near 0). Window
    # sums as a convolution with a box of ones: 1.4x faster here than average pooling, separable pooling or
    # summed-area tables.
    c = (x - x.mean(dim=(-2, -1), keepdim=True)).reshape(-1, 1, *x.shape[-2:])
    box = torch.ones(1, 1, side, side)
    sums, squares = F.conv2d(c, box), F.conv2d(c.square(), box)
    # At least 1 (a grey level's worth of variation): against a blank window a correlation means nothing,
    # and rounding would blow it up far beyond 1.
    return (squares - sums.square() / (side * side)).clamp_min(1.0).sqrt().reshape(*x.shape[:-2], *sums.shape[-2:])


def aligned(thumbs: np.ndarray, i: np.ndarray, j: np.ndarray, views: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Best normalised cross-correlation of each ``thumbs[i]`` centre with ``thumbs[j]`` seen through each of
    ``views`` and shifted by up to ``SHIFT`` pixels.

    One grouped convolution per batch of images ``j``: each group is one image's variants, convolved with
    all its partners' centres at once. Images with alike numbers of partners are batched together, so the
    padding to a batch's largest number of partners stays small."""
    import torch
    import torch.nn.functional as F

    side = THUMB - 2 * MARGIN  # centre side
    pad = MARGIN - SHIFT
    out = np.empty(len(i), dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(thumbs))  # converted to float32 a batch at a time
    order = np.argsort(j, kind="stable")
    images, starts, counts = np.unique(j[order], return_index=True, return_counts=True)
    by_count = np.argsort(counts, kind="stable")
    with torch.inference_mode():
        for c in range(0, len(images), chunk):
            batch = by_count[c:c + chunk]
            m, most = len(batch), int(counts[batch].max())
            variants = _variants(t[images[batch]].float(), views)[:, :, pad:THUMB - pad, pad:THUMB - pad].contiguous()
            norm = _window_norms(variants, side)  # a is zero-mean, so the dot product needs no centring
            slot = np.arange(most)[None, :]
            valid = slot < counts[batch][:, None]
            rows = order[starts[batch][:, None] + np.minimum(slot, counts[batch][:, None] - 1)]
            centres = thumbs[i[rows], CENTRE, CENTRE].astype(np.float32)
            a = torch.from_numpy(standardise(centres.reshape(m * most, side * side)))
            dot = F.conv2d(variants, a.reshape(m * most, 1, side, side), groups=m)  # (variants, m * most, s, s)
            v, shifts = len(variants), norm.shape[-1] ** 2
            best = (dot.reshape(v, m, most, shifts) / norm.reshape(v, m, 1, shifts)).amax(dim=(0, 3)).numpy()
            out[rows[valid]] = best[valid]
    return out


def verify(thumbs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Pixel similarity of every candidate pair (rows of ``pairs``): the best correlation over all
    alignments tried."""
    if not len(pairs):
        return np.zeros(0, dtype=np.float32)
    return aligned(thumbs, pairs[:, 0], pairs[:, 1], copy_views())


def crowd_levels(n: int, pairs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per image, the ``CROWD_RANK``-th best pixel similarity among its candidates (0 with fewer): how alike
    its look-alikes are."""
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    both = np.concatenate([scores, scores])
    order = np.lexsort((-both, rows))
    rows, both = rows[order], both[order]
    counts = np.bincount(rows, minlength=n)
    out = np.zeros(n, dtype=np.float32)
    ranked = counts >= CROWD_RANK
    out[ranked] = both[np.searchsorted(rows, np.flatnonzero(ranked)) + CROWD_RANK - 1]
    return out


def stands_out(score: np.ndarray, crowd_i: np.ndarray, crowd_j: np.ndarray) -> np.ndarray:
    """Whether each pair is more alike than both images' crowds of look-alikes (or near identical)."""
    return (score >= IDENTICAL) | (score >= np.maximum(crowd_i, crowd_j) + CROWD_MARGIN)
