"""An image file as every part of lookalike sees it: its first frame, upright (EXIF orientation applied, as
phones and browsers show it), 8-bit RGB (16-bit grey scaled down, not clipped to white; palette and
alpha images without Pillow's transparency warning), and no thinner than 1:``MAX_ASPECT`` (a model resizes
the short side to its input size: a 1 x 5,000 sliver would become a 224 x 1,120,000 tensor, 3 GB).

Pillow's own guards stay on: a decompression bomb (more than twice ``Image.MAX_IMAGE_PIXELS``) and a
truncated file raise, and the caller records the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

MAX_ASPECT = 50  # longest side over shortest beyond which an image is not embedded
# What a file decodes to, as a version: raise it when open_image's output changes for some file, and the vectors
# cached from the old pixels are embedded again (they are cached under it) instead of kept stale.
DECODING_VERSION = 2  # 2: first frame, EXIF upright, 16-bit grey scaled, palette transparency, 1:50 aspect
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageRejected(ValueError):
    """An image that decodes but cannot be embedded; the message says why."""


def open_image(path: str | Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """The file's first frame as upright 8-bit RGB (see the module docstring). ``draft``: a size to decode
    a JPEG at a fraction of its resolution, no smaller than asked."""
    from PIL import Image

    with Image.open(path) as im:
        if draft:
            im.draft("RGB", draft)
        im.load()
        return as_rgb(im)


def as_rgb(image: Image.Image) -> Image.Image:
    """An opened image as upright 8-bit RGB, or :class:`ImageRejected` when it is too thin to embed."""
    from PIL import Image, ImageOps

    w, h = image.size
    if min(w, h) < 1 or max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageRejected(f"too thin to embed: {w} x {h} px (beyond 1:{MAX_ASPECT})")
    upright = ImageOps.exif_transpose(image)
    if upright.mode in SIXTEEN_BIT:
        # 0-65535 to 0-255 (Pillow's own conversion clips at 255: a 16-bit scan turns white).
        grey = (np.asarray(upright, dtype=np.uint32) // 257).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if upright.mode == "F":
        return Image.fromarray(np.clip(np.asarray(upright), 0, 255).astype(np.uint8)).convert("RGB")
    if upright.mode in ("P", "PA") and ("transparency" in upright.info or upright.mode == "PA"):
        upright = upright.convert("RGBA")  # palette transparency, the way Pillow asks for it
    return upright.convert("RGB")
