"""Crops: an image that is a part of another (5-25% cut from each side, resized back), found by searching
each thumbnail among windows of every other, and verified by aligning it with the window it came from.

A crop of a texture sits far from its source in embedding space (of 220 crops of fabrics and photos, 11%
had their source among their 50 nearest embedding neighbours) and, zoomed by up to 1.33 and off-centre, its
thumbnail lines up with none of the zooms and shifts :func:`.alignment.verify` tries. Each image's nine
windows (``WINDOW_KEEP`` of each side, at 3 x 3 positions) at ``SEARCH_SIDE`` pixels put every source among
its crop's 5 best matches (2,020 images) and 10 best (with 60,000 Fashion-MNIST thumbnails added).
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
# (2.4 thumbnail pixels; shifts of up to SHIFT pixels fill the gaps), and blurs the crop's thumbnail (the
# source's window, upscaled, is blurred). benchmarks/duplicates.py, crops set: recall 0.94 unblurred, 1.0 at
# sigma 0.5 and 0.8; photos set 0.91 at 0.5, 0.88 at 0.8. Blurring both sides instead lifted look-alikes too.
CROP_KEEPS = tuple(float(k) for k in np.round(np.arange(0.95, 0.749, -0.025), 3))
CROP_STEP = 0.15
CROP_BLUR = 0.5
# Only images larger than a thumbnail: a smaller one's thumbnail is its own pixels with reflected borders, which
# its windows would mix in, and its crops are few pixels. On 10,000 Fashion-MNIST images (28 px) the crop
# search added 25-90 false pairs (P 0.878 -> 0.731-0.870) and no planted copy.
CROP_MIN_SIDE = THUMB + 1
QUERY_ROWS, BASE_ROWS = 512, 1024  # a block of products stays in the CPU's cache: 5x faster than whole rows


def _small(x: np.ndarray) -> np.ndarray:
    """Thumbnails or windows (m, s, s), pooled to SEARCH_SIDE a side and standardised, as (m, SEARCH_SIDE²)."""
    import torch
    import torch.nn.functional as F

    small = F.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None], SEARCH_SIDE)
    return standardise(small.reshape(len(x), -1).numpy())


def _search_rows(thumbs: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The thumbnails of ``rows``, and each of their windows, as bf16 rows: (n, d) and windows
    (len(WINDOW_AT)², d, n), a slice of columns per window (the layout the block products read fastest)."""
    import torch

    n, d = len(rows), SEARCH_SIDE * SEARCH_SIDE
    plain = torch.empty((n, d), dtype=torch.bfloat16)
    windows = torch.empty((len(WINDOW_AT) ** 2, d, n), dtype=torch.bfloat16)
    for start in range(0, n, 1 << 15):
        part = thumbs[rows[start:start + (1 << 15)]]
        plain[start:start + len(part)] = torch.from_numpy(_small(part))
        for w, (y, x) in enumerate((y, x) for y in WINDOW_AT for x in WINDOW_AT):
            window = part[:, y:y + WINDOW_SIDE, x:x + WINDOW_SIDE]
            windows[w, :, start:start + len(part)] = torch.from_numpy(_small(window)).T
    return plain, windows


