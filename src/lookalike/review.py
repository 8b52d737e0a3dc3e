"""Decisions on the findings, recorded on the dataset and undoable: the App panel's buttons, also for Python.

- A suspected mislabel is **accepted** (its label becomes the suggested one; the old label is kept in
  ``label_before_review``) or **dismissed** (the label stays). Either way the sample gets the tag
  ``label-reviewed`` and ``review`` says which. :func:`undo` restores the label and clears both.
- A duplicate group's keep plan is **applied**: the members to drop get the tag ``remove``, the kept one
  ``keep``. Nothing is deleted: :func:`kept_view` (saved as ``lookalike-kept``) is the dataset without
  the ``remove`` samples, ready for ``view.export(...)``, and :func:`undo` clears the tags.
- A flagged sample of any other finder (an image-quality issue, an outlier) is **kept** or **removed**
  (:func:`decide`): the same ``keep`` / ``remove`` tags, so the kept view leaves it out too.
- A suspected box label (``mislabels --patches FIELD``) is accepted, dismissed or undone the same way, on the
  box itself: ``patches=FIELD`` and the box's label id; the box keeps ``label_before_review`` and ``review``
  as attributes and gets the label tag ``label-reviewed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import Config, load_config
from .datasets import find_label_field
from .exceptions import ConfigError

if TYPE_CHECKING:
    import fiftyone as fo

REVIEW_FIELD = "review"
BEFORE_FIELD = "label_before_review"
REVIEWED_TAG = "label-reviewed"
KEEP_TAG = "keep"
REMOVE_TAG = "remove"
KEPT_VIEW = "lookalike-kept"


def _label_field(dataset: fo.Dataset, config: Config | None) -> str:
    field = find_label_field(dataset, (config or load_config()).dataset.label_field)
    if field is None:
        raise ConfigError(f"dataset {dataset.name!r} has no label field to review")
    return field


def _declare(dataset: fo.Dataset) -> None:
    import fiftyone as fo

    for name in (REVIEW_FIELD, BEFORE_FIELD):
        if not dataset.has_field(name):
            dataset.add_sample_field(name, fo.StringField)


def _box(dataset: fo.Dataset, patches: str, label_id: str) -> tuple[fo.Sample, fo.Detection]:
    """The sample holding box ``label_id`` of Detections field ``patches``, and the box."""
    try:
        sample = dataset.select_labels(ids=[label_id], fields=patches).first()
    except (ValueError, Exception) as e:  # no such label: an empty view, or an id that is no ObjectId
        raise ConfigError(f"no box {label_id!r} in field {patches!r} of dataset {dataset.name!r}") from e
    box = next((d for d in sample[patches].detections if d.id == label_id), None)
    if box is None:
        raise ConfigError(f"no box {label_id!r} in field {patches!r} of dataset {dataset.name!r}")
    # The sample as stored (a view's sample would save only what the view shows of it).
    sample = dataset[sample.id]
    return sample, next(d for d in sample[patches].detections if d.id == label_id)


def _review_box(dataset: fo.Dataset, patches: str, label_id: str, decision: str | None) -> str | None:
    """Accept (the suggested label), dismiss, or undo (``None``) a box's review; returns its label."""
    sample, box = _box(dataset, patches, label_id)
    before = box[REVIEW_FIELD] if box.has_field(REVIEW_FIELD) else None
    if decision == "accepted":
        suggested = box["suggested_label"] if box.has_field("suggested_label") else None
        if not suggested:
            raise ConfigError(f"box {label_id} has no suggested label; run `lookalike mislabels --patches {patches}`")
        if before != "accepted":  # accepting twice keeps the first old label
            box[BEFORE_FIELD] = box.label
        box.label = suggested
    elif before == "accepted":  # dismissed or undone: its label back
        box.label = box[BEFORE_FIELD]
    box[REVIEW_FIELD] = decision
    if decision is None:
        box[BEFORE_FIELD] = None
    box.tags = sorted({*box.tags, REVIEWED_TAG}) if decision else [t for t in box.tags if t != REVIEWED_TAG]
    sample.save()
    return str(box.label)


