"""Results that render in Jupyter: compact HTML (thumbnail grids with label, score and suggested label;
duplicate groups side by side) and pandas DataFrames (``.to_pandas()``).

Thumbnails are small inline PNGs made from the image files themselves, so a notebook needs no App to show
them; at most :data:`MAX_THUMBNAILS` are drawn per result, the rest counted.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

MAX_THUMBNAILS = 48  # thumbnails drawn per result; a result of a million rows renders as fast as one of 48
THUMB_SIDE = 96  # pixels, the longer side
CAPTION_FIELDS = ("label", "suggested_label", "score", "issues", "split", "keep")

R = TypeVar("R")


def image_uri(path: str, side: int = THUMB_SIDE) -> str | None:
    """A ``data:`` URI of the image at ``path``, upright (EXIF) and at most ``side`` pixels a side; None where
    the file cannot be decoded."""
    from .images import open_image

    try:
        small = open_image(path, draft=(side, side))  # JPEGs decode at a fraction of their size
        small.thumbnail((side, side))
    except Exception:  # a result's file may have gone or be unreadable: the caption still shows
        return None
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _caption_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def tile(fields: dict[str, Any], path: str | None) -> str:
    """One image with its caption (the fields of :data:`CAPTION_FIELDS` it has)."""
    uri = image_uri(path) if path else None
    picture = (f'<img src="{uri}" style="max-width:{THUMB_SIDE}px;max-height:{THUMB_SIDE}px">' if uri else
               f'<div style="width:{THUMB_SIDE}px;height:{THUMB_SIDE}px;background:#eee;font-size:10px">'
               "no image</div>")
    lines = []
    for key in CAPTION_FIELDS:
        value = fields.get(key)
        if value is None or value == [] or (key == "keep" and value is False):
            continue
        shown = "kept" if key == "keep" else (f"&rarr; {html.escape(str(value))}" if key == "suggested_label"
                                              else html.escape(_caption_value(value)))
        lines.append(f"<div>{shown}</div>")
    title = html.escape(f"{fields.get('id', '')} {path or ''}")
    return (f'<div title="{title}" style="display:inline-block;vertical-align:top;margin:2px;'
            f'width:{THUMB_SIDE + 8}px;font-size:11px;line-height:1.2;text-align:center">{picture}{"".join(lines)}'
            "</div>")


def grid(tiles: Iterable[str], total: int, shown: int) -> str:
    more = f"<div style='font-size:11px;color:#666'>and {total - shown} more</div>" if total > shown else ""
    return f"<div style='display:flex;flex-wrap:wrap'>{''.join(tiles)}</div>{more}"


class Results(list[R]):
    """A finder's or a search's records, as the list they always were, plus rendering: in Jupyter an HTML grid
    of thumbnails (the first :data:`MAX_THUMBNAILS` images), and :meth:`to_pandas`."""

    def to_pandas(self) -> pd.DataFrame:
        """One row a sample (a duplicate group gives one row per member, with the group's columns)."""
        import pandas as pd

        return pd.DataFrame([row for record in self for row in _rows(record)])

    def _repr_html_(self) -> str:
        if not self:
            return "<p>no results</p>"
        tiles, drawn = [], 0
        for record in self:
            if drawn >= MAX_THUMBNAILS:
                break
            part, count = _html(record, MAX_THUMBNAILS - drawn)
            tiles.append(part)
            drawn += count
        return grid(tiles, len(self), len(tiles))


def _rows(record: Any) -> list[dict[str, Any]]:
    rows = getattr(record, "rows", None)
    return rows() if rows else [record.to_dict()]


def _html(record: Any, budget: int) -> tuple[str, int]:
    """A record's HTML and how many thumbnails it drew (at most ``budget``)."""
    own = getattr(record, "html", None)
    if own:
        return own(budget)
    fields = record.to_dict()
    return tile(fields, fields.get("filepath")), 1


@dataclass
class Shown:
    """A sample as :func:`show` lists it."""

    id: str
    filepath: str
    label: Any
    score: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def show(view: Any, score: str | None = None, limit: int = MAX_THUMBNAILS) -> Results[Shown]:
    """The first ``limit`` samples of a FiftyOne dataset or view as a thumbnail grid (in Jupyter) captioned
    with their label and, given ``score``, that numeric field."""
    from .datasets import find_label_field

    field = find_label_field(view)
    head = view.limit(limit)
    ids, paths = head.values("id"), head.values("filepath")
    labels = head.values(f"{field}.label") if field else [None] * len(ids)  # Detections: each image's labels
    scores = head.values(score) if score else [None] * len(ids)
    return Results(Shown(i, p, lab, s) for i, p, lab, s in zip(ids, paths, labels, scores, strict=True))
