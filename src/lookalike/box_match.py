"""Boxes against boxes, a pure core over arrays (relative ``[x, y, w, h]``, an image key per box; no FiftyOne):
their intersection over union, and a detector's predictions matched to the labelled boxes of the same image
as object detection evaluation matches them (most confident prediction first, to the free labelled box it
overlaps most, at ``iou`` or more, whatever the labels), so that a label the detector disputes and an object
it finds that nobody labelled can be told apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MATCH_IOU = 0.5  # the usual detection-matching overlap (PASCAL VOC, COCO's loosest)


def iou_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Intersection over union of every box of ``a`` with every box of ``b`` (default ``a``): (len a, len b)."""
    b = a if b is None else b
    ax1, ay1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inter / ((a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter)
    return np.nan_to_num(out)


@dataclass
class Matching:
    """Per labelled box, the prediction matched to it (-1: none); the predictions matched to no labelled box."""

    matched: np.ndarray
    unmatched: np.ndarray


def match_predictions(label_images: Sequence[str], label_boxes: np.ndarray, pred_images: Sequence[str],
                      pred_boxes: np.ndarray, confidence: np.ndarray, iou: float = MATCH_IOU) -> Matching:
    """Greedy matching per image: predictions most confident first, each to the still free labelled box of its
    image that it overlaps most, where that overlap reaches ``iou``."""
    label_boxes = np.asarray(label_boxes, np.float64).reshape(-1, 4)
    pred_boxes = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    matched = np.full(len(label_boxes), -1, dtype=np.int64)
    used = np.zeros(len(pred_boxes), dtype=bool)
    labels_of: dict[str, list[int]] = {}
    for row, image in enumerate(label_images):
        labels_of.setdefault(image, []).append(row)
    preds_of: dict[str, list[int]] = {}
    for row, image in enumerate(pred_images):
        preds_of.setdefault(image, []).append(row)
    for image, preds in preds_of.items():
        rows = labels_of.get(image)
        if not rows:
            continue
        overlap = iou_matrix(pred_boxes[preds], label_boxes[rows])
        for p in np.argsort(-np.asarray(confidence)[preds], kind="stable"):
            free = np.where(matched[rows] < 0, overlap[p], -1.0)
            best = int(np.argmax(free))
            if free[best] >= iou:
                matched[rows[best]] = preds[p]
                used[preds[p]] = True
    return Matching(matched=matched, unmatched=np.flatnonzero(~used))
