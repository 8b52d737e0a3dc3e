"""FiftyOne adapter: load sources into persistent datasets and read what the analyses need.

A folder is read as:

- ``train/``, ``val/``, ``validation/``, ``test/`` at the top: each loaded on its own, its samples
  getting ``split`` set to that name;
- class subfolders of images: an image classification tree (labels in ``ground_truth``);
- images only: an unlabeled image folder.

Samples are keyed by file path, so loading the same source again updates, never duplicates. Folders are
listed here and only files not in the dataset yet are added (with ``add_samples``; FiftyOne's ``merge_dir``
took 382 s for 200k images and looks up every file again on each reload); every other format goes through
FiftyOne's own importers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
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


FOLDER_FORMATS = ("image-tree", "images")


def _image_files(folder: Path, labelled: bool) -> list[tuple[str, str | None]]:
    """(absolute path, class) of every image below ``folder``, sorted: the class is the top subfolder's name
    (images directly in ``folder`` have none); ``labelled=False``: every image, no classes."""
    found = []
    top = os.path.abspath(folder)
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, top)
        label = rel.split(os.sep)[0] if labelled and rel != "." else None
        if labelled and label is None:
            continue
        found += [(os.path.join(dirpath, f), label) for f in sorted(filenames)
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return found


def _add_folder(dataset: fo.Dataset, folder: Path, split: str | None, label_field: str | None,
                progress: bool | None) -> None:
    """Add the images of ``folder`` that the dataset lacks (a file's class follows from its path, so a known
    path needs nothing)."""
    import fiftyone as fo

    known = set(dataset.values("filepath"))
    new = [(p, c) for p, c in _image_files(folder, labelled=label_field is not None) if p not in known]

    def sample(path: str, label: str | None) -> fo.Sample:
        fields: dict[str, Any] = {"split": split} if split else {}
        if label_field and label is not None:
            fields[label_field] = fo.Classification(label=label)
        return fo.Sample(filepath=path, **fields)

    if new:
        dataset.add_samples((sample(p, c) for p, c in new), num_samples=len(new), progress=progress)


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
        if fmt in FOLDER_FORMATS:
            _add_folder(dataset, folder, split, label_field if fmt == "image-tree" else None, progress)
            log.info("loaded %s (%s%s)", folder, fmt, f", split {split}" if split else "")
            continue
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
            raise ConfigError(f"label_field {label_field!r}: dataset {dataset.name!r} has no field of that name; "
                              f"fields: {', '.join(schema)}")
        return label_field
    for kind in (fo.Classification, fo.Detections):
        for field_name, f in schema.items():
            if getattr(f, "document_type", None) is kind:
                return field_name
    return None


def values_in_order(dataset: fo.Dataset | fo.DatasetView, fields: Sequence[str],
                    ids: Sequence[str] | None = None) -> list[list[Any]]:
    """The values of ``fields`` for every sample, or for the samples ``ids`` in that order. Read in one pass
    over the collection and reordered here: ``select(ids, ordered=True)`` costs O(N^2) in MongoDB (an
    ``$indexOfArray`` per sample) and cannot send a million ids in one request."""
    columns = dataset.values(["id", *fields])
    if ids is None:
        return list(columns[1:])
    row = {sid: i for i, sid in enumerate(columns[0])}
    at = [row[sid] for sid in ids]
    return [[column[i] for i in at] for column in columns[1:]]


def sample_table(dataset: fo.Dataset | fo.DatasetView, label_field: str | None,
                 ids: Sequence[str] | None = None) -> dict[str, list[Any]]:
    """Columns the index payload needs: id, filepath, label (str, list for detections, or None), split, tags;
    for every sample, or for the samples ``ids`` in that order."""
    import fiftyone as fo

    fields = ["id", "filepath", "tags"]
    if dataset.has_field("split"):
        fields.append("split")
    detections = bool(label_field) and dataset.get_field(label_field).document_type is fo.Detections
    if label_field:
        fields.append(f"{label_field}.detections.label" if detections else f"{label_field}.label")
    columns = dict(zip(fields, values_in_order(dataset, fields, ids), strict=True))
    n = len(columns["id"])
    labels = columns.get(fields[-1], [None] * n) if label_field else [None] * n
    return {
        "id": columns["id"],
        "filepath": columns["filepath"],
        "label": [sorted(set(ls or [])) for ls in labels] if detections else labels,
        "split": columns.get("split", [None] * n),
        "tags": [list(t or []) for t in columns["tags"]],
    }


def split_view(name: str, split: str) -> fo.DatasetView:
    """The samples of dataset ``name`` whose ``split`` field is ``split``; a ConfigError naming the splits there are
    where none is."""
    from fiftyone import ViewField as F

    dataset = get_dataset(name)
    splits = sorted(s for s in dataset.distinct("split") if s) if dataset.has_field("split") else []
    if split not in splits:
        raise ConfigError(f"dataset {name!r} has no split {split!r}; its splits: {', '.join(splits) or 'none'}")
    return dataset.match(F("split") == split)


def detections_field(dataset: fo.Dataset | fo.DatasetView, field: str) -> str:
    """``field`` when it is a Detections field of the dataset, else a ConfigError naming it and what is
    supported."""
    import fiftyone as fo

    root = dataset._root_dataset
    if not root.has_field(field):
        fields = [name for name, f in root.get_field_schema().items()
                  if getattr(f, "document_type", None) is fo.Detections]
        raise ConfigError(f"patches {field!r}: dataset {root.name!r} has no field of that name; its Detections "
                          f"fields: {', '.join(fields) or 'none'}")
    kind = getattr(root.get_field(field), "document_type", None)
    if kind is not fo.Detections:
        raise ConfigError(f"patches {field!r} is a {getattr(kind, '__name__', type(root.get_field(field)).__name__)} "
                          "field; patches are the boxes of a Detections field (polylines, keypoints and "
                          "segmentations are not supported)")
    return field


def box_table(samples: fo.Dataset | fo.DatasetView, field: str, ids: Sequence[str] | None = None
              ) -> dict[str, list[Any]]:
    """The boxes of Detections ``field`` as rows: id (the label id), sample_id, filepath, label, split, tags
    (the sample's), label_tags and box (relative [x, y, w, h]); every box of ``samples``, or the boxes ``ids``
    in that order (boxes of samples outside ``samples`` are left out)."""
    fields = ["id", "filepath", "tags"]
    if samples.has_field("split"):
        fields.append("split")
    parts = ("id", "label", "bounding_box", "tags")
    fields += [f"{field}.detections.{p}" for p in parts]
    columns = dict(zip(fields, samples.values(fields), strict=True))
    out: dict[str, list[Any]] = {k: [] for k in ("id", "sample_id", "filepath", "label", "split", "tags",
                                                 "label_tags", "box")}
    splits = columns.get("split", [None] * len(columns["id"]))
    for s, (sid, path, tags, split) in enumerate(zip(columns["id"], columns["filepath"], columns["tags"], splits,
                                                     strict=True)):
        label_ids, labels, boxes, label_tags = (columns[f"{field}.detections.{p}"][s] or [] for p in parts)
        for lid, label, box, ltags in zip(label_ids, labels, boxes, label_tags or [[]] * len(label_ids),
                                          strict=True):
            out["id"].append(lid)
            out["sample_id"].append(sid)
            out["filepath"].append(path)
            out["label"].append(label)
            out["split"].append(split)
            out["tags"].append(list(tags or []))
            out["label_tags"].append(list(ltags or []))
            out["box"].append(None if box is None else [float(v) for v in box])
    if ids is None:
        return out
    row = {lid: r for r, lid in enumerate(out["id"])}
    at = [row[i] for i in ids if i in row]
    return {k: [column[r] for r in at] for k, column in out.items()}


def write_fields(samples: fo.Dataset | fo.DatasetView, fields: dict[str, tuple[type[fo.Field], dict[str, Any]]]) -> int:
    """Set sample fields of ``samples`` (a dataset, or a view: samples outside it are untouched) from
    ``{field: (kind, {sample id: value})}``: each field declared as ``kind`` if new (all-None values carry no
    type), every sample of ``samples`` not listed set to None. Only values that differ from the stored ones
    are written, so an update after 1% more samples writes about 1% (``set_values`` of a whole field is one
    update per sample: minutes at a million). Returns the number of values written."""
    dataset = samples._root_dataset
    for field_name, (kind, _) in fields.items():
        if not dataset.has_field(field_name):
            dataset.add_sample_field(field_name, kind)
    names = list(fields)
    ids, *stored = samples.values(["id", *names])
    written = 0
    for field_name, old in zip(names, stored, strict=True):
        new = fields[field_name][1]
        changed = {sid: new.get(sid) for sid, before in zip(ids, old, strict=True) if new.get(sid) != before}
        if changed:
            dataset.set_values(field_name, changed, key_field="id")
            written += len(changed)
    return written


def label_values(samples: fo.Dataset | fo.DatasetView, field: str, attribute: str, ids: Sequence[str]) -> list[Any]:
    """An attribute of the boxes ``ids`` of Detections ``field``, in that order (None where a box lacks it)."""
    label_ids, values = samples.values([f"{field}.detections.id", f"{field}.detections.{attribute}"], unwind=True)
    by_id = dict(zip(label_ids, values, strict=True))
    return [by_id.get(i) for i in ids]


def write_label_fields(samples: fo.Dataset | fo.DatasetView, field: str, values: dict[str, dict[str, Any]]) -> int:
    """Set attributes of the labels of Detections ``field`` from ``{attribute: {label id: value}}``, the
    labels of ``samples`` not listed set to None; only values that differ are written (as :func:`write_fields`
    does for samples), each with its sample id (FiftyOne's fast path), declared in the schema (so a run's
    cleanup can delete them). Returns the number written."""
    written = 0
    for name, new in values.items():
        sample_ids, label_ids, old = samples.values(["id", f"{field}.detections.id", f"{field}.detections.{name}"])
        changed = [{"sample_id": sid, "label_id": lid, "value": new.get(lid)}
                   for sid, lids, befores in zip(sample_ids, label_ids, old, strict=True)
                   for lid, before in zip(lids or [], befores or [None] * len(lids or []), strict=True)
                   if new.get(lid) != before]
        if changed:
            samples._root_dataset.set_label_values(f"{field}.detections.{name}", changed, dynamic=True)
            written += len(changed)
    return written
