"""Keypoint verification, for what thumbnails cannot align (heavy crops, rotations): ORB keypoints matched,
a similarity transform fitted by RANSAC, and the images correlated over the part they share."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..graph import KnnGraph
from ..thumbnails import Thumbnails
from .alignment import standardise
from .pairs import distinct_pairs

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Keypoints:
    """An image's ORB keypoints (coordinates in its :func:`keypoint_view`) and their descriptors."""

    points: np.ndarray  # (n, 2) float32
    descriptors: np.ndarray | None  # (n, 32) uint8


def open_for_keypoints(path: str) -> Image.Image:
    """An image file, grey, decoded at about ``KEYPOINT_SIDE`` a side where the format allows (JPEG)."""
    from ..images import open_image

    # JPEG: decoded at a reduced scale, no smaller than asked; upright, like the thumbnails it is compared with.
    return open_image(path, draft=(KEYPOINT_SIDE, KEYPOINT_SIDE)).convert("L")


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
    x = standardise(cv2.GaussianBlur(a.astype(np.float32), (0, 0), KEYPOINT_BLUR)[shared].astype(np.float64))
    return float(x @ standardise(warped[shared].astype(np.float64)))


def keypoint_pairs(graph: KnnGraph, images: Thumbnails) -> np.ndarray:
    """The pairs worth matching by keypoints: each image and its ``KEYPOINT_NEIGHBOURS`` nearest embedding
    neighbours, where both are at least ``KEYPOINT_MIN_SIDE`` pixels a side. No cosine floor: a crop can
    sit far from its source in embedding space, and keypoints tell copies from look-alikes."""
    big = np.minimum(images.widths, images.heights) >= KEYPOINT_MIN_SIDE
    rows, cols = np.nonzero(graph.indices[:, :KEYPOINT_NEIGHBOURS] >= 0)
    pairs = distinct_pairs(rows, graph.indices[rows, cols])
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
