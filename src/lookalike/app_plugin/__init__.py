"""The lookalike FiftyOne plugin: an operator for every registered finder (its form made from the finder's
options; it runs on the App's current view), one for similarity search, and a panel to review what they found.

FiftyOne loads this folder as a plugin (``lookalike app`` links it into the plugins directory; see
:mod:`lookalike.app`). Every operator calls the same Python API as the CLI, so the App, the CLI and
notebooks give the same answers. Long runs go to FiftyOne's delegated execution (``fiftyone delegated
launch``) above ``DELEGATE_ABOVE`` samples, or when asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fiftyone.operators as foo
import fiftyone.operators.types as types

import lookalike
from lookalike import api, review
from lookalike.finders import FINDERS, Finder, Option
from lookalike.finders.slices import slice_view

DELEGATE_ABOVE = 20_000  # samples; the graph alone takes about a minute beyond (benchmarks/speed.py)
SHOWN = 20  # findings listed in each of the review panel's lists


def _progress(ctx: Any, fraction: float, label: str) -> Any:
    """A progress update: through the delegated run's record, or a trigger the App shows at once."""
    if ctx.delegated:
        ctx.set_progress(progress=fraction, label=label)
        return None
    return ctx.ops.set_progress(progress=fraction, label=label)


def _report(ctx: Any, done: str, view: str | None = None, message: str | None = None,
            panel: str | None = None) -> Iterator[Any]:
    """An operator's end: in the App, the saved ``view`` the API just wrote (with the fields it added), a
    ``panel`` and a ``message``; then the last progress, ``done``."""
    if not ctx.delegated:
        ctx.dataset.reload()  # the server's copy predates the API's writes
        yield ctx.ops.reload_dataset()
        if view and ctx.dataset.has_saved_view(view):  # a run that found nothing may have saved none
            yield ctx.ops.set_view(view=ctx.dataset.load_saved_view(view))
        if panel:
            yield ctx.ops.open_panel(panel, layout="horizontal")
        if message:
            yield ctx.ops.notify(message, variant="success")
    yield _progress(ctx, 1.0, done)


class _Finder(foo.Operator):
    """Shared by the finders: a form (``add_inputs``), progress as a generator, and delegation on request
    (``delegable``) or above ``DELEGATE_ABOVE`` samples."""

    operator_name = ""
    operator_label = ""
    delegable = True

    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(name=self.operator_name, label=self.operator_label, dynamic=True,
                                  execute_as_generator=True, allow_delegated_execution=self.delegable)

    def add_inputs(self, inputs: Any, ctx: Any) -> None:
        """The operator's own fields."""

    def resolve_input(self, ctx: Any) -> types.Property:
        inputs = types.Object()
        self.add_inputs(inputs, ctx)
        if self.delegable:
            inputs.bool("delegate", default=len(ctx.dataset) > DELEGATE_ABOVE, label="Run in the background",
                        description="delegated execution (needs `fiftyone delegated launch`); results land as "
                                    "saved views")
        return types.Property(inputs, view=types.View(label=self.operator_label))

    def resolve_delegation(self, ctx: Any) -> bool:
        return self.delegable and bool(ctx.params.get("delegate", len(ctx.dataset) > DELEGATE_ABOVE))


class FindSimilar(_Finder):
    operator_name, operator_label = "find_similar", "lookalike: find similar"
    delegable = False  # one index query

    def add_inputs(self, inputs: Any, ctx: Any) -> None:
        modes = (["selected"] if ctx.selected else []) + ["text", "image"]
        inputs.enum("query", modes, default=modes[0], label="Query", view=types.RadioGroup(),
                    description="the selected samples, a text prompt, or an image file")
        chosen = ctx.params.get("query", modes[0])
        if chosen == "text":
            inputs.str("text", required=True, label="Text prompt (CLIP models)")
        elif chosen == "image":
            inputs.str("image", required=True, label="Image file path")
        inputs.int("k", default=25, min=1, label="How many")
        for name in ("label", "split", "tag"):
            inputs.str(name, label=f"Only this {name}", description="filter applied inside Qdrant")

    def execute(self, ctx: Any) -> Iterator[Any]:
        p = ctx.params
        yield _progress(ctx, 0.1, "searching the index")
        filters: dict[str, Any] = {name: p.get(name) or None for name in ("label", "split", "tag")}
        query: dict[str, Any] = {}
        if p.get("query", "selected") == "selected":
            selected = list(ctx.selected)
            query = {"sample": selected[0]} if len(selected) == 1 else {"like": selected}
        elif p.get("query") == "text":
            query = {"text": p["text"]}
        else:
            query = {"image": p["image"]}
        matches = lookalike.similar(ctx.view, k=int(p.get("k", 25)), **query, **filters)
        yield from _report(ctx, f"{len(matches)} found", view=api.SIMILAR_VIEW)


