"""Duplicates: exact (same bytes or same pixels) and near (the same picture re-encoded, shifted,
brightened, flipped, cropped or rotated), grouped, with a keep/remove plan and leaks across splits.

Embeddings alone both miss copies and confuse look-alikes (distinct images at cosine 0.99), so:

1. **Candidates** come from two neighbour searches: the embedding kNN graph (pairs above
   ``candidate_cosine``) and a kNN search over small grey thumbnails and their mirror images
   (pixel look-alikes the model may place apart).
2. **Verification** aligns each candidate pair at pixel level: the best normalised cross-correlation of
   the thumbnails' centres over mirror, scale (crop) and shift, batched as grouped convolutions. A pair
   is a duplicate at or above ``threshold`` when it also stands out of both images' crowds of
   look-alikes (see ``CROWD_RANK``): distinct images that merely look alike rarely line up pixel for
   pixel, and where a whole crowd does (28-px trousers), no single pair stands out of it.
   Where the thumbnails do not verify a pair of an image and one of its 3 nearest embedding neighbours (a
   heavy crop, a rotation, or a group of copies too large to stand out of its crowd), the two are aligned
   by matching ORB keypoints (a similarity transform fitted by RANSAC) and correlated over the part they
   share, when both are large enough to have keypoints; distinct look-alikes do not align, so such a pair
   needs only the threshold.
3. **Groups** are the connected components of verified pairs (union-find); each keeps one member by
   policy (``largest``: most pixels; ``train``: a train-split copy first; ``first``) and marks the rest
   for removal. A group whose members span splits is a leak.

Pure NumPy/torch/OpenCV over thumbnails (:mod:`lookalike.thumbnails` makes them).
Measured by ``benchmarks/duplicates.py`` (planted copies: JPEG 30, shift, brightness, flip, 10% crop):
2,000 textile images, pair P 1.0 / R 1.0; 10,000 Fashion-MNIST images, P 0.87 / R 0.94 at 28 px, where
many distinct items of a class are pixel look-alikes; heavy crops, rotations and cut-outs of 20 photos
among the textiles, P 1.0 / R 0.85 (0.08 without keypoints); groups of 6 copies of those photos, P 1.0 /
R 1.0 (0.84 without keypoints).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .graph import KnnGraph, approximate_nearest, nearest
from .hardware import use_bf16
from .thumbnails import THUMB, ImageFacts, Thumbnails

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

MARGIN = 4  # border left out of the comparison: borders move under shifts and crops
CENTRE = slice(MARGIN, THUMB - MARGIN)
# Zooms tried: crops of up to 10% either way, in steps of 1/30. With 5% steps a 28-px image cropped by a pixel
# a side (a 7.7% zoom) fell between two, and crop recall on Fashion-MNIST was 0.64 (0.86 now).
CROPS = (0.1, 0.2 / 3, 0.1 / 3)
SCALES = (*(1 / (1 - f) for f in CROPS), 1.0, *(1 - f for f in reversed(CROPS)))
SHIFT = 2  # pixels, either way
DEFAULT_THRESHOLD = 0.95  # benchmarks/duplicates.py: best F1 over both sets (textile P/R 1.0 up to 0.95)
DEFAULT_CANDIDATE_COSINE = 0.8
PIXEL_NEIGHBOURS = 5
# In a crowd of look-alikes (28-px trousers, plain bags) distinct images line up pixel for pixel, so a pair
# must also beat each image's CROWD_RANK-th best candidate by CROWD_MARGIN: a group of up to CROWD_RANK
# near copies stands out of its crowd; larger groups are found where they are near identical, or (images of
# KEYPOINT_MIN_SIDE and more) where keypoints align them, which distinct look-alikes do not.
CROWD_RANK = 3
CROWD_MARGIN = 0.02
IDENTICAL = 0.995
# Keypoint verification (crops, rotations): an image and each of its KEYPOINT_NEIGHBOURS nearest embedding
# neighbours, when their thumbnails do not line up, are aligned by matching ORB keypoints.
# benchmarks/duplicates.py (photos among textiles): no two distinct images agreed on more than 7 keypoints.
KEYPOINT_NEIGHBOURS = 3  # photos: R 0.85; 0.37 with the nearest alone (crops sit far in embedding space)
KEYPOINT_MIN_SIDE = 64  # smaller images have too few keypoints
KEYPOINT_SIDE = 256  # images are matched at most this large
KEYPOINT_FEATURES = 300  # as good as 500 on the photos, and faster to match
# FAST corner thresholds, in turn while an image has under half KEYPOINT_FEATURES corners: OpenCV's 20 finds
# too few in smooth photos (photos R 0.77 at 20 alone, 0.85 at 10), and 10 costs 45% more time on texture.
KEYPOINT_FAST = (20, 10)
KEYPOINT_INLIERS = 12  # keypoints that must agree on one transform: above the 7 of distinct images
KEYPOINT_BLUR = 2.0  # Gaussian sigma before correlating aligned images: an upscaled crop is blurred


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _variants(thumbs: torch.Tensor) -> torch.Tensor:
    """Every mirror x scale tried of each thumbnail (bilinear, reflected borders): (variants, n, T, T)."""
    import torch
    import torch.nn.functional as F

    theta = torch.tensor([[[m / s, 0.0, 0.0], [0.0, 1 / s, 0.0]] for m in (1, -1) for s in SCALES])
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


def _aligned(thumbs: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Best normalised cross-correlation of each ``thumbs[i]`` centre with ``thumbs[j]`` under every mirror,
    scale and shift (by up to ``SHIFT`` pixels).

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
            variants = _variants(t[images[batch]].float())[:, :, pad:THUMB - pad, pad:THUMB - pad].contiguous()
            norm = _window_norms(variants, side)  # a is zero-mean, so the dot product needs no centring
            slot = np.arange(most)[None, :]
            valid = slot < counts[batch][:, None]
            rows = order[starts[batch][:, None] + np.minimum(slot, counts[batch][:, None] - 1)]
            centres = thumbs[i[rows], CENTRE, CENTRE].astype(np.float32)
            a = torch.from_numpy(_standardise(centres.reshape(m * most, side * side)))
            dot = F.conv2d(variants, a.reshape(m * most, 1, side, side), groups=m)  # (variants, m * most, s, s)
            v, shifts = len(variants), norm.shape[-1] ** 2
            best = (dot.reshape(v, m, most, shifts) / norm.reshape(v, m, 1, shifts)).amax(dim=(0, 3)).numpy()
            out[rows[valid]] = best[valid]
    return out


def _pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Pairs ``(i, j)`` as distinct rows ``(min, max)`` of an (m, 2) int64 array, self-pairs left out."""
    i, j = np.asarray(i, dtype=np.int64).ravel(), np.asarray(j, dtype=np.int64).ravel()
    both = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)[i != j]
    return np.unique(both, axis=0) if len(both) else both.reshape(0, 2)


