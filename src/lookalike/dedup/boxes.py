"""Double annotations: boxes of one image that mark one object twice (the same label, or two labels that
disagree). A pure core over arrays: each box's image, its relative ``[x, y, w, h]``; no FiftyOne, no index.

Two boxes of one image are one object when their intersection over union reaches ``iou``; groups are the
connected components of those pairs. ``benchmarks/objects.py`` measures the default on planted doubles
(jittered copies of a box) beside distinct objects that overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..box_match import iou_matrix

DEFAULT_IOU = 0.5  # measured: benchmarks/objects.py (double annotations: P = R = 1 at 0.5 on both sets; R 0.987 at 0.6)


@dataclass
class DoubleAnnotations:
    """Groups of rows (boxes) that mark one object, and each row's best IoU with another box of its image."""

    groups: list[list[int]]
    best_iou: np.ndarray  # per row; 0 where its image has no other box


def find_double_annotations(images: Sequence[str], boxes: np.ndarray, iou: float = DEFAULT_IOU) -> DoubleAnnotations:
    """Rows whose boxes, on the same image (``images[i]``: any key of it), overlap at ``iou`` or more, grouped."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    best = np.zeros(len(boxes), dtype=np.float32)
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_image: dict[str, list[int]] = {}
    for row, image in enumerate(images):
        by_image.setdefault(image, []).append(row)
    for rows in by_image.values():
        if len(rows) < 2:
            continue
        at = np.array(rows)
        m = iou_matrix(boxes[at])
        np.fill_diagonal(m, 0)
        best[at] = m.max(axis=1)
        for a, b in zip(*np.nonzero(np.triu(m >= iou, 1)), strict=True):
            parent[root(int(at[a]))] = root(int(at[b]))
    members: dict[int, list[int]] = {}
    for row in range(len(boxes)):
        members.setdefault(root(row), []).append(row)
    return DoubleAnnotations(groups=[g for g in members.values() if len(g) > 1], best_iou=best)