def _inputs(inputs: Any, option: Option) -> None:
    """A finder's option as a form input."""
    label = option.name.replace("_", " ").capitalize()
    if option.choices:
        inputs.enum(option.name, list(option.choices), default=option.default, label=label, description=option.help)
        return
    add = {bool: inputs.bool, int: inputs.int, float: inputs.float}.get(option.kind, inputs.str)
    bound = {} if option.minimum is None else {"min": option.minimum}
    add(option.name, default=option.default, label=label,
        description=option.help + (" (comma-separated)" if option.many else ""), **bound)


def _value(option: Option, raw: Any) -> Any:
    if raw in (None, ""):
        return None
    if option.many:
        return [w.strip() for w in str(raw).split(",") if w.strip()] if isinstance(raw, str) else list(raw)
    return option.kind(raw)


class _FinderOperator(_Finder):
    """The operator of one registered finder, made by :func:`_operator_for`: its form from the finder's
    options, run on the App's current view."""

    finder: Finder

    def add_inputs(self, inputs: Any, ctx: Any) -> None:
        for option in self.finder.options:
            _inputs(inputs, option)

    def execute(self, ctx: Any) -> Iterator[Any]:
        finder = self.finder
        yield _progress(ctx, 0.1, f"{finder.name}: working")
        options = {o.name: _value(o, ctx.params.get(o.name)) for o in finder.options}
        findings = lookalike.find(finder.name, ctx.view, **options)
        message = finder.message(findings)
        yield from _report(ctx, message, view=finder.view or next(iter(finder.extra_views()), None),
                           message=f"lookalike {finder.name}: {message}", panel=finder.app_panel)


def _operator_for(finder: Finder) -> type[_FinderOperator]:
    """An operator class for a registered finder (FiftyOne registers classes)."""
    return type(f"Find_{finder.name}", (_FinderOperator,), {
        "finder": finder, "operator_name": finder.operator, "operator_label": finder.label})


