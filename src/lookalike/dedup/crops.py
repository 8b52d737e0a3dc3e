"""Crops: an image that is a part of another (5-25% cut from each side, resized back), found by searching
each thumbnail among windows of every other, and verified by aligning it with the window it came from.

A crop of a texture sits far from its source in embedding space (of 220 crops of fabrics and photos, 15%
had their source among their 50 nearest embedding neighbours) and, zoomed by up to 1.33 and off-centre, its
thumbnail lines up with none of the zooms and shifts :func:`.alignment.verify` tries. Each image's
``WINDOWS`` (``WINDOW_KEEP`` of each side, at 3 x 3 positions) at ``SEARCH_SIDE`` pixels held every source
as its crop's best match, on those 220 crops among 60,000 Fashion-MNIST thumbnails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..graph import approximate_nearest
from ..thumbnails import THUMB
from .alignment import CROWD_MARGIN, CROWD_RANK, aligned, standardise

if TYPE_CHECKING:
    import torch

SEARCH_SIDE = 12  # pixels a side of the searched thumbnails and windows
WINDOW_KEEP = 0.85  # share of each side a window keeps: halfway between the crops sought
WINDOW_SIDE = round(THUMB * WINDOW_KEEP)
WINDOW_AT = (0, (THUMB - WINDOW_SIDE) // 2, THUMB - WINDOW_SIDE)  # window corners, per axis
# A window match worth verifying: at least CROP_FLOOR and, as pairs must in verification, standing out of the
# query's crowd (CROWD_MARGIN over its CROWD_RANK-th best). On 10,000 Fashion-MNIST thumbnails the crowd rule
# leaves 0.11 candidates an image (3.9 without it); the floor kept all 220 planted crops.
CROP_FLOOR = 0.5
# Verification tries crops keeping 75-95% of each side in 2.5% steps, at offsets 15% of a side apart
# (2.4 thumbnail pixels; shifts of up to SHIFT pixels fill the gaps), and blurs both thumbnails first: an
# upscaled window is blurred. On the 220 planted crops (median 0.96 without the blur), 5% 0.957 ... TODO
CROP_KEEPS = tuple(np.round(np.arange(0.95, 0.749, -0.025), 3))
CROP_STEP = 0.15
CROP_BLUR = 1.0
QUERY_ROWS, BASE_ROWS = 512, 1024  # a block of products stays in the CPU's cache: 5x faster than whole rows


def _small(x: np.ndarray) -> np.ndarray:
    """Thumbnails or windows (m, s, s), pooled to SEARCH_SIDE a side and standardised, as (m, SEARCH_SIDE²)."""
    import torch
    import torch.nn.functional as F

    small = F.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None], SEARCH_SIDE)
    return standardise(small.reshape(len(x), -1).numpy())


def _search_rows(thumbs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Each thumbnail, and each of its windows, as bf16 rows: (n, d) and windows (len(WINDOW_AT)², d, n), a
    slice of columns per window (the layout the block products read fastest)."""
    import torch

    n, d = len(thumbs), SEARCH_SIDE * SEARCH_SIDE
    plain = torch.empty((n, d), dtype=torch.bfloat16)
    windows = torch.empty((len(WINDOW_AT) ** 2, d, n), dtype=torch.bfloat16)
    for start in range(0, n, 1 << 15):
        part = thumbs[start:start + (1 << 15)]
        plain[start:start + len(part)] = torch.from_numpy(_small(part))
        for w, (y, x) in enumerate((y, x) for y in WINDOW_AT for x in WINDOW_AT):
            window = part[:, y:y + WINDOW_SIDE, x:x + WINDOW_SIDE]
            windows[w, :, start:start + len(part)] = torch.from_numpy(_small(window)).T
    return plain, windows