def _best_windows(plain: torch.Tensor, windows: torch.Tensor, queries: np.ndarray, k: int,
                  own: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the ``k`` columns of ``windows`` (images) whose best window matches its thumbnail
    best, exactly: scores (q, k) and columns (q, k). Never a query's own column: ``own[i]`` (-1 for none; by
    default the query's row, for windows of every row)."""
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
            mine = rows if own is None else torch.from_numpy(own[qs:qs + QUERY_ROWS])
            q = plain[rows]
            tops, ats = [], []
            for bs in range(0, n, BASE_ROWS):
                width = min(BASE_ROWS, n - bs)
                acc, out = best[:len(q), :width], buffer[:len(q), :width]
                torch.matmul(q, windows[0, :, bs:bs + width], out=acc)
                for w in range(1, len(windows)):
                    torch.maximum(acc, torch.matmul(q, windows[w, :, bs:bs + width], out=out), out=acc)
                itself = torch.nonzero((mine >= bs) & (mine < bs + width)).flatten()
                acc[itself, mine[itself] - bs] = -torch.inf
                top = torch.topk(acc, min(k, width), dim=1)
                tops.append(top.values.float())
                ats.append(top.indices + bs)
            v, at = torch.topk(torch.cat(tops, dim=1), k, dim=1)
            values[qs:qs + len(q)] = v.numpy()
            found[qs:qs + len(q)] = torch.cat(ats, dim=1).gather(1, at).numpy()
    return values, found


def crop_pairs(thumbs: np.ndarray, rows: np.ndarray, exact_max: int = 100_000,
               queries: np.ndarray | None = None) -> np.ndarray:
    """Pairs (crop, source) among ``rows`` worth verifying as crops: each thumbnail's best-matching windows
    of other images that stand out of its crowd (see ``CROP_FLOOR``). Exact up to ``exact_max`` rows,
    approximate beyond. With ``queries`` (rows), only pairs with one of them."""
    import torch

    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    mine = np.arange(n) if queries is None else np.flatnonzero(np.isin(rows, queries))
    if n < 2 or not len(mine):
        return np.zeros((0, 2), np.int64)
    plain, windows = _search_rows(thumbs, rows)
    if queries is not None:  # new rows as crops of any image, and any image as a crop of a new row
        values, found = _best_windows(plain, windows, mine, CROWD_RANK)
        column = np.full(n, -1)
        column[mine] = np.arange(len(mine))
        back, back_found = _best_windows(plain, windows[:, :, torch.from_numpy(mine)].contiguous(), np.arange(n),
                                         CROWD_RANK, own=column)
        pairs = np.concatenate([_standing_out(mine, values, found),
                                _standing_out(np.arange(n), back, mine[back_found])])
    elif n <= exact_max:
        pairs = _standing_out(mine, *_best_windows(plain, windows, mine, CROWD_RANK))
    else:
        pairs = _standing_out(mine, *_approximate_best_windows(plain, windows))
    return rows[pairs]


def _approximate_best_windows(plain: torch.Tensor, windows: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_best_windows` of every row, approximately: the thumbnails and every window as rows of one
    :func:`approximate_nearest` search (a window's row names its image)."""
    import torch

    n = len(plain)
    rows = torch.cat([plain, windows.permute(0, 2, 1).reshape(-1, plain.shape[1])])
    nearest = approximate_nearest(rows, 4 * CROWD_RANK, queries=n)  # windows of one image may crowd in
    images = np.where(nearest < n, nearest, (nearest - n) % n)
    scores = np.empty(nearest.shape, np.float32)
    for start in range(0, n, 1 << 14):
        part = torch.from_numpy(nearest[start:start + (1 << 14)])
        scores[start:start + len(part)] = torch.einsum("qd,qkd->qk", plain[start:start + len(part)].float(),
                                                      rows[part].float()).numpy()
    scores[(images == np.arange(n)[:, None]) | (nearest < n)] = -np.inf  # itself, or a whole thumbnail
    best = np.full((n, CROWD_RANK), -np.inf, np.float32)
    found = np.full((n, CROWD_RANK), -1, np.int64)
    for r in range(nearest.shape[1]):  # each image once, at its best window
        score, image = scores[:, r], images[:, r]
        new = (score > -np.inf) & ~(found == image[:, None]).any(axis=1) & (score > best[:, -1])
        best[new, -1], found[new, -1] = score[new], image[new]
        order = np.argsort(-best, axis=1)
        best, found = np.take_along_axis(best, order, 1), np.take_along_axis(found, order, 1)
    return best, found


def _standing_out(rows: np.ndarray, values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The (row, found) pairs above ``CROP_FLOOR`` that beat the row's ``CROWD_RANK``-th best by ``CROWD_MARGIN``."""
    crowd = values[:, CROWD_RANK - 1:CROWD_RANK] if values.shape[1] >= CROWD_RANK else np.zeros((len(values), 1))
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
    """Pixel similarity of each (crop, source) pair: the best correlation of the crop's thumbnail, blurred by
    ``CROP_BLUR``, with the source's seen through every crop view tried."""
    import cv2

    if not len(pairs):
        return np.zeros(0, dtype=np.float32)
    crops, crop_at = np.unique(pairs[:, 0], return_inverse=True)
    sources, source_at = np.unique(pairs[:, 1], return_inverse=True)
    blurred = [cv2.GaussianBlur(t.astype(np.float32), (0, 0), CROP_BLUR) for t in thumbs[crops]]
    both = np.concatenate([np.stack(blurred), thumbs[sources].astype(np.float32)])
    return aligned(both, crop_at, len(crops) + source_at, crop_views())