def _without(pairs: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``pairs`` less those in ``other`` (both (m, 2) arrays of distinct pairs)."""
    if not len(pairs) or not len(other):
        return pairs
    width = int(max(pairs.max(), other.max())) + 1
    return pairs[~np.isin(pairs[:, 0] * width + pairs[:, 1], other[:, 0] * width + other[:, 1])]


def _touching(pairs: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """The pairs with at least one of ``rows`` (of ``n``)."""
    mine = np.zeros(n, dtype=bool)
    mine[rows] = True
    return pairs[mine[pairs[:, 0]] | mine[pairs[:, 1]]]


def candidate_pairs(graph: KnnGraph | None, thumbs: np.ndarray,
                    candidate_cosine: float = DEFAULT_CANDIDATE_COSINE,
                    exact_max: int = 100_000, queries: np.ndarray | None = None) -> np.ndarray:
    """Pairs (i < j) worth verifying: embedding neighbours above ``candidate_cosine`` and each
    thumbnail's (and its mirror's) nearest thumbnails, searched exactly up to ``exact_max`` images. With
    ``queries`` (rows), only pairs with one of them: what is new since an earlier run."""
    found = [np.zeros((0, 2), dtype=np.int64)]
    if graph is not None:
        rows, cols = np.nonzero(graph.sims >= candidate_cosine)
        pairs = _pairs(rows, graph.indices[rows, cols])
        found.append(pairs if queries is None else _touching(pairs, queries, len(thumbs)))
    if len(thumbs) > 1 and (queries is None or len(queries)):
        rows = np.arange(len(thumbs)) if queries is None else np.asarray(queries)
        neighbours = _pixel_neighbours(thumbs, exact_max, queries)
        found.append(_pairs(np.broadcast_to(rows[:, None], neighbours.shape), neighbours))
    both = np.concatenate(found)
    return np.unique(both, axis=0) if len(both) else both


def _pixel_neighbours(thumbs: np.ndarray, exact_max: int, queries: np.ndarray | None = None) -> np.ndarray:
    """Each thumbnail's (or each of ``queries``') nearest thumbnails or mirrored thumbnails, as row numbers,
    itself included: approximate beyond ``exact_max`` images, exact for ``queries``."""
    import torch

    n = len(thumbs)
    # Pixel neighbours at half the thumbnail's side: a quarter of the work, and more tolerant of shifts. The
    # rows are made a slice at a time straight into the precision the search multiplies in: at a million
    # thumbnails a float32 matrix and its bf16 copy were 3 GB.
    side = THUMB // 2
    base = torch.empty((2 * n, side * side), dtype=torch.bfloat16 if use_bf16("auto") else torch.float32)
    for start in range(0, n, 1 << 16):
        small = thumbs[start:start + (1 << 16)].reshape(-1, side, 2, side, 2).mean(axis=(2, 4), dtype=np.float32)
        for at, view in ((start, small), (n + start, small[:, :, ::-1])):
            base[at:at + len(small)] = torch.from_numpy(_standardise(view.reshape(len(small), -1)))
    k = min(2 * (PIXEL_NEIGHBOURS + 1), 2 * n - 1)  # + 1: an image finds itself (or its mirror) first
    if queries is not None:
        return nearest(base[torch.from_numpy(np.asarray(queries))], base, k) % n
    if n > exact_max:
        return approximate_nearest(base, k, queries=n) % n
    return nearest(base[:n], base, k) % n  # every candidate is verified exactly


def verify(thumbs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Pixel similarity of every candidate pair (rows of ``pairs``): the best correlation over all
    alignments tried."""
    if not len(pairs):
        return np.zeros(0, dtype=np.float32)
    return _aligned(thumbs, pairs[:, 0], pairs[:, 1])


