"""Misclassified neighbours as a finder: ``mislabel_score`` (0..1, higher = more likely wrong),
``suggested_label`` and the flag ``suspect_label``; the method is :mod:`lookalike.label_issues`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..datasets import values_in_order
from ..exceptions import ConfigError
from ..label_issues import DEFAULT_K, DEFAULT_MAX_RATIO, find_mislabels
from ..probe import out_of_sample_probs
from .base import Finder, Findings, Option, Record

if TYPE_CHECKING:
    import fiftyone as fo

    from ..context import Context
    from ..embedding import Progress


@dataclass
class Suspect(Record):
    """One sample scored by the mislabels finder."""

    id: str
    filepath: str
    label: str
    suggested_label: str
    score: float
    flagged: bool


@dataclass
class BoxSuspect(Suspect):
    """One box scored by the mislabels finder: ``id`` is its label id; ``split`` and ``tags`` its sample's."""

    sample_id: str
    split: str | None
    tags: list[str]


def class_labels(ctx: Context) -> tuple[list[str], np.ndarray]:
    """The classes of the rows' labels (a sample's Classification label field, a box's own label) and each
    row's class number, in the order of ``ctx.ids`` (-1: none); a clear error where samples have no such
    field."""
    import fiftyone as fo

    field = ctx.label_field
    if ctx.patches is None and (field is None or ctx.dataset.get_field(field).document_type is not fo.Classification):
        raise ConfigError(f"dataset {ctx.name!r} has no Classification label field; this needs class labels")
    names = ctx.table["label"]
    classes = sorted({n for n in names if n is not None})
    code = {c: i for i, c in enumerate(classes)}
    return classes, np.array([code.get(n, -1) if n is not None else -1 for n in names], dtype=np.int64)


def class_probs(dataset: fo.Dataset | fo.DatasetView, ids: list[str], field: str, classes: list[str]) -> np.ndarray:
    """Model probabilities per class from a Classification field: its logits when the dataset lists the
    field's classes, else its confidence on the predicted class spread evenly over the others."""
    root = dataset._root_dataset
    if not root.has_field(field):
        raise ConfigError(f"prediction_field {field!r}: dataset {root.name!r} has no field of that name")
    logits_order = root.classes.get(field) or root.default_classes
    if logits_order and root.has_field(f"{field}.logits"):
        (logits,) = values_in_order(dataset, [f"{field}.logits"], ids)
        out = np.zeros((len(ids), len(classes)), np.float32)
        for i, row in enumerate(logits):
            if row is not None:
                e = np.exp(np.asarray(row, np.float64) - np.max(row))
                p = dict(zip(logits_order, e / e.sum(), strict=False))
                out[i] = [p.get(c, 0.0) for c in classes]
            else:
                out[i] = 1 / len(classes)
        return out
    preds, conf = values_in_order(dataset, [f"{field}.label", f"{field}.confidence"], ids)
    out = np.zeros((len(ids), len(classes)), np.float32)
    for i, (label, c) in enumerate(zip(preds, conf, strict=True)):
        c = 1.0 if c is None else float(c)
        out[i] = (1 - c) / max(1, len(classes) - 1)
        if label in classes:
            out[i, classes.index(label)] = c
        else:
            out[i] = 1 / len(classes)
    return out


MISSING_CONFIDENCE = 0.5
MISSING_TAG = "missing-label"
MISSING_VIEW = "lookalike-missing-labels"


@dataclass
class DetectorMatch:
    """A detector's boxes matched to the rows (labelled boxes) of a patch run: per row, the class and confidence
    of its matched prediction (None, NaN: the detector missed it); the label ids and confidences of predictions
    that match no labelled box."""

    label: list[str | None]
    confidence: np.ndarray
    unmatched: list[str]
    unmatched_confidence: np.ndarray


