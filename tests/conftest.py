"""Every test runs against a private FiftyOne database, home folder and lookalike store."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Set before anything imports fiftyone: it reads these once.
_ROOT = Path(tempfile.mkdtemp(prefix="lookalike-tests-"))
# Registered before the database starts, so it runs after the database has stopped (atexit is last in, first out):
# each run's database and stores (300-500 MB) would otherwise pile up in /tmp until the disk is full.
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
os.environ["HOME"] = str(_ROOT / "home")
os.environ["FIFTYONE_DATABASE_DIR"] = str(_ROOT / "db")
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["LOOKALIKE_HOME"] = str(_ROOT / "lookalike")
os.environ["LOOKALIKE_WARM_SECONDS"] = "0"  # no warm process outlives a test (tests/test_warm.py turns it on)
for var in ("LOOKALIKE_MODEL", "LOOKALIKE_QDRANT_URL", "LOOKALIKE_QDRANT_API_KEY", "LOOKALIKE_DEVICE"):
    os.environ.pop(var, None)

from lookalike.database import start_private_database  # noqa: E402

# Its own mongod: FiftyOne would attach to any database service already running on the machine.
start_private_database(_ROOT / "db")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

if TYPE_CHECKING:
    from lookalike.models import Embedder

COLOURS = {"red": 0, "green": 1, "blue": 2}
MODEL = "random-tiny-clip"  # seeded random weights: plumbing, not search quality


def write_blobs(folder: Path, colour: str, count: int, seed: int, size: int = 48) -> list[Path]:
    """Noise images dominated by one colour channel: a class the tests can plant answers in."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        a = rng.integers(0, 70, (size, size, 3), dtype=np.uint8)
        a[..., COLOURS[colour]] += 170
        path = folder / f"{colour}-{seed}-{i}.png"
        Image.fromarray(a).save(path)
        paths.append(path)
    return paths


def vectors_by_file(name: str) -> dict[str, np.ndarray]:
    """An embedded dataset's vectors keyed by image file: two datasets loaded from the same files compared."""
    import fiftyone as fo

    import lookalike

    ids, vectors = lookalike.embeddings(name)
    path_of = dict(zip(*fo.load_dataset(name).values(["id", "filepath"]), strict=True))
    return {path_of[i]: v for i, v in zip(ids, vectors, strict=True)}


def heavy_crop(image: Image.Image) -> Image.Image:
    """65% of each side, off-centre, resized back: a copy whose thumbnail no longer lines up."""
    w, h = image.size
    return image.crop((w // 10, h // 4, w // 10 + int(0.65 * w), h // 4 + int(0.65 * h))).resize(
        (w, h), Image.Resampling.BICUBIC)


@pytest.fixture
def lookalike_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """``caplog`` for lookalike's loggers at INFO, also after the CLI stopped them propagating to the root."""
    logger = logging.getLogger("lookalike")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """train/ and test/ splits with red and blue classes, plus one corrupt file in train/red."""
    root = tmp_path / "tree"
    for split, seed in (("train", 1), ("test", 2)):
        for colour in ("red", "blue"):
            write_blobs(root / split / colour, colour, 4, seed + COLOURS[colour] * 10)
    (root / "train" / "red" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    return root


@pytest.fixture
def dataset_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh dataset name, deleted afterwards."""
    import fiftyone as fo

    name = "t-" + request.node.name.replace("[", "-").replace("]", "")[:60]
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    yield name
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


@pytest.fixture(scope="session")
def tiny() -> Embedder:
    from lookalike.models import get_embedder

    return get_embedder("random-tiny-clip")


@pytest.fixture
def embedded(tree: Path, dataset_name: str) -> tuple[str, Path, Path]:
    """The tree plus a planted near copy: train/red/red-1-0.png re-encoded as JPEG in test/red/."""
    from lookalike import embed, load

    original = tree / "train" / "red" / "red-1-0.png"
    copy = tree / "test" / "red" / "copy-of-red-1-0.jpg"
    Image.open(original).save(copy, quality=95)
    load(tree, name=dataset_name)
    embed(dataset_name, MODEL)
    return dataset_name, original, copy


OBJECT_COLOURS = {"cup": (220, 30, 30), "ball": (30, 200, 40), "box": (230, 220, 40)}


def write_coco_scenes(root: Path, scenes: list[list[tuple[str, tuple[int, int, int, int]]]], size: int = 96,
                      seed: int = 0) -> Path:
    """A COCO detection export (``data/`` + ``labels.json``) of scenes: blue-grey noise backgrounds with
    solid objects pasted at pixel boxes (x, y, w, h), one colour per category (``OBJECT_COLOURS``), with some
    texture so that no two crops are equal. FiftyOne's importer loads it as ``ground_truth_detections``."""
    import json

    rng = np.random.default_rng(seed)
    (root / "data").mkdir(parents=True, exist_ok=True)
    categories = {name: i + 1 for i, name in enumerate(OBJECT_COLOURS)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for n, objects in enumerate(scenes):
        a = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        a[..., 2] += 120  # a blue scene
        for label, (x, y, w, h) in objects:
            patch = np.array(OBJECT_COLOURS[label], np.int16) + rng.integers(-25, 25, (h, w, 3))
            a[y:y + h, x:x + w] = np.clip(patch, 0, 255).astype(np.uint8)
        name = f"scene-{n:03d}.png"
        Image.fromarray(a).save(root / "data" / name)
        images.append({"id": n + 1, "file_name": name, "width": size, "height": size})
        annotations += [{"id": len(annotations) + 1, "image_id": n + 1, "category_id": categories[label],
                         "bbox": list(box), "area": box[2] * box[3], "iscrowd": 0} for label, box in objects]
    (root / "labels.json").write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": i, "name": name} for name, i in categories.items()]}))
    return root
