"""Write the bad-input corpus: images that break decoders, and good images beside them.

    python tests/data/make_bad_inputs.py FOLDER

Everything is made here (nothing binary is stored in the repository); the largest file is the
decompression bomb's 20,000 x 20,000 one-bit PNG, 60 KB on disk. ``write_corpus`` returns what each file
should come to: "ok" (embedded), or the start of the reason it is recorded with.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

GOOD_PER_CLASS = 8


def _photo(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A smooth random picture with structure (so that a rotation changes its embedding)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(image).copy()
    pixels[: size[1] // 3, : size[0] // 4] = (250, 250, 250)  # a bright corner: orientation shows
    return Image.fromarray(pixels)


def write_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus as class folders ``good/`` and ``bad/`` under ``folder``; returns {relative path:
    expected outcome}."""
    good, bad = folder / "good", folder / "bad"
    good.mkdir(parents=True, exist_ok=True)
    bad.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    for i in range(GOOD_PER_CLASS):
        _photo(i).save(good / f"photo-{i}.png")
        expected[f"good/photo-{i}.png"] = "ok"

    jpeg = io.BytesIO()
    _photo(100, (320, 240)).save(jpeg, format="JPEG", quality=90)
    (bad / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    expected["bad/truncated.jpg"] = "cannot decode image"
    png = io.BytesIO()
    _photo(101, (320, 240)).save(png, format="PNG")
    (bad / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    expected["bad/truncated.png"] = "cannot decode image"
    (bad / "empty.jpg").write_bytes(b"")
    expected["bad/empty.jpg"] = "cannot decode image"
    (bad / "text.jpg").write_text("this is not a picture\n")
    expected["bad/text.jpg"] = "cannot decode image"
    Image.new("1", (20_000, 20_000)).save(bad / "bomb.png", optimize=True)
    expected["bad/bomb.png"] = "cannot decode image: DecompressionBombError"
    for a, b in (("loop-a.jpg", "loop-b.jpg"), ("loop-b.jpg", "loop-a.jpg")):
        if not (bad / a).is_symlink():
            os.symlink(bad / b, bad / a)
        expected[f"bad/{a}"] = "cannot read file"
    Image.fromarray(np.full((5_000, 1, 3), 128, np.uint8)).save(bad / "sliver.png")
    expected["bad/sliver.png"] = "cannot decode image: ImageRejected: too thin"

    # Unusual but valid: all embedded.
    _photo(102).convert("CMYK").save(good / "cmyk.jpg", quality=95)
    grey16 = (np.asarray(_photo(103).convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(grey16).save(good / "grey-16-bit.png")
    palette = _photo(104).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(good / "palette-transparent.png", transparency=0)
    upright = _photo(105, (96, 64))
    upright.save(good / "upright.jpg", quality=100, subsampling=0)
    rotated = upright.transpose(Image.Transpose.ROTATE_90)  # stored on its side, EXIF says turn it back
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    rotated.save(good / "exif-rotated.jpg", quality=100, subsampling=0, exif=exif)
    frames = [_photo(106 + i) for i in range(3)]
    frames[0].save(good / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(good / "animated-first-frame.png")
    for name in ("cmyk.jpg", "grey-16-bit.png", "palette-transparent.png", "upright.jpg", "exif-rotated.jpg",
                 "animated.gif", "animated-first-frame.png"):
        expected[f"good/{name}"] = "ok"
    return expected


if __name__ == "__main__":
    for path, outcome in write_corpus(Path(sys.argv[1])).items():
        print(f"{path}: {outcome}")
