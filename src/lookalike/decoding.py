"""Image files to model inputs, in worker processes: a whole image, or the boxes of one image cropped from a
single decode.

A :class:`Source` is one image file and what to take from it: the whole image (no boxes), or boxes
(FiftyOne's relative ``[x, y, w, h]``), each widened by a context ``margin`` (a share of its width and
height on every side) and clipped to the image. Every part taken has a row: its position in the caller's
list, which the results carry back. A failure is recorded for its row (an unreadable image: for each of its
boxes), never raised. :mod:`lookalike.embedding` and :mod:`lookalike.engines` both build on this module.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .images import open_image
from .processes import decode_worker_init
from .thumbnails import ImageFacts, image_facts

if TYPE_CHECKING:
    from PIL import Image

Box = tuple[float, float, float, float]  # relative [x, y, w, h], FiftyOne's bounding_box
MIN_BOX_PX = 8  # a crop narrower or lower than this (in pixels, margin included) is not embedded
Decoded = tuple[int, Any, ImageFacts | None, str | None]  # row, model input, image facts, error


@dataclass(frozen=True)
class Source:
    """One image file and the rows to take from it: the whole image (``boxes`` empty; ``rows`` one row) or
    each box of ``boxes`` (``rows`` one a box), widened by ``margin``."""

    path: str
    rows: tuple[int, ...]
    boxes: tuple[Box, ...] = ()
    margin: float = 0.0


def box_problem(box: Sequence[float] | None) -> str | None:
    """Why a relative box cannot be cropped from any image (None: it can be tried)."""
    if box is None or len(box) != 4:
        return "no bounding box"
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
        return f"bounding box {list(box)} is not finite"
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return f"bounding box of zero or negative size ({w:.3g} x {h:.3g})"
    if x >= 1 or y >= 1 or x + w <= 0 or y + h <= 0:
        return f"bounding box {[round(v, 4) for v in box]} lies outside the image"
    return None


def crop_box(width: int, height: int, box: Box, margin: float) -> tuple[int, int, int, int] | str:
    """The pixel rectangle (left, top, right, bottom) of ``box`` widened by ``margin`` and clipped to the
    image, or why it cannot be embedded."""
    problem = box_problem(box)
    if problem:
        return problem
    x, y, w, h = box
    left = max(0, math.floor((x - margin * w) * width))
    top = max(0, math.floor((y - margin * h) * height))
    right = min(width, math.ceil((x + w + margin * w) * width))
    bottom = min(height, math.ceil((y + h + margin * h) * height))
    if right - left < MIN_BOX_PX or bottom - top < MIN_BOX_PX:
        return f"too small to embed: {right - left} x {bottom - top} px in the image (at least {MIN_BOX_PX})"
    return left, top, right, bottom


def decode_source(source: Source, preprocess: Callable[[Image.Image], Any] | None) -> list[Decoded]:
    """A source's rows: each one's model input (given ``preprocess``) or the reason it has none. The whole
    image's row also carries the image's facts; boxes carry none."""
    try:
        im = open_image(source.path)
    except Exception as e:  # any decoder failure is recorded, never fatal
        return [(row, None, None, f"cannot decode image: {type(e).__name__}: {e}") for row in source.rows]
    if not source.boxes:
        try:
            return [(source.rows[0], preprocess(im) if preprocess else None, image_facts(im), None)]
        except Exception as e:
            return [(source.rows[0], None, None, f"cannot decode image: {type(e).__name__}: {e}")]
    out: list[Decoded] = []
    for row, box in zip(source.rows, source.boxes, strict=True):
        rect = crop_box(im.width, im.height, box, source.margin)
        if isinstance(rect, str):
            out.append((row, None, None, rect))
            continue
        crop = im.crop(rect)
        out.append((row, preprocess(crop) if preprocess else None, None, None))
    return out


class _Decoder:
    """Decodes one source in a worker (a map-style dataset); returns errors, never raises."""

    def __init__(self, sources: Sequence[Source], preprocess: Callable[[Any], Any] | None) -> None:
        self.sources = sources
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> list[Decoded]:
        return decode_source(self.sources[i], self.preprocess)


def _flatten(items: list[list[Decoded]]) -> list[Decoded]:
    return [d for item in items for d in item]


def decode_batches(sources: Sequence[Source], preprocess: Callable[[Any], Any] | None, batch_size: int,
                   num_workers: int, pin_memory: bool = False) -> Iterable[list[Decoded]]:
    """The sources' rows decoded, ``batch_size`` sources a batch, in ``num_workers`` processes (in this one
    for a single batch)."""
    import torch

    loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
        _Decoder(sources, preprocess),  # type: ignore[arg-type]  # map-style by protocol, not by inheritance
        batch_size=batch_size,
        num_workers=num_workers if len(sources) > batch_size else 0,
        collate_fn=_flatten,
        pin_memory=pin_memory,
        worker_init_fn=functools.partial(decode_worker_init, os.getpid()),
    )
    return loader


def whole_images(paths: Sequence[str]) -> list[Source]:
    """One source per file, the whole image, row = its position."""
    return [Source(p, (i,)) for i, p in enumerate(paths)]