def accept_label(dataset: fo.Dataset, sample_id: str, config: Config | None = None, patches: str | None = None,
                 suggested: str | None = None) -> str:
    """Relabel a sample (with ``patches``: the box of that label id) with ``suggested``, by default its
    ``suggested_label`` (the mislabels finder's); returns the new label."""
    if patches:
        return str(_review_box(dataset, patches, sample_id, "accepted"))
    field = _label_field(dataset, config)
    sample = dataset[sample_id]
    if suggested is None:
        suggested = sample["suggested_label"] if dataset.has_field("suggested_label") else None
    if not suggested:
        raise ConfigError(f"sample {sample_id} has no suggested label; run `lookalike mislabels` first")
    _declare(dataset)
    if sample[REVIEW_FIELD] != "accepted":  # accepting twice keeps the first old label
        sample[BEFORE_FIELD] = sample[field].label
    sample[field].label = suggested
    sample[REVIEW_FIELD] = "accepted"
    sample.tags = sorted({*sample.tags, REVIEWED_TAG})
    sample.save()
    return str(suggested)


def dismiss_label(dataset: fo.Dataset, sample_id: str, config: Config | None = None, patches: str | None = None
                  ) -> None:
    """Mark a suspect (with ``patches``: the box of that label id) reviewed with its label kept."""
    if patches:
        _review_box(dataset, patches, sample_id, "dismissed")
        return
    if dataset.has_field(REVIEW_FIELD) and dataset[sample_id][REVIEW_FIELD] == "accepted":
        undo(dataset, sample_id, config)  # dismissing an accepted one puts its label back
    _declare(dataset)
    sample = dataset[sample_id]
    sample[REVIEW_FIELD] = "dismissed"
    sample.tags = sorted({*sample.tags, REVIEWED_TAG})
    sample.save()


def apply_keep_plan(dataset: fo.Dataset, group: int) -> tuple[list[str], list[str]]:
    """Tag duplicate group ``group``'s kept member ``keep`` and the others ``remove``; returns (kept, removed) ids."""
    from fiftyone import ViewField as F

    members = dataset.match(F("duplicate_group") == group) if dataset.has_field("duplicate_group") else None
    if members is None or not len(members):
        raise ConfigError(f"no duplicate group {group}; run `lookalike duplicates` first")
    ids, keep = members.values("id"), members.values("duplicate_keep")
    kept = [i for i, k in zip(ids, keep, strict=True) if k]
    removed = [i for i, k in zip(ids, keep, strict=True) if not k]
    _tag(dataset, kept, removed)
    return kept, removed


def decide(dataset: fo.Dataset, sample_id: str, keep: bool) -> None:
    """Keep a flagged sample (tag ``keep``) or mark it for removal (tag ``remove``; nothing is deleted)."""
    _tag(dataset, [sample_id] if keep else [], [] if keep else [sample_id])


def _tag(dataset: fo.Dataset, kept: list[str], removed: list[str]) -> None:
    for ids, tag, other in ((kept, KEEP_TAG, REMOVE_TAG), (removed, REMOVE_TAG, KEEP_TAG)):
        if ids:
            dataset.select(ids).untag_samples(other)
            dataset.select(ids).tag_samples(tag)
    dataset.save_view(KEPT_VIEW, kept_view(dataset), overwrite=True)


def kept_view(dataset: fo.Dataset) -> fo.DatasetView:
    """The dataset without the samples a keep plan marked ``remove``."""
    return dataset.match_tags(REMOVE_TAG, bool=False)


def undo(dataset: fo.Dataset, sample_id: str, config: Config | None = None, patches: str | None = None) -> None:
    """Take back every decision on a sample (with ``patches``: on the box of that label id): its label before
    review, and no review or keep/remove tags."""
    if patches:
        _review_box(dataset, patches, sample_id, None)
        return
    sample = dataset[sample_id]
    if dataset.has_field(REVIEW_FIELD) and sample[REVIEW_FIELD] == "accepted":
        sample[_label_field(dataset, config)].label = sample[BEFORE_FIELD]
    if dataset.has_field(REVIEW_FIELD):
        sample[REVIEW_FIELD] = None
        sample[BEFORE_FIELD] = None
    sample.tags = [t for t in sample.tags if t not in (REVIEWED_TAG, KEEP_TAG, REMOVE_TAG)]
    sample.save()