class ReviewPanel(foo.Panel):
    """A list per registered finder that has a decision (``Finder.review``): suspected mislabels (accept =
    relabel, dismiss = keep the label), duplicate groups (apply the keep plan as tags), flagged samples of the
    other finders (keep or remove, as tags); every decision is recorded on the sample and can be undone."""

    @property
    def config(self) -> foo.PanelConfig:
        return foo.PanelConfig(name="lookalike_review", label="lookalike review", icon="fact_check")

    def on_load(self, ctx: Any) -> None:
        self._refresh(ctx)

    def _refresh(self, ctx: Any) -> None:
        ds = ctx.dataset
        ctx.panel.state.sections = [section for finder in FINDERS.values() if finder.review
                                    for section in ([_section(ds, finder)] if finder.review != "slice"
                                                    else _slice_sections(ds, finder)) if section is not None] + [
            _box_section(ds, finder, field) for finder in FINDERS.values() if finder.review == "label"
            for field in _reviewed_fields(ds, finder)]
        decided = _decided_boxes(ds)
        if ds.has_field(review.REVIEW_FIELD):
            decided = [{"id": i, "filepath": f.rsplit("/", 1)[-1], "review": r}
                       for i, f, r in zip(*ds.exists(review.REVIEW_FIELD).values(
                           ["id", "filepath", review.REVIEW_FIELD]), strict=True)]
        decided += [{"id": i, "filepath": f.rsplit("/", 1)[-1], "review": ", ".join(t for t in tags if t in DECISIONS)}
                    for i, f, tags in zip(*ds.match_tags(list(DECISIONS)).limit(SHOWN).values(
                        ["id", "filepath", "tags"]), strict=True)]
        ctx.panel.state.decided = decided

    def accept(self, ctx: Any) -> None:
        new = review.accept_label(ctx.dataset, ctx.params["id"], patches=ctx.params.get("patches"),
                                  suggested=ctx.params.get("suggested"))
        ctx.ops.notify(f"relabelled as {new}", variant="success")
        self._after(ctx)

    def dismiss(self, ctx: Any) -> None:
        review.dismiss_label(ctx.dataset, ctx.params["id"], patches=ctx.params.get("patches"))
        self._after(ctx)

    def keep(self, ctx: Any) -> None:
        review.decide(ctx.dataset, ctx.params["id"], keep=True)
        self._after(ctx)

    def remove(self, ctx: Any) -> None:
        review.decide(ctx.dataset, ctx.params["id"], keep=False)
        ctx.ops.notify(f"tagged {review.REMOVE_TAG!r} (nothing deleted)", variant="success")
        self._after(ctx)

    def undo(self, ctx: Any) -> None:
        review.undo(ctx.dataset, ctx.params["id"], patches=ctx.params.get("patches"))
        self._after(ctx)

    def apply_plan(self, ctx: Any) -> None:
        kept, removed = review.apply_keep_plan(ctx.dataset, int(ctx.params["group"]))
        ctx.ops.notify(f"tagged {len(kept)} keep, {len(removed)} remove (nothing deleted)", variant="success")
        self._after(ctx)

    def show(self, ctx: Any) -> None:
        from fiftyone import ViewField as F

        if "slice" in ctx.params:  # its saved view, most typical first
            ctx.ops.set_view(view=ctx.dataset.load_saved_view(slice_view(int(ctx.params["slice"]),
                                                                         ctx.params.get("patches"))))
        elif "group" in ctx.params:
            ctx.ops.set_view(view=ctx.dataset.match(F("duplicate_group") == int(ctx.params["group"])))
        elif ctx.params.get("patches"):  # the box, as a patch
            field = ctx.params["patches"]
            ctx.ops.set_view(view=ctx.dataset.select_labels(ids=[ctx.params["id"]], fields=field).to_patches(field))
        else:
            ctx.ops.set_view(view=ctx.dataset.select(ctx.params["id"]))

    def _after(self, ctx: Any) -> None:
        ctx.ops.reload_dataset()  # the grid shows the new labels and tags (reload_samples keeps old tiles)
        self._refresh(ctx)

    def render(self, ctx: Any) -> types.Property:
        panel = types.Object()
        for section in ctx.panel.state.sections or []:
            name, items = section["name"], section["items"]
            panel.md(f"**{section['title']}: {section['open']} open**", name=f"{name}_title")
            for n, item in enumerate(items):
                row = panel.h_stack(f"{name}_{n}", align_y="center")
                row.md(item["text"], name="text")
                if section["kind"] == "group":
                    target = {"group": item["group"]}
                    row.btn("apply", label="Apply keep plan", on_click=self.apply_plan, params=target)
                elif section["kind"] == "slice":
                    target = {"slice": item["slice"], **({"patches": item["patches"]} if "patches" in item else {})}
                elif section["kind"] == "label":
                    target = {"id": item["id"], **{key: item[key] for key in ("patches", "suggested") if key in item}}
                    row.btn("accept", label="Accept", on_click=self.accept, params=target, variant="contained")
                    row.btn("dismiss", label="Dismiss", on_click=self.dismiss, params=target)
                else:
                    target = {"id": item["id"]}
                    row.btn("keep", label="Keep", on_click=self.keep, params=target)
                    row.btn("remove", label="Remove", on_click=self.remove, params=target)
                row.btn("show", label="Show", on_click=self.show, params=target)
        decided = ctx.panel.state.decided or []
        if decided:
            panel.md(f"**Reviewed: {len(decided)}**", name="decided_title")
            for n, d in enumerate(decided):
                row = panel.h_stack(f"decided_{n}", align_y="center")
                row.md(f"`{d['filepath']}` {d['review']}", name="text")
                row.btn("undo", label="Undo", on_click=self.undo,
                        params={"id": d["id"], **({"patches": d["patches"]} if "patches" in d else {})})
        return types.Property(panel, view=types.GridView(orientation="vertical", padding=2))


DECISIONS = (review.KEEP_TAG, review.REMOVE_TAG)
TITLES = {"label": "Suspected mislabels", "group": "Duplicate groups"}