def match_detector(ctx: Context, field: str) -> DetectorMatch:
    """The predictions of a detector's Detections ``field`` matched to the boxes of ``ctx`` (a patch run) by
    :func:`lookalike.box_match.match_predictions`; a one-line error where the field is not such a field."""
    import fiftyone as fo

    from ..box_match import match_predictions

    root = ctx.dataset
    if not root.has_field(field) or getattr(root.get_field(field), "document_type", None) is not fo.Detections:
        found = "no such field" if not root.has_field(field) else "not a Detections field"
        raise ConfigError(f"prediction_field {field!r} of dataset {root.name!r}: {found}; over boxes it must be a "
                          "Detections field of a detector's boxes")
    sample_ids, ids, names, boxes, confidences = ctx.collection.values(
        ["id", *(f"{field}.detections.{p}" for p in ("id", "label", "bounding_box", "confidence"))])
    flat = [(sid, i, n, b, 1.0 if c is None else float(c))
            for sid, *per in zip(sample_ids, ids, names, boxes, confidences, strict=True)
            for i, n, b, c in zip(*(p or [] for p in per), strict=True) if b is not None]
    table = ctx.table
    matching = match_predictions(table["sample_id"], np.array([b or [0, 0, 0, 0] for b in table["box"]]),
                                 [f[0] for f in flat], np.array([f[3] for f in flat]).reshape(-1, 4),
                                 np.array([f[4] for f in flat]))
    return DetectorMatch(label=[flat[p][2] if p >= 0 else None for p in matching.matched],
                         confidence=np.array([flat[p][4] if p >= 0 else np.nan for p in matching.matched]),
                         unmatched=[flat[p][1] for p in matching.unmatched],
                         unmatched_confidence=np.array([flat[p][4] for p in matching.unmatched]))


def detector_probs(ctx: Context, field: str, classes: list[str], missing_confidence: float
                   ) -> tuple[np.ndarray, list[str]]:
    """Class probabilities of the rows (boxes) from a detector's Detections ``field``: each labelled box's matched
    prediction (:func:`match_detector`) as its confidence on the predicted class, the rest spread evenly (NaN
    where none matched: no evidence); and the label ids of confident predictions that match no labelled box."""
    match = match_detector(ctx, field)
    out = np.full((len(match.label), len(classes)), np.nan, np.float32)
    for row, (name, c) in enumerate(zip(match.label, match.confidence, strict=True)):
        if name in classes:
            out[row] = (1 - c) / max(1, len(classes) - 1)
            out[row, classes.index(name)] = c
    missing = [i for i, c in zip(match.unmatched, match.unmatched_confidence, strict=True) if c >= missing_confidence]
    return out, missing


