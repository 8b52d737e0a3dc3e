"""Duplicates: exact (same bytes or same pixels) and near (the same picture re-encoded, shifted,
brightened, flipped, cropped or rotated), grouped, with a keep/remove plan and leaks across splits.

Embeddings alone both miss copies and confuse look-alikes (distinct images at cosine 0.99), so:

1. **Candidates** come from three neighbour searches: the embedding kNN graph (pairs above
   ``candidate_cosine``), a kNN search over small grey thumbnails and their mirror images (pixel
   look-alikes the model may place apart), and, among images larger than a thumbnail, a search of each
   thumbnail among windows of the others (re-crops, which both other searches miss: :mod:`.crops`).
2. **Verification** aligns each candidate pair at pixel level: the best normalised cross-correlation of
   the thumbnails' centres over mirror, scale (crop) and shift, batched as grouped convolutions (a crop
   candidate: over crop views of its source, :func:`.crops.verify_crops`). A pair
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

Pure NumPy/torch/OpenCV over thumbnails (:mod:`lookalike.thumbnails` makes them), one module per step:
:mod:`.candidates`, :mod:`.alignment`, :mod:`.keypoints`, :mod:`.groups`; :mod:`.pairs` holds the pair arrays.
Measured by ``benchmarks/duplicates.py`` (planted copies: JPEG 30, shift, brightness, flip, 10% crop):
2,000 textile images, pair P 1.0 / R 1.0; 10,000 Fashion-MNIST images, P 0.87 / R 0.94 at 28 px, where
many distinct items of a class are pixel look-alikes; heavy crops, rotations and cut-outs of 20 photos
among the textiles, P 1.0 / R 0.85 (0.08 without keypoints); groups of 6 copies of those photos, P 1.0 /
R 1.0 (0.84 without keypoints).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..engines import is_distributed
from ..graph import KnnGraph
from ..thumbnails import ImageFacts, Thumbnails
from .alignment import crowd_levels, stands_out, verify
from .candidates import DEFAULT_CANDIDATE_COSINE, candidate_pairs
from .crops import CROP_MIN_SIDE, crop_pairs, verify_crops
from .groups import DuplicateGroup, connected_groups, keep_plan
from .keypoints import keypoint_pairs, open_for_keypoints, verify_by_keypoints
from .pairs import EXACT, KEYPOINT, PIXEL, Verified, among, exact_pairs, strongest, touching, without

if TYPE_CHECKING:
    from PIL import Image

    from ..engines import Engine

PAIR_BATCH = 50_000  # candidate pairs a verification task aligns (a distributed engine's unit of work)
DEFAULT_THRESHOLD = 0.95  # benchmarks/duplicates.py: best F1 over both sets (textile P/R 1.0 up to 0.95)

__all__ = ["DEFAULT_CANDIDATE_COSINE", "DEFAULT_THRESHOLD", "DuplicateGroup", "Verified", "connected_groups",
           "find_duplicates", "keep_plan", "open_for_keypoints"]


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
    engine: Engine | None = None,
) -> tuple[list[DuplicateGroup], Verified]:
    """Group duplicates among images; see the module docstring. ``open_image(row)`` opens an image for
    keypoint matching (none without it or a ``graph``; ``progress`` follows it). ``earlier``: the pairs an
    earlier run over most of these images verified (:meth:`Verified.load`); they are reused, and only pairs
    with an image it did not cover are searched and verified. ``engine`` (:mod:`lookalike.engines`): where the
    pixel verification runs (a distributed one: batches of candidate pairs as tasks against the shared
    thumbnails). Returns the groups and every pair verified."""
    images = facts if isinstance(facts, Thumbnails) else Thumbnails.of(facts)
    n, thumbs = len(images), images.thumbs
    exact = exact_pairs(images.pixel_hashes, content_hashes)
    empty = (np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32))
    new = None if earlier is None or earlier.covered is None else np.flatnonzero(~earlier.covered)
    old_pixel, old_pixel_scores = earlier.of(PIXEL) if earlier is not None else empty
    fresh = without(without(candidate_pairs(graph, thumbs, candidate_cosine, exact_max, new), old_pixel), exact)
    big = np.flatnonzero(np.minimum(images.widths, images.heights) >= CROP_MIN_SIDE)
    crops = crop_pairs(thumbs, big, exact_max, new)  # (crop, source): the order verification needs
    ordered = np.sort(crops, axis=1)  # as i < j, like every other pair
    kept = ~among(ordered, exact)
    scores = [old_pixel_scores, _verified(engine, verify, thumbs, fresh),
              _verified(engine, verify_crops, thumbs, crops[kept])]
    pixel, pixel_scores = strongest(np.concatenate([old_pixel, fresh, ordered[kept]]), np.concatenate(scores))
    crowd = crowd_levels(n, pixel, pixel_scores)  # of the thumbnails: how alike an image's pixel look-alikes are
    near = pixel[(pixel_scores >= threshold) & stands_out(pixel_scores, crowd[pixel[:, 0]], crowd[pixel[:, 1]])]
    aligned, aligned_scores = earlier.of(KEYPOINT) if earlier is not None else empty
    if open_image is not None and graph is not None:
        tried = keypoint_pairs(graph, images)
        if new is not None:
            tried = touching(tried, new, n)
        found = verify_by_keypoints(without(without(without(tried, near), exact), aligned), open_image, progress)
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


def _verified(engine: Engine | None, align: Callable[[np.ndarray, np.ndarray], np.ndarray], thumbs: np.ndarray,
              pairs: np.ndarray) -> np.ndarray:
    """``align(thumbs, pairs)``: here, or on ``engine`` in batches of ``PAIR_BATCH`` pairs (each pair's score
    depends on its two thumbnails alone, so batches give the same scores)."""
    if engine is None or not is_distributed(engine) or len(pairs) <= PAIR_BATCH:
        return align(thumbs, pairs)
    parts = engine.map(align, thumbs, [pairs[a:a + PAIR_BATCH] for a in range(0, len(pairs), PAIR_BATCH)])
    return np.concatenate(parts)