def _section(ds: Any, finder: Finder) -> dict[str, Any] | None:
    """The review panel's list for one finder, or None where it has not run on this dataset: the open
    findings (not yet decided), most severe first, at most SHOWN."""
    from fiftyone import ViewField as F

    kind = finder.review
    if kind == "group":
        if not ds.has_field("duplicate_group"):
            return None
        counts = sorted(ds.exists("duplicate_group").count_values("duplicate_group").items())
        items = [{"group": g, "text": f"group {g}: {n} images"} for g, n in counts[:SHOWN]]
        return {"name": finder.name, "title": TITLES[kind], "kind": kind, "open": len(counts), "items": items}
    if not ds.has_field(finder.flag):
        return None
    flagged = ds.match(F(finder.flag) == True).sort_by(finder.score, reverse=True)  # noqa: E712 (a query)
    if kind == "label":
        flagged = flagged.exists(review.REVIEW_FIELD, False) if ds.has_field(review.REVIEW_FIELD) else flagged
        field = review._label_field(ds, None)
        ids, paths, labels, suggested, scores = flagged.limit(SHOWN).values(
            ["id", "filepath", f"{field}.label", "suggested_label", finder.score])
        texts = [f"`{f.rsplit('/', 1)[-1]}` **{lab}** → **{s}** ({sc:.2f})"
                 for f, lab, s, sc in zip(paths, labels, suggested, scores, strict=True)]
    else:
        flagged = flagged.match_tags(list(DECISIONS), bool=False)
        detail = finder.review_detail or finder.score
        ids, paths, details, scores = flagged.limit(SHOWN).values(["id", "filepath", detail, finder.score])
        texts = [f"`{f.rsplit('/', 1)[-1]}` {', '.join(d) if isinstance(d, list) else ''} ({sc:.2f})"
                 for f, d, sc in zip(paths, details, scores, strict=True)]
    items = [{"id": i, "text": t} for i, t in zip(ids, texts, strict=True)]
    return {"name": finder.name, "title": TITLES.get(kind or "", finder.label.split(": find ", 1)[-1].capitalize()),
            "kind": kind, "open": len(flagged), "items": items}


def _slice_sections(ds: Any, finder: Finder) -> list[dict[str, Any]]:
    """The failure slices of the last ``slices`` run (size, error rate, confusion, description; Show opens the
    slice), and its errors whose label is likely wrong (Accept = relabel as the prediction), not yet reviewed."""
    from fiftyone import ViewField as F

    sections = [_box_slices(ds, finder, key) for key in ds.list_brain_runs() if key.startswith(f"{finder.key()}__")]
    if finder.key() not in ds.list_brain_runs():
        return sections
    config = ds.get_brain_info(finder.key()).config
    listed = config.summary.get("slice_list", [])
    items = [{"slice": s["slice"], "text": _slice_text(s)} for s in listed[:SHOWN]]
    sections.insert(0, {"name": finder.name, "title": "Failure slices", "kind": "slice", "open": len(listed),
                        "items": items})
    field, prediction = review._label_field(ds, None), config.settings.get("prediction_field")
    if ds.has_field("error_kind") and prediction and ds.has_field(prediction):
        wrong = ds.match(F("error_kind") == "label")
        wrong = wrong.exists(review.REVIEW_FIELD, False) if ds.has_field(review.REVIEW_FIELD) else wrong
        ids, paths, labels, guesses = wrong.sort_by("slice_score", reverse=True).limit(SHOWN).values(
            ["id", "filepath", f"{field}.label", f"{prediction}.label"])
        sections.append({"name": f"{finder.name}_labels", "title": "Likely wrong labels (the model and the "
                         "look-alikes agree)", "kind": "label", "open": len(wrong),
                         "items": [{"id": i, "suggested": g, "text": f"`{p.rsplit('/', 1)[-1]}` **{lab}** → **{g}**"}
                                   for i, p, lab, g in zip(ids, paths, labels, guesses, strict=True)]})
    return sections