class Mislabels(Finder):
    name = "mislabels"
    label = "lookalike: find mislabels"
    review = "label"
    help = "find samples whose neighbours and a linear probe disagree with their label"
    score_doc = ("0..1, higher = more likely mislabeled (the best other class's support against its label's, "
                 "0.5: flagged)")
    stages = ("probe",)
    score_field = "mislabel_score"
    flag_field = "suspect_label"
    tag = "suspect-label"
    view = "lookalike-suspect-labels"
    lists_samples = True
    on_boxes = True
    options = (
        Option("k", int, DEFAULT_K, "neighbours per sample", minimum=1),
        Option("max_ratio", float, DEFAULT_MAX_RATIO,
               "flag where its label gets under this share of the support the best other class gets"),
        Option("probe", bool, True, "mix in a cross-validated linear probe on the vectors",
               off_help="neighbours only (faster: no probe to fit)"),
        Option("prediction_field", str, None, "a Classification field of model predictions to use as well (with "
               "--patches: a Detections field of a detector's boxes, matched to the labelled ones by IoU)"),
        Option("missing_confidence", float, MISSING_CONFIDENCE, "with --patches and --prediction-field: a detected "
               "box that matches no labelled one is flagged as missing a label from this confidence on"),
    )

    def check(self, options: dict[str, Any]) -> None:
        if not 0 <= options["missing_confidence"] <= 1:
            raise ConfigError(f"missing_confidence must be in [0, 1], got {options['missing_confidence']}")

    def extra_views(self, patches: str | None = None) -> tuple[str, ...]:
        return () if patches is None else (f"{MISSING_VIEW}-{patches}",)

    def extra_tags(self) -> tuple[str, ...]:
        return (MISSING_TAG,)

    def compute(self, ctx: Context, progress: Progress | None = None, **options: Any) -> Findings:
        import fiftyone as fo

        classes, labels = class_labels(ctx)
        graph = ctx.graph(options["k"])
        missing: list[str] = []
        pred = None
        if options["prediction_field"] and ctx.patches:
            pred, missing = detector_probs(ctx, options["prediction_field"], classes, options["missing_confidence"])
        elif options["prediction_field"]:
            pred = class_probs(ctx.collection, ctx.ids, options["prediction_field"], classes)
        probe = out_of_sample_probs(ctx.vectors(), labels, len(classes), progress=progress)[0] \
            if options["probe"] else None
        result = find_mislabels(graph, labels, n_classes=len(classes), pred_probs=pred, probe_probs=probe,
                                max_ratio=options["max_ratio"])
        ids = ctx.ids
        scored = np.flatnonzero(labels >= 0)  # unlabeled samples: no score, no flag
        table = ctx.table
        common = [dict(id=ids[i], filepath=table["filepath"][i], label=classes[labels[i]],
                       suggested_label=classes[result.suggested[i]], score=float(result.score[i]),
                       flagged=bool(result.flag[i])) for i in scored]
        records = sorted((Suspect(**c) if ctx.patches is None else BoxSuspect(
            **c, sample_id=table["sample_id"][i], split=table["split"][i], tags=table["tags"][i])
            for i, c in zip(scored, common, strict=True)), key=lambda s: -s.score)
        summary = result.summary()
        if options["prediction_field"] and ctx.patches:
            summary.update(missing_labels=len(missing), prediction_field=options["prediction_field"])
        return Findings(
            finder=self.name, ids=[ids[i] for i in scored], scores=result.score[scored], flags=result.flag[scored],
            records=records, summary=summary, arrays={"missing": np.array(missing, dtype=object)},
            fields={"suggested_label": (fo.StringField, {ids[i]: classes[result.suggested[i]] for i in scored})})

    def after_write(self, ctx: Context, findings: Findings) -> None:
        """Over boxes with a detector's predictions: its confident boxes that match no labelled one tagged
        ``missing-label`` (on the prediction field) and saved as a patches view of that field."""
        if ctx.patches is None:
            return
        ctx.dataset.untag_labels(MISSING_TAG)
        field = findings.summary.get("prediction_field")
        if not field:
            return
        missing = [str(i) for i in findings.arrays.get("missing", [])]
        ctx.collection.select_labels(ids=missing, fields=field).tag_labels(MISSING_TAG, label_fields=[field])
        view = ctx.dataset.select_labels(ids=missing, fields=field).to_patches(field)
        ctx.dataset.save_view(f"{MISSING_VIEW}-{ctx.patches}", view.sort_by(f"{field}.confidence", reverse=True),
                              overwrite=True)

    def table(self, findings: Findings, limit: int) -> str:
        from ..tables import format_suspects

        missing = findings.summary.get("missing_labels")
        more = f"; {missing} detected boxes match no labelled one (tag {MISSING_TAG!r})" if missing is not None else ""
        return (f"{format_suspects([s for s in findings.records if s.flagged][:limit])}\n{findings.flagged} of "
                f"{len(findings.ids)} labeled rows flagged (tag {self.tag!r}, view {self.view!r}){more}")

    def message(self, findings: Findings) -> str:
        return f"{findings.flagged} suspected mislabels of {len(findings.ids)}"
