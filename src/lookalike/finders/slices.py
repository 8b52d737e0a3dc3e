"""Failure slices as a finder: among the samples with a label and a model's prediction, groups of look-alike
samples where the model fails far more often than elsewhere (``slice``: 0, 1, ... most harmful first, -1 none;
``slice_score``: the model's error rate around the sample; the flag ``in_slice``; a saved view per slice,
``lookalike-slice-N``), and whose mistake each error is (``error_kind``: label, model or ambiguous). The
method is :mod:`lookalike.failure_slices`.

Over the boxes of a patch run the rows are the labelled boxes and the model is a detector: its boxes are
matched to them by IoU (:func:`.mislabels.match_detector`), so a labelled box is predicted right, as another
class, or ``(missed)``; its boxes that match no labelled one are its false positives, counted and saved as a
patches view (they have no vectors of their own to slice)."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..display import grid, tile
from ..exceptions import ConfigError, LookalikeError
from ..failure_slices import DEFAULT_K, DEFAULT_MAX_SLICES, DEFAULT_MIN_SIZE, KINDS, error_kinds, find_slices
from ..label_issues import DEFAULT_K as GRAPH_K
from .base import Finder, Findings, Option, Record
from .mislabels import class_labels, match_detector

if TYPE_CHECKING:
    from ..context import Context
    from ..embedding import Progress

SLICE_VIEW = "lookalike-slice"  # + "-N": one saved view per slice (over boxes, + "-N-FIELD")
FALSE_POSITIVE_VIEW = "lookalike-false-positives"  # + "-FIELD": a detector's boxes that match no labelled one
MISSED = "(missed)"  # what a detector "predicted" for a labelled box it matched no box to
MOST_SLICES = 50  # views a run may save (and a rerun or cleanup removes)
DEFAULT_VOCAB = Path(__file__).resolve().parent.parent / "vocab" / "slices.txt"
DESCRIBED_BY = 3  # phrases in a slice's description
STRIP = 8  # thumbnails a slice shows in Jupyter


@dataclass
class FailureSlice(Record):
    """One failure slice: its figures, and every member (dicts: id, filepath, label, prediction, error_kind,
    score), most typical first."""

    slice: int
    size: int
    errors: int
    error_rate: float
    lift: float | None
    label: str | None
    prediction: str | None
    description: str
    error_kinds: dict[str, int]
    members: list[dict[str, Any]]

    def rows(self) -> list[dict[str, Any]]:
        """One row for the slice (``to_pandas``: a table of slices)."""
        row = {k: v for k, v in asdict(self).items() if k not in ("members", "error_kinds")}
        return [{**row, **{f"{k}_errors": n for k, n in self.error_kinds.items()}}]

    def html(self, budget: int) -> tuple[str, int]:
        """A line of figures, then a strip of its most typical members."""
        shown = self.members[:min(STRIP, budget)]
        head = (f"<div style='font-size:12px;margin-top:6px'><b>slice {self.slice}</b>: {self.size} samples, "
                f"{self.errors} errors ({self.error_rate:.0%}, {_times(self.lift)} the rest); mostly "
                f"{html.escape(str(self.label))} &rarr; {html.escape(str(self.prediction))}"
                + (f"; {html.escape(self.description)}" if self.description else "") + "</div>")
        tiles = [tile({"id": m["id"], "label": m["label"], "suggested_label": m["prediction"], "score": m["score"]},
                      m["filepath"]) for m in shown]
        return head + grid(tiles, self.size, len(shown)), len(shown)


class Slices(Finder):
    name = "slices"
    label = "lookalike: find failure slices"
    review = "slice"
    app_panel = "lookalike_review"
    help = "find groups of look-alike samples where a model's predictions fail, and whose mistake each error is"
    on_boxes = True
    score_field = "slice_score"
    flag_field = "in_slice"
    score_doc = ("0..1, the model's error rate among the sample and its k nearest evaluated samples (the flag "
                 "in_slice: a member of a failure slice)")
    options = (
        Option("prediction_field", str, None, "the model's predictions: a Classification field (with --patches: "
               "a Detections field of a detector's boxes, matched to the labelled ones by IoU)"),
        Option("k", int, DEFAULT_K, "nearest evaluated samples whose errors make a sample's score", minimum=2),
        Option("min_size", int, DEFAULT_MIN_SIZE, "the fewest samples a slice has", minimum=2),
        Option("max_slices", int, DEFAULT_MAX_SLICES, f"the most slices kept (at most {MOST_SLICES})", minimum=1),
        Option("vocab", str, None, "with a CLIP run: a text file of phrases (one a line) to describe slices by; "
               "default: lookalike's own"),
    )

    def check(self, options: dict[str, Any]) -> None:
        if not options["prediction_field"]:
            raise ConfigError("give the model's predictions: --prediction-field FIELD (a Classification field)")
        if options["max_slices"] > MOST_SLICES:
            raise ConfigError(f"max_slices must be at most {MOST_SLICES}, got {options['max_slices']}")
        if options["vocab"] and not Path(options["vocab"]).is_file():
            raise ConfigError(f"vocab {options['vocab']!r} is not a file")

    def extra_views(self, patches: str | None = None) -> tuple[str, ...]:
        views = tuple(slice_view(n, patches) for n in range(MOST_SLICES))
        return views if patches is None else (*views, f"{FALSE_POSITIVE_VIEW}-{patches}")

    def compute(self, ctx: Context, progress: Progress | None = None, **options: Any) -> Findings:
        import fiftyone as fo

        from ..context import Context
        from ..engines import engine_of
        from ..graph import knn

        classes, labels = class_labels(ctx)
        field = options["prediction_field"]
        predicted, false_positives = _predictions(ctx, field)
        names = classes + sorted({p for p in predicted if p is not None and p not in classes})
        code = {c: i for i, c in enumerate(names)}
        predictions = np.array([code[p] if p is not None else -1 for p in predicted], dtype=np.int64)
        evaluated = np.flatnonzero((labels >= 0) & (predictions >= 0))
        what = "the view" if ctx.is_view else f"dataset {ctx.name!r}"
        if not len(evaluated):
            raise ConfigError(f"no embedded sample of {what} has both a label and a prediction in {field!r}")
        if not (predictions[evaluated] < len(classes)).any():
            raise ConfigError(f"the predictions in {field!r} share no class with the labels (labels: "
                              f"{', '.join(classes[:5])}; predictions: {', '.join(names[len(classes):][:5])})")
        ids = [ctx.ids[r] for r in evaluated]
        truth, guess = labels[evaluated], predictions[evaluated]
        errors = truth != guess
        vectors = np.asarray(ctx.vectors()[evaluated], dtype=np.float32)
        empty = np.zeros(len(ids))
        summary: dict[str, Any] = {"prediction_field": field, "evaluated": len(ids),
                                   "left_out": len(ctx.ids) - len(ids), "errors": int(errors.sum()),
                                   "error_rate": float(errors.mean()), "slices": 0}
        arrays = {}
        if ctx.patches is not None:  # how a detector's errors split
            missed = guess == code.get(MISSED, -1)
            summary.update(patches=ctx.patches, missed=int(missed.sum()), wrong_class=int((errors & ~missed).sum()),
                           false_positives=len(false_positives))
            arrays["false_positives"] = np.array(false_positives, dtype=object)
        if not errors.any() or len(ids) < 3:
            summary["reason"] = ("no errors: every prediction matches its label" if not errors.any() else
                                 f"only {len(ids)} evaluated samples")
            return Findings(finder=self.name, ids=ids, scores=empty, flags=empty.astype(bool), summary=summary,
                            arrays=arrays, fields={"slice": (fo.IntField, dict.fromkeys(ids, -1)),
                                    "error_kind": (fo.StringField, dict.fromkeys(ids))})
        config = ctx.config
        k = min(options["k"], len(ids) - 1)
        graph = ctx.graph(k) if len(ids) == len(ctx.ids) else knn(  # the stored graph where every row counts
            vectors, k, config.index.exact_graph_max, config.index.graph_precision, engine_of(config))
        result = find_slices(vectors, graph, errors, truth, guess, options["min_size"], options["max_slices"])
        # Whose mistake: the whole run's neighbours vote (a test sample's training neighbours count).
        whole = Context.of(ctx.dataset, ctx.model, config, ctx.patches) if ctx.is_view else ctx
        position = {sid: n for n, sid in enumerate(whole.ids)}
        every = predicted if whole is ctx else _predictions(whole, field)[0]
        whole_labels, whole_guesses = (np.array([code.get(c, -1) if c is not None else -1 for c in column])
                                       for column in (whole.table["label"], every))
        kinds = error_kinds(whole.graph(GRAPH_K), whole_labels, whole_guesses, np.array([position[i] for i in ids]))
        described = _descriptions(ctx, vectors, result.slices, options["vocab"])
        table = ctx.table

        def member(m: int) -> dict[str, Any]:
            box = {} if ctx.patches is None else {"sample_id": table["sample_id"][evaluated[m]]}
            return {"id": ids[m], **box, "filepath": table["filepath"][evaluated[m]], "label": names[truth[m]],
                    "prediction": names[guess[m]], "error_kind": kinds[m] or None, "score": float(result.rate[m])}

        records = [FailureSlice(
            slice=n, size=len(s.members), errors=s.errors, error_rate=s.error_rate, lift=s.lift,
            label=names[s.label] if s.label >= 0 else None,
            prediction=names[s.prediction] if s.prediction >= 0 else None, description=described[n],
            error_kinds=_count(kinds[s.members]), members=[member(int(m)) for m in s.members])
            for n, s in enumerate(result.slices)]
        summary.update(slices=len(records), error_kinds=_count(kinds),
                       slice_list=[{k: v for k, v in r.to_dict().items() if k != "members"} for r in records],
                       error_kinds_per_class={names[c]: _count(kinds[truth == c]) for c in np.unique(truth[errors])})
        fields = {"slice": (fo.IntField, dict(zip(ids, result.slice.tolist(), strict=True))),
                  "error_kind": (fo.StringField, {i: k or None for i, k in zip(ids, kinds, strict=True)})}
        return Findings(finder=self.name, ids=ids, scores=result.rate, flags=result.slice >= 0, records=records,
                        summary=summary, fields=fields, arrays=arrays)

    def after_write(self, ctx: Context, findings: Findings) -> None:
        """A saved view per slice, most typical first (over boxes, a patches view); views of slices a rerun no
        longer makes go. Over boxes, a detector's false positives as a patches view, most confident first."""
        boxes, ds = ctx.patches, ctx.dataset
        for record in findings.records:
            ds.save_view(slice_view(record.slice, boxes), ctx.rows_view([m["id"] for m in record.members]),
                         overwrite=True)
        for n in range(len(findings.records), MOST_SLICES):
            if ds.has_saved_view(slice_view(n, boxes)):
                ds.delete_saved_view(slice_view(n, boxes))
        if boxes is not None:
            field = findings.summary["prediction_field"]
            wrong = [str(i) for i in findings.arrays.get("false_positives", [])]
            ds.save_view(f"{FALSE_POSITIVE_VIEW}-{boxes}", ds.select_labels(ids=wrong, fields=field).to_patches(
                field).sort_by(f"{field}.confidence", reverse=True), overwrite=True)

    def json(self, findings: Findings, everything: bool = False) -> Any:
        s = findings.summary
        detector = {k: s[k] for k in ("missed", "wrong_class", "false_positives") if k in s}
        return {"slices": [r.to_dict() for r in findings.records],
                "error_kinds": s.get("error_kinds", _count(np.array([], dtype=object))),
                "error_kinds_per_class": s.get("error_kinds_per_class", {}), **detector}

    def table(self, findings: Findings, limit: int) -> str:
        s = findings.summary
        lines = [f"  {'slice':>5} {'size':>6} {'errors':>6} {'rate':>6} {'lift':>6}  {'label -> prediction':<28} "
                 "label/model/ambiguous  description"] if findings.records else []
        for r in findings.records[:limit]:
            k = r.error_kinds
            lines.append(f"  {r.slice:>5} {r.size:>6} {r.errors:>6} {r.error_rate:>6.2f} {_times(r.lift):>6}  "
                         f"{f'{r.label} -> {r.prediction}':<28} {k['label']}/{k['model']}/{k['ambiguous']:<16} "
                         f"{r.description}")
        if "reason" in s:
            lines.append(f"no slices: {s['reason']} ({s['evaluated']} evaluated samples)")
            return "\n".join(lines)
        k = s["error_kinds"]
        lines.append(f"{s['slices']} failure slices among {s['evaluated']} evaluated samples ({s['errors']} errors, "
                     f"rate {s['error_rate']:.3f}; {s['left_out']} without a label or prediction left out); errors: "
                     f"{k['label']} likely wrong labels, {k['model']} model errors, {k['ambiguous']} ambiguous "
                     f"(field 'error_kind'; views {slice_view('N', s.get('patches'))})")
        if "missed" in s:
            lines.append(f"detector: {s['missed']} labelled boxes missed, {s['wrong_class']} of another class, "
                         f"{s['false_positives']} of its boxes match no labelled one "
                         f"(view {FALSE_POSITIVE_VIEW}-{s['patches']})")
        return "\n".join(lines)

    def message(self, findings: Findings) -> str:
        s = findings.summary
        return (f"{s['slices']} failure slices among {s['evaluated']} samples" if "reason" not in s
                else f"no slices: {s['reason']}")