def _box_slices(ds: Any, finder: Finder, key: str) -> dict[str, Any]:
    """A detector's failure slices over the boxes of one field (Show opens the slice's patches view)."""
    config = ds.get_brain_info(key).config
    field, listed = config.patches_field, config.summary.get("slice_list", [])
    return {"name": f"{finder.name}_{key}", "title": f"Failure slices of the boxes of {field}", "kind": "slice",
            "open": len(listed), "items": [{"slice": s["slice"], "patches": field, "text": _slice_text(s, "boxes")}
                                           for s in listed[:SHOWN]]}


def _slice_text(s: dict[str, Any], rows: str = "samples") -> str:
    lift = "no errors in" if s["lift"] is None else f"{s['lift']:.1f}x"
    text = (f"slice {s['slice']}: {s['size']} {rows}, {s['error_rate']:.0%} errors ({lift} the rest), "
            f"**{s['label']}** → **{s['prediction']}**")
    return text + (f"; {s['description']}" if s["description"] else "")


def _reviewed_fields(ds: Any, finder: Finder) -> list[str]:
    """The Detections fields whose boxes ``finder`` has scored (its flag is an attribute of their boxes)."""
    import fiftyone as fo

    return [name for name, f in ds.get_field_schema().items() if getattr(f, "document_type", None) is fo.Detections
            and ds.has_field(f"{name}.detections.{finder.flag}")]


def _box_section(ds: Any, finder: Finder, field: str) -> dict[str, Any]:
    """The review panel's list of a finder's open box suspects in ``field``, each with its crop."""
    from fiftyone import ViewField as F

    flagged = ds.filter_labels(field, (F(finder.flag) == True) & ~F("review").exists())  # noqa: E712 (a query)
    boxes = f"{field}.detections"
    paths, ids, labels, suggested, scores, bboxes = flagged.values(
        ["filepath", f"{boxes}.id", f"{boxes}.label", f"{boxes}.suggested_label", f"{boxes}.{finder.score}",
         f"{boxes}.bounding_box"])
    rows = sorted(((sc, i, p, lab, sug, bb) for p, *per_box in zip(paths, ids, labels, suggested, scores, bboxes,
                                                                   strict=True)
                   for i, lab, sug, sc, bb in zip(*per_box, strict=True)), key=lambda r: -r[0])
    items = [{"id": i, "patches": field,
              "text": f"{_crop_md(p, bb)} `{p.rsplit('/', 1)[-1]}` **{lab}** → **{sug}** ({sc:.2f})"}
             for sc, i, p, lab, sug, bb in rows[:SHOWN]]
    return {"name": f"{finder.name}__{field}", "title": f"Suspected box labels ({field})", "kind": "label",
            "open": len(rows), "items": items}


def _crop_md(path: str, box: list[float], side: int = 48) -> str:
    """A box's crop as an inline Markdown image (a data URI), or nothing where its file cannot be read."""
    import base64
    import io

    from lookalike.decoding import crop_box
    from lookalike.images import open_image

    try:
        image = open_image(path)
        rect = crop_box(image.width, image.height, tuple(box), 0.0)  # type: ignore[arg-type]
        if isinstance(rect, str):
            return ""
        crop = image.crop(rect)
        crop.thumbnail((side, side))
        out = io.BytesIO()
        crop.save(out, format="PNG")
    except Exception:  # a thumbnail is a nicety: the text still names the box
        return ""
    return f"![crop](data:image/png;base64,{base64.b64encode(out.getvalue()).decode()})"


def _decided_boxes(ds: Any) -> list[dict[str, Any]]:
    """Reviewed boxes of every Detections field, for the panel's undo list."""
    import fiftyone as fo
    from fiftyone import ViewField as F

    out = []
    for name, f in ds.get_field_schema().items():
        if getattr(f, "document_type", None) is not fo.Detections:
            continue
        reviewed = ds.filter_labels(name, F(review.REVIEW_FIELD).exists())  # an undeclared attribute: by query
        paths, ids, reviews = reviewed.values(["filepath", f"{name}.detections.id", f"{name}.detections.review"])
        out += [{"id": i, "patches": name, "filepath": f"{p.rsplit('/', 1)[-1]} [{name}]", "review": r}
                for p, per_id, per_review in zip(paths, ids, reviews, strict=True)
                for i, r in zip(per_id or [], per_review or [], strict=True) if r]
    return out[:SHOWN]


def register(p: Any) -> None:
    for cls in (FindSimilar, *(_operator_for(f) for f in FINDERS.values()), ReviewPanel):
        p.register(cls)
