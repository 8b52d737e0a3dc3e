"""FiftyOne adapter: load sources into persistent datasets and read what the analyses need.

Loading goes through FiftyOne's own importers. A folder is read as:

- ``train/``, ``val/``, ``validation/``, ``test/`` at the top: each loaded on its own, its samples
  getting ``split`` set to that name;
- class subfolders of images: an image classification tree (labels in ``ground_truth``);
- images only: an unlabeled image folder.

Samples are keyed by file path, so loading the same source again updates, never duplicates.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigError, DatasetNotFoundError, SourceError

if TYPE_CHECKING:
    import fiftyone as fo

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "validation", "test")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
FORMATS = {
    "image-tree": "ImageClassificationDirectoryTree",
    "images": "ImageDirectory",
    "coco": "COCODetectionDataset",
    "yolo": "YOLOv5Dataset",
    "yolov4": "YOLOv4Dataset",
    "voc": "VOCDetectionDataset",
    "kitti": "KITTIDetectionDataset",
    "cvat": "CVATImageDataset",
    "csv": "CSVDataset",
    "fiftyone": "FiftyOneDataset",
    "fiftyone-classification": "FiftyOneImageClassificationDataset",
    "fiftyone-detection": "FiftyOneImageDetectionDataset",
}
LABEL_FIELD = "ground_truth"


def get_dataset(name: str) -> fo.Dataset:
    """The FiftyOne dataset called ``name``; the error lists the ones that exist."""
    import fiftyone as fo

    if not fo.dataset_exists(name):
        existing = ", ".join(fo.list_datasets()) or "none"
        raise DatasetNotFoundError(
            f"no FiftyOne dataset named {name!r}; existing datasets: {existing}. "
            "Create one with `lookalike load SOURCE --name NAME`"
        )
    return fo.load_dataset(name)


def _dataset_type(fmt: str) -> Any:
    import fiftyone.types as fot

    cls_name = FORMATS.get(fmt, fmt.rsplit(".", 1)[-1])
    cls = getattr(fot, cls_name, None)
    if cls is None:
        raise ConfigError(
            f"unknown format {fmt!r}; use one of {', '.join(FORMATS)} or any fiftyone.types class name"
        )
    return cls


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())


def _folder_format(folder: Path) -> str:
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if any(_has_images(d) for d in subdirs):
        return "image-tree"
    if _has_images(folder):
        return "images"
    raise SourceError(f"{folder} holds no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")


def load(
    source: str | os.PathLike[str],
    name: str | None = None,
    format: str | None = None,
    label_field: str = LABEL_FIELD,
    progress: bool | None = None,
) -> fo.Dataset:
    """Load ``source`` into the persistent FiftyOne dataset ``name`` and return it.

    ``source`` is a folder (see the module docstring), a folder or file in a format FiftyOne imports
    (``format``: a key of :data:`FORMATS` or a ``fiftyone.types`` class name), or the name of an
    existing dataset (cloned to ``name`` if that differs). Reloading updates samples in place.
    """
    import fiftyone as fo
    from fiftyone import ViewField as F

    path = Path(source).expanduser()
    if not path.exists():
        if fo.dataset_exists(str(source)):
            if name and name != str(source):
                if fo.dataset_exists(name):
                    raise ConfigError(f"dataset {name!r} exists already; choose another --name")
                clone = fo.load_dataset(str(source)).clone(name, persistent=True)
                return clone
            return fo.load_dataset(str(source))
        existing = ", ".join(fo.list_datasets()) or "none"
        raise SourceError(f"{source} is neither a file, a folder nor a FiftyOne dataset (existing: {existing})")

    parts: list[tuple[Path, str | None, str]]
    if format is None and path.is_dir():
        splits = [path / s for s in SPLITS if (path / s).is_dir()]
        parts = [(d, d.name, _folder_format(d)) for d in splits] or [(path, None, _folder_format(path))]
    elif format is None:
        raise SourceError(f"{path} is a file: say which format it is with --format ({', '.join(FORMATS)})")
    else:
        parts = [(path, None, format)]
    types = [_dataset_type(fmt) for _, _, fmt in parts]  # refuse a bad format before creating anything

    name = name or path.stem
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name, persistent=True)
    for (folder, split, fmt), dataset_type in zip(parts, types, strict=True):
        kwargs: dict[str, Any] = {"key_field": "filepath", "progress": progress}
        if fmt != "images":
            kwargs["label_field"] = label_field
        try:
            dataset.merge_dir(dataset_dir=str(folder), dataset_type=dataset_type, **kwargs)
        except (OSError, ValueError, KeyError) as e:
            raise SourceError(f"FiftyOne could not import {folder} as {fmt}: {e}") from e
        if split:
            view = dataset.match(F("filepath").starts_with(str(folder.resolve()) + os.sep))
            view.set_values("split", [split] * len(view))
        log.info("loaded %s (%s%s)", folder, fmt, f", split {split}" if split else "")
    return dataset


def find_label_field(dataset: fo.Dataset, label_field: str | None = None) -> str | None:
    """``label_field`` if given, else the first Classification field, else the first Detections field."""
    import fiftyone as fo

    schema = dataset.get_field_schema(embedded_doc_type=None)
    if label_field:
        if label_field not in schema:
            raise ConfigError(f"dataset {dataset.name!r} has no field {label_field!r}; fields: {', '.join(schema)}")
        return label_field
    for kind in (fo.Classification, fo.Detections):
        for field_name, f in schema.items():
            if getattr(f, "document_type", None) is kind:
                return field_name
    return None


def sample_table(dataset: fo.Dataset | fo.DatasetView, label_field: str | None) -> dict[str, list[Any]]:
    """Columns the index payload needs: id, filepath, label (str, list for detections, or None), split, tags."""
    import fiftyone as fo

    n = len(dataset)
    labels: list[Any] = [None] * n
    if label_field:
        kind = dataset.get_field(label_field).document_type
        if kind is fo.Detections:
            labels = [sorted(set(ls or [])) for ls in dataset.values(f"{label_field}.detections.label")]
        else:
            labels = dataset.values(f"{label_field}.label")
    has_split = dataset.has_field("split")
    return {
        "id": dataset.values("id"),
        "filepath": dataset.values("filepath"),
        "label": labels,
        "split": dataset.values("split") if has_split else [None] * n,
        "tags": [list(t or []) for t in dataset.values("tags")],
    }