@dataclass(frozen=True)
class Keypoints:
    """An image's ORB keypoints (coordinates in its :func:`keypoint_view`) and their descriptors."""

    points: np.ndarray  # (n, 2) float32
    descriptors: np.ndarray | None  # (n, 32) uint8


def open_for_keypoints(path: str) -> Image.Image:
    """An image file, grey, decoded at about ``KEYPOINT_SIDE`` a side where the format allows (JPEG)."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("L", (KEYPOINT_SIDE, KEYPOINT_SIDE))  # JPEG: decode at a reduced scale, no smaller than asked
        return im.convert("L")


def keypoint_view(image: Image.Image) -> np.ndarray:
    """The grey image keypoints are found on: shrunk to at most ``KEYPOINT_SIDE`` a side, uint8."""
    from PIL import Image

    grey = image.convert("L")
    scale = KEYPOINT_SIDE / max(grey.size)
    if scale < 1:
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                           Image.Resampling.BOX)
    return np.asarray(grey)


def keypoints(view: np.ndarray) -> Keypoints:
    """ORB keypoints of a :func:`keypoint_view`."""
    import cv2

    for threshold in KEYPOINT_FAST:
        found, descriptors = cv2.ORB.create(KEYPOINT_FEATURES, fastThreshold=threshold).detectAndCompute(view, None)
        if len(found) >= KEYPOINT_FEATURES // 2:
            break
    return Keypoints(np.array([k.pt for k in found], np.float32).reshape(-1, 2), descriptors)


def keypoint_transform(a: Keypoints, b: Keypoints) -> np.ndarray | None:
    """The similarity transform (2 x 3) that maps ``b``'s view onto ``a``'s, fitted by RANSAC to their
    matching keypoints; None where fewer than ``KEYPOINT_INLIERS`` keypoints agree on one."""
    import cv2

    if a.descriptors is None or b.descriptors is None or min(len(a.points), len(b.points)) < KEYPOINT_INLIERS:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]  # Lowe's ratio test
    if len(good) < KEYPOINT_INLIERS:
        return None
    transform, inliers = cv2.estimateAffinePartial2D(b.points[[m.trainIdx for m in good]],
                                                     a.points[[m.queryIdx for m in good]],
                                                     method=cv2.RANSAC, ransacReprojThreshold=3.0)
    return transform if transform is not None and int(inliers.sum()) >= KEYPOINT_INLIERS else None


def aligned_similarity(a: np.ndarray, b: np.ndarray, transform: np.ndarray) -> float:
    """Correlation of view ``a`` with view ``b`` mapped onto it by ``transform``, both blurred (an upscaled
    crop is blurred), over the part they share (0 where they share under a tenth of ``a``)."""
    import cv2

    size = a.shape[::-1]
    warped = cv2.warpAffine(cv2.GaussianBlur(b.astype(np.float32), (0, 0), KEYPOINT_BLUR), transform, size)
    covered = cv2.warpAffine(np.ones(b.shape, np.uint8), transform, size, flags=cv2.INTER_NEAREST)
    shared = cv2.erode(covered, np.ones((7, 7), np.uint8)) > 0  # away from the warped border
    if shared.sum() < 0.1 * shared.size:
        return 0.0
    x = _standardise(cv2.GaussianBlur(a.astype(np.float32), (0, 0), KEYPOINT_BLUR)[shared].astype(np.float64))
    return float(x @ _standardise(warped[shared].astype(np.float64)))


def keypoint_pairs(graph: KnnGraph, images: Thumbnails) -> np.ndarray:
    """The pairs worth matching by keypoints: each image and its ``KEYPOINT_NEIGHBOURS`` nearest embedding
    neighbours, where both are at least ``KEYPOINT_MIN_SIDE`` pixels a side. No cosine floor: a crop can
    sit far from its source in embedding space, and keypoints tell copies from look-alikes."""
    big = np.minimum(images.widths, images.heights) >= KEYPOINT_MIN_SIDE
    rows, cols = np.nonzero(graph.indices[:, :KEYPOINT_NEIGHBOURS] >= 0)
    pairs = _pairs(rows, graph.indices[rows, cols])
    return pairs[big[pairs[:, 0]] & big[pairs[:, 1]]] if len(pairs) else pairs


def verify_by_keypoints(pairs: np.ndarray, open_image: Callable[[int], Image.Image],
                        progress: Callable[[int, int], None] | None = None) -> dict[tuple[int, int], float]:
    """The :func:`aligned_similarity` of every pair whose keypoints agree on a transform (0 for the rest),
    opening images with ``open_image(row)``: each once for its keypoints (kept, not the image), and again
    where a transform was found. A pair with an image that cannot be opened is left out, with a warning."""
    rows = np.unique(pairs).tolist()

    def view(i: int) -> np.ndarray | None:
        try:
            return keypoint_view(open_image(i))
        except Exception as e:  # an unreadable file drops its pairs, never the run
            log.warning("no keypoint check for image %d: %s: %s", i, type(e).__name__, e)
            return None

    def found(i: int) -> Keypoints | None:
        v = view(i)
        return None if v is None else keypoints(v)

    if progress:
        progress(0, len(rows))
    features: dict[int, Keypoints] = {}
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # OpenCV and PIL release the GIL
        for done, (i, f) in enumerate(zip(rows, pool.map(found, rows), strict=True), 1):
            if f is not None:
                features[i] = f
            if progress:
                progress(done, len(rows))
        ordered = [p for p in map(tuple, pairs.tolist()) if p[0] in features and p[1] in features]
        transforms = dict(zip(ordered, pool.map(lambda p: keypoint_transform(features[p[0]], features[p[1]]),
                                                ordered), strict=True))
    matched = {p: t for p, t in transforms.items() if t is not None}
    views = {i: view(i) for i in sorted({i for p in matched for i in p})}
    scores = {p: 0.0 for p in ordered}
    for (i, j), t in matched.items():
        a, b = views[i], views[j]
        if a is not None and b is not None:
            scores[(i, j)] = aligned_similarity(a, b, t)
    return scores


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


def connected_groups(n: int, pairs: Sequence[tuple[int, int]] | np.ndarray) -> list[list[int]]:
    """The groups (size >= 2) that the pairs connect, each sorted, largest group first."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if not len(edges) or n < 2:
        return []
    _, component = connected_components(coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                                                   shape=(n, n)), directed=False)
    order = np.argsort(component, kind="stable")
    _, starts, counts = np.unique(component[order], return_index=True, return_counts=True)
    groups = [order[a:a + c].tolist() for a, c in zip(starts, counts, strict=True) if c > 1]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