def _best_windows(plain: torch.Tensor, windows: torch.Tensor, queries: np.ndarray,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the ``k`` images whose best window matches its thumbnail best (never itself),
    exactly: scores (q, k) and images (q, k)."""
    import torch

    n = windows.shape[2]
    k = min(k, n - 1)
    values = np.empty((len(queries), k), np.float32)
    found = np.empty((len(queries), k), np.int64)
    with torch.inference_mode():
        buffer = torch.empty((QUERY_ROWS, BASE_ROWS), dtype=torch.bfloat16)
        best = torch.empty((QUERY_ROWS, BASE_ROWS), dtype=torch.bfloat16)
        for qs in range(0, len(queries), QUERY_ROWS):
            rows = torch.from_numpy(queries[qs:qs + QUERY_ROWS])
            q = plain[rows]
            tops, ats = [], []
            for bs in range(0, n, BASE_ROWS):
                width = min(BASE_ROWS, n - bs)
                acc, out = best[:len(q), :width], buffer[:len(q), :width]
                torch.matmul(q, windows[0, :, bs:bs + width], out=acc)
                for w in range(1, len(windows)):
                    torch.maximum(acc, torch.matmul(q, windows[w, :, bs:bs + width], out=out), out=acc)
                own = torch.nonzero((rows >= bs) & (rows < bs + width)).flatten()
                acc[own, rows[own] - bs] = -torch.inf
                top = torch.topk(acc, min(k, width), dim=1)
                tops.append(top.values.float())
                ats.append(top.indices + bs)
            v, at = torch.topk(torch.cat(tops, dim=1), k, dim=1)
            values[qs:qs + len(q)] = v.numpy()
            found[qs:qs + len(q)] = torch.cat(ats, dim=1).gather(1, at).numpy()
    return values, found


def crop_pairs(thumbs: np.ndarray, exact_max: int = 100_000, queries: np.ndarray | None = None) -> np.ndarray:
    """Pairs (crop, source) worth verifying as crops: each thumbnail's best-matching windows of other images
    that stand out of its crowd (see ``CROP_FLOOR``). Exact up to ``exact_max`` images, approximate beyond.
    With ``queries`` (rows), only pairs with one of them."""
    import torch

    n = len(thumbs)
    if n < 2 or (queries is not None and not len(queries)):
        return np.zeros((0, 2), np.int64)
    plain, windows = _search_rows(thumbs)
    k = CROWD_RANK
    if queries is not None:
        # New rows as crops of any image, and any image as a crop of a new row.
        queries = np.asarray(queries, dtype=np.int64)
        v1, f1 = _best_windows(plain, windows, queries, k)
        v2, f2 = _best_windows(plain, windows[:, :, torch.from_numpy(queries)].contiguous(), np.arange(n), k)
        return np.concatenate([_standing_out(queries, v1, f1), _standing_out(np.arange(n), v2, queries[f2])])
    if n <= exact_max:
        values, found = _best_windows(plain, windows, np.arange(n), k)
        return _standing_out(np.arange(n), values, found)
    # Approximate: the thumbnails and every window as rows of one search (a window's row names its image).
    rows = torch.cat([plain, windows.permute(0, 2, 1).reshape(-1, plain.shape[1])])
    nearest = approximate_nearest(rows, 4 * k, queries=n)
    images = np.where(nearest < n, nearest, (nearest - n) % n)
    scores = (plain[:, None, :].float() * rows[torch.from_numpy(nearest)].float()).sum(-1).numpy()
    scores[(images == np.arange(n)[:, None]) | (nearest < n)] = -np.inf  # itself, or a whole thumbnail
    order = np.argsort(-scores, axis=1)[:, :k]
    return _standing_out(np.arange(n), np.take_along_axis(scores, order, 1), np.take_along_axis(images, order, 1))


def _standing_out(rows: np.ndarray, values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The (row, found) pairs above ``CROP_FLOOR`` that beat the row's ``CROWD_RANK``-th best by ``CROWD_MARGIN``."""
    crowd = values[:, -1:] if values.shape[1] >= CROWD_RANK else np.zeros((len(values), 1), np.float32)
    keep = (values >= np.maximum(CROP_FLOOR, crowd + CROWD_MARGIN)) & (found >= 0)
    i, j = np.nonzero(keep)
    return np.stack([rows[i], found[i, j]], axis=1).astype(np.int64).reshape(-1, 2)


def crop_views() -> np.ndarray:
    """The views :func:`verify_crops` tries of a source, as affine maps (see :func:`.alignment.copy_views`)."""
    views = []
    for keep in CROP_KEEPS:
        offsets = np.linspace(keep - 1, 1 - keep, int(np.ceil(2 * (1 - keep) / CROP_STEP)) + 1)
        views += [[[keep, 0.0, x], [0.0, keep, y]] for y in offsets for x in offsets]
    return np.array(views, np.float32)


def verify_crops(thumbs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Pixel similarity of each (crop, source) pair: the best correlation of the crop's thumbnail with the
    source's over every crop view tried, both blurred by ``CROP_BLUR``."""
    import cv2

    if not len(pairs):
        return np.zeros(0, dtype=np.float32)
    rows, inverse = np.unique(pairs, return_inverse=True)
    blurred = np.stack([cv2.GaussianBlur(t.astype(np.float32), (0, 0), CROP_BLUR) for t in thumbs[rows]])
    local = inverse.reshape(pairs.shape)
    return aligned(blurred, local[:, 0], local[:, 1], crop_views())