def slice_view(n: int | str, patches: str | None = None) -> str:
    """The saved view of slice ``n``: of samples, or (a patches view) of the boxes of ``patches``."""
    return f"{SLICE_VIEW}-{n}" if patches is None else f"{SLICE_VIEW}-{n}-{patches}"


def _times(lift: float | None) -> str:
    return "inf" if lift is None else f"{lift:.1f}x"


def _count(kinds: np.ndarray) -> dict[str, int]:
    return {k: int(np.count_nonzero(kinds == k)) for k in KINDS}


def _predictions(ctx: Context, field: str) -> tuple[list[str | None], list[str]]:
    """The predicted class of each row (``ctx.ids`` order) from a Classification field, or over boxes from a
    detector's Detections field (:data:`MISSED` where it matched no box to the row), and the detector's boxes
    that match no labelled one (none for a classifier); a one-line error where the field is missing or of
    another kind."""
    import fiftyone as fo

    from ..datasets import values_in_order

    if ctx.patches is not None:
        match = match_detector(ctx, field)
        return [MISSED if name is None else name for name in match.label], match.unmatched
    root = ctx.dataset
    kind = getattr(root.get_field(field), "document_type", None) if root.has_field(field) else None
    if kind is not fo.Classification:
        found = "no such field" if not root.has_field(field) else f"a {getattr(kind, '__name__', 'non-label')} field"
        raise ConfigError(f"prediction_field {field!r} of dataset {root.name!r}: {found}; slices need a "
                          "Classification field of a model's predictions (a detector's boxes: run on the patches "
                          "of the labelled boxes, --patches FIELD)")
    (predicted,) = values_in_order(ctx.collection, [f"{field}.label"], ctx.ids)
    return list(predicted), []


def _descriptions(ctx: Context, vectors: np.ndarray, slices: list[Any], vocab: str | None) -> list[str]:
    """Each slice's best phrases by its mean vector minus the rest's (Domino's description), with a run whose
    model has a text tower; empty strings without one."""
    from .tags import vocabulary

    if not slices:
        return []
    try:
        embedder = ctx.run.embedder(ctx.config)
    except LookalikeError:  # imported vectors: no model
        return [""] * len(slices)
    if not embedder.has_text:
        return [""] * len(slices)
    phrases = vocabulary([vocab or str(DEFAULT_VOCAB)])
    text = embedder.embed_text(phrases)
    total = vectors.sum(axis=0)
    out = []
    for s in slices:
        inside = vectors[s.members].sum(axis=0)
        rest = max(1, len(vectors) - len(s.members))
        direction = inside / len(s.members) - (total - inside) / rest
        best = np.argsort(-(text @ direction), kind="stable")[:DESCRIBED_BY]
        out.append("; ".join(phrases[b] for b in best))
    return out