@dataclass
class DuplicateGroup:
    """Row indices of one group, the one kept, and whether the group spans splits."""

    members: list[int]
    keep: int
    kind: str  # "exact" (same bytes or pixels) or "near"
    leak: bool = False
    splits: list[str] = field(default_factory=list)


def keep_plan(members: list[int], sizes: Sequence[int], splits: Sequence[str | None], policy: str) -> int:
    """The member to keep: ``largest`` (most pixels, then first), ``train`` (a train copy, then largest),
    or ``first``."""
    if policy == "first":
        return members[0]
    if policy == "train":
        return min(members, key=lambda i: (splits[i] != "train", -sizes[i], i))
    if policy == "largest":
        return min(members, key=lambda i: (-sizes[i], i))
    raise ValueError(f"unknown keep policy {policy!r}; use largest, train or first")


PIXEL, KEYPOINT, EXACT = 0, 1, 2  # how a pair was verified: thumbnails aligned, keypoints matched, same content


@dataclass
class Verified:
    """The candidate pairs a run verified (rows ``i < j``), each with its similarity and how it was verified
    (``PIXEL``, ``KEYPOINT`` or ``EXACT``). Loaded for a later run (:meth:`load`), ``covered`` marks the
    rows that earlier run covered: only pairs with another row are verified then."""

    pairs: np.ndarray  # (m, 2) int64
    scores: np.ndarray  # (m,) float32
    kind: np.ndarray  # (m,) int8
    covered: np.ndarray | None = None  # (n,) bool

    def best(self) -> dict[tuple[int, int], float]:
        """The highest similarity of each pair."""
        out: dict[tuple[int, int], float] = {}
        for (i, j), score in zip(self.pairs.tolist(), self.scores.tolist(), strict=True):
            out[(i, j)] = max(score, out.get((i, j), score))
        return out

    def save(self, path: str | Path, content_hashes: Sequence[str | None], candidate_cosine: float,
             keypoints: bool) -> None:
        """Written beside the pairs: each row's content hash (what a later run matches its rows by) and the
        settings the candidates depend on."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez(f, hashes=np.array([h or "" for h in content_hashes]), pairs=self.pairs.astype(np.int32),
                     scores=self.scores, kind=self.kind, candidate_cosine=candidate_cosine, keypoints=keypoints)

    @classmethod
    def load(cls, path: str | Path, content_hashes: Sequence[str | None], candidate_cosine: float,
             keypoints: bool) -> Verified | None:
        """An earlier run's pairs among rows ``content_hashes`` (its rows found again by content), or None
        where there is none or it was made with other settings. Exact pairs are left out: they are cheap
        to find again."""
        path = Path(path)
        if not path.is_file():
            return None
        with np.load(path) as f:
            if float(f["candidate_cosine"]) != candidate_cosine or bool(f["keypoints"]) != keypoints:
                return None
            first: dict[str, int] = {}
            for row, h in enumerate(content_hashes):
                if h:
                    first.setdefault(h, row)
            now = np.array([first.get(h, -1) for h in f["hashes"].tolist()] + [-1], dtype=np.int64)
            pairs, scores, kind = now[f["pairs"]], f["scores"], f["kind"]
            # A row whose content the earlier run had is covered, a byte-for-byte copy of another row too (its
            # pairs are its twin's, and the exact pair joins them): at 1M, 28% of the rows were such copies,
            # and searching them again as new took longer than the whole first run.
            seen = set(f["hashes"].tolist()) - {""}
        covered = np.array([bool(h) and h in seen for h in content_hashes], dtype=bool)
        keep = (pairs.min(axis=1) >= 0) & (kind != EXACT)
        return cls(pairs=np.sort(pairs[keep], axis=1), scores=scores[keep], kind=kind[keep], covered=covered)

    def of(self, kind: int) -> tuple[np.ndarray, np.ndarray]:
        """The pairs verified one way, and their scores."""
        mine = self.kind == kind
        return self.pairs[mine], self.scores[mine]


def _exact_pairs(pixel_hashes: Sequence[str], content_hashes: Sequence[str | None]) -> np.ndarray:
    """Pairs of the same bytes or the same pixels: each image with the first of its kind."""
    found: list[tuple[int, int]] = []
    for keys in (content_hashes, pixel_hashes):
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key is None:
                continue
            if key in first:
                found.append((first[key], i))
            else:
                first[key] = i
    return np.unique(np.array(found, dtype=np.int64).reshape(-1, 2), axis=0)


def find_duplicates(
    facts: Sequence[ImageFacts] | Thumbnails,
    content_hashes: Sequence[str | None],
    splits: Sequence[str | None],
    graph: KnnGraph | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    candidate_cosine: float = DEFAULT_CANDIDATE_COSINE,
    policy: str = "largest",
    exact_max: int = 100_000,
    open_image: Callable[[int], Image.Image] | None = None,
    progress: Callable[[int, int], None] | None = None,
    earlier: Verified | None = None,
) -> tuple[list[DuplicateGroup], Verified]:
    """Group duplicates among images; see the module docstring. ``open_image(row)`` opens an image for
    keypoint matching (none without it or a ``graph``; ``progress`` follows it). ``earlier``: the pairs an
    earlier run over most of these images verified (:meth:`Verified.load`); they are reused, and only pairs
    with an image it did not cover are searched and verified. Returns the groups and every pair verified."""
    images = facts if isinstance(facts, Thumbnails) else Thumbnails.of(facts)
    n, thumbs = len(images), images.thumbs
    exact = _exact_pairs(images.pixel_hashes, content_hashes)
    empty = (np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32))
    new = None if earlier is None or earlier.covered is None else np.flatnonzero(~earlier.covered)
    old_pixel, old_pixel_scores = earlier.of(PIXEL) if earlier is not None else empty
    fresh = _without(_without(candidate_pairs(graph, thumbs, candidate_cosine, exact_max, new), old_pixel), exact)
    pixel = np.concatenate([old_pixel, fresh])
    pixel_scores = np.concatenate([old_pixel_scores, verify(thumbs, fresh)])
    crowd = crowd_levels(n, pixel, pixel_scores)  # of the thumbnails: how alike an image's pixel look-alikes are
    near = pixel[(pixel_scores >= threshold) & stands_out(pixel_scores, crowd[pixel[:, 0]], crowd[pixel[:, 1]])]
    aligned, aligned_scores = earlier.of(KEYPOINT) if earlier is not None else empty
    if open_image is not None and graph is not None:
        tried = keypoint_pairs(graph, images)
        if new is not None:
            tried = _touching(tried, new, n)
        found = verify_by_keypoints(_without(_without(_without(tried, near), exact), aligned), open_image, progress)
        aligned = np.concatenate([aligned, np.array(list(found), dtype=np.int64).reshape(-1, 2)])
        aligned_scores = np.concatenate([aligned_scores, np.array(list(found.values()), dtype=np.float32)])
    near = np.concatenate([near, aligned[aligned_scores >= threshold]])  # keypoints need no crowd rule
    exact_groups = {tuple(g) for g in connected_groups(n, exact)}
    sizes = (images.widths * images.heights).tolist()
    groups = []
    for members in connected_groups(n, np.concatenate([near, exact])):
        group_splits = sorted({s for s in (splits[i] for i in members) if s})
        groups.append(DuplicateGroup(
            members=members, keep=keep_plan(members, sizes, splits, policy),
            kind="exact" if tuple(members) in exact_groups else "near",
            leak=len(group_splits) > 1, splits=group_splits,
        ))
    verified = Verified(
        pairs=np.concatenate([pixel, aligned, exact]),
        scores=np.concatenate([pixel_scores, aligned_scores, np.ones(len(exact), dtype=np.float32)]),
        kind=np.repeat(np.array([PIXEL, KEYPOINT, EXACT], dtype=np.int8), [len(pixel), len(aligned), len(exact)]),
    )
    return groups, verified
