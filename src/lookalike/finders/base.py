"""The contract every finder keeps, and the one write-back that serves them all.

A :class:`Finder` has a name (its CLI verb), options (the CLI's flags and the App form's inputs), and
``compute(ctx, **options)``, which returns :class:`Findings`: for each sample it looked at, a score in
[0, 1] (higher = more of the issue; written as ``<name>_score`` unless the finder names it otherwise) and a
flag, plus a summary and the finder's own records (suspects, duplicate groups, ...). :func:`write_back`
then writes the scores, flags and any other fields to those samples only (a view's samples, when run on a
view), tags the flagged ones, saves the view of them, and records the run on the dataset as a FiftyOne
brain run, so ``dataset.list_brain_runs()`` lists it and ``dataset.delete_brain_run(key)`` removes its
fields, tags and views (in the spirit of cleanlab's issue managers and fiftyone-brain's runs).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..datasets import write_fields, write_label_fields
from ..display import Results

if TYPE_CHECKING:
    import pandas as pd

    from ..context import Context
    from ..embedding import Progress

RUN_PREFIX = "lookalike_run_"  # brain key of a finder's run: RUN_PREFIX + its name


@dataclass(frozen=True)
class Option:
    """One setting of a finder: a CLI flag (``--name``) and an App form input alike."""

    name: str
    kind: type  # int, float, str or bool
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    many: bool = False  # a list of values (CLI: several words)
    minimum: int | None = None  # the least value that works
    aliases: tuple[str, ...] = ()  # other CLI flags for it
    off_help: str = ""  # the help of --no-NAME, for a bool that is on by default

    def checked(self, value: Any) -> Any:
        """The value, or a ConfigError naming the option where it is not one of the choices or below the
        minimum (None: the default applies)."""
        from ..exceptions import ConfigError

        if value is None:
            return value
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{self.name} must be at least {self.minimum}, got {value}")
        return value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass
class Findings:
    """What a finder found among the samples it looked at (``ids``): ``scores`` in [0, 1], higher = more of
    the issue; ``flags``, those worth a look; ``fields``, any other per-sample fields it writes
    (``{field: (FiftyOne field type, {sample id: value})}``); ``records``, the finder's own results, most
    severe first; ``summary``, its figures."""

    finder: str
    ids: list[str]
    scores: np.ndarray
    flags: np.ndarray | None  # None: a finder that scores and flags nothing (the map)
    records: list[Any] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, tuple[type, dict[str, Any]]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # per-row data for after_write, not fields

    @property
    def flagged(self) -> int:
        return 0 if self.flags is None else int(np.count_nonzero(self.flags))

    def to_pandas(self) -> pd.DataFrame:
        """One row per sample looked at: its id, score and flag, most severe first."""
        import pandas as pd

        frame = pd.DataFrame({"id": self.ids, "score": self.scores})
        if self.flags is not None:
            frame["flagged"] = self.flags
        return frame.sort_values("score", ascending=False, ignore_index=True)

    def _repr_html_(self) -> str:
        figures = ", ".join(f"{k}: {v}" for k, v in self.summary.items() if not isinstance(v, dict | list))
        return (f"<p><b>{self.finder}</b>: {self.flagged} of {len(self.ids)} samples flagged; {figures}</p>"
                + Results(self.records)._repr_html_())


class Record:
    """A finder's record (a dataclass) as JSON-ready values: ``to_dict``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass


class Finder:
    """One kind of finding. Subclasses set the class attributes and implement :meth:`compute`; registering
    an instance (:func:`lookalike.finders.register`) gives it a CLI verb, an App operator and a Python call."""

    name: ClassVar[str]  # the CLI verb; the run's brain key is RUN_PREFIX + name
    label: ClassVar[str]  # the App operator's label
    help: ClassVar[str]  # one line for ``lookalike --help``
    score_doc: ClassVar[str]  # what the score means, its direction and range
    score_field: ClassVar[str] = ""  # default: <name>_score
    flag_field: ClassVar[str] = ""  # default: <name>_flag
    tag: ClassVar[str | None] = None  # tag of the flagged samples
    view: ClassVar[str | None] = None  # saved view of the flagged samples, most severe first
    options: ClassVar[tuple[Option, ...]] = ()
    stages: ClassVar[tuple[str, ...]] = ()  # names of the progress bars it drives, in turn
    needs_embeddings: ClassVar[bool] = True
    app_panel: ClassVar[str | None] = None  # an App panel to open after it runs
    lists_samples: ClassVar[bool] = False  # its records are samples, flagged or not (the CLI's --all)
    # How the App's review panel lists its findings: "label" (suspects, a suggested label accepted or
    # dismissed), "group" (duplicate groups, a keep plan applied), "sample" (flagged samples kept or removed).
    review: ClassVar[str | None] = None
    review_detail: ClassVar[str | None] = None  # a field shown beside each sample it lists for review
    on_boxes: ClassVar[bool] = False  # runs on the boxes of a patch run too (``patches=FIELD``)

    @property
    def score(self) -> str:
        return self.score_field or f"{self.name}_score"

    @property
    def flag(self) -> str:
        return self.flag_field or f"{self.name}_flag"

    @property
    def operator(self) -> str:
        """Its App operator's name."""
        return f"find_{self.name}"

    @property
    def run_key(self) -> str:
        return RUN_PREFIX + self.name

    def key(self, patches: str | None = None) -> str:
        """The brain key of its run over samples, or over the boxes of ``patches`` (one run per kind of row:
        a box run never replaces the image run)."""
        return self.run_key if patches is None else f"{self.run_key}__{re.sub(r'[^A-Za-z0-9_]+', '_', patches)}"

    def view_name(self, patches: str | None = None) -> str | None:
        """Its saved view of flagged samples, or of flagged boxes of ``patches`` (a patches view)."""
        return self.view if self.view is None or patches is None else f"{self.view}-{patches}"

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def compute(self, ctx: Context, progress: Progress | None = None, **options: Any) -> Findings:
        raise NotImplementedError

    def check(self, options: dict[str, Any]) -> None:
        """Raise ConfigError on options that cannot work beyond what each :class:`Option` checks of itself
        (called before any work)."""

    def extra_fields(self, patches: str | None = None) -> tuple[str, ...]:
        """Fields it writes outside ``Findings.fields`` (in :meth:`after_write`), for its run's record and
        cleanup (over boxes: their paths, ``FIELD.detections.NAME``)."""
        return ()

    def extra_views(self, patches: str | None = None) -> tuple[str, ...]:
        return ()

    def extra_tags(self) -> tuple[str, ...]:
        return ()

    def after_write(self, ctx: Context, findings: Findings) -> None:
        """Anything more it writes to FiftyOne (other tags, views, brain runs), after the fields."""

    def table(self, findings: Findings, limit: int) -> str:
        """Its findings as text for a terminal: the most severe ``limit``, then a line of figures."""
        raise NotImplementedError

    def json(self, findings: Findings, everything: bool = False) -> Any:
        """Its findings as JSON-ready values (the CLI's ``--json``): by default its records' dicts; with
        ``everything``, also the unflagged samples of a finder that lists samples."""
        records = findings.records if everything or not self.lists_samples else [
            r for r in findings.records if getattr(r, "flagged", True)]
        return [r.to_dict() if hasattr(r, "to_dict") else r for r in records]

    def message(self, findings: Findings) -> str:
        """One line for the App's notification."""
        return f"{findings.flagged} of {len(findings.ids)} samples flagged"


def run(finder: Finder, ctx: Context, progress: Progress | None = None, **options: Any) -> Findings:
    """Check the options, compute, write back and record: what the CLI, the App and Python all call."""
    settings = settle(finder, options)
    findings = finder.compute(ctx, progress=progress, **settings)
    write_back(finder, ctx, findings, settings)
    return findings


def settle(finder: Finder, options: dict[str, Any]) -> dict[str, Any]:
    """The finder's settings: its defaults, then ``options`` (None: the default), each checked; a ConfigError
    naming the first option that cannot work. Cheap: called before the dataset is looked at."""
    settings = {**finder.defaults(), **{k: v for k, v in options.items() if v is not None}}
    unknown = set(settings) - set(finder.defaults())
    if unknown:
        from ..exceptions import ConfigError

        raise ConfigError(f"{finder.name} has no option {sorted(unknown)[0]!r}; it has: "
                          f"{', '.join(finder.defaults()) or 'none'}")
    for option in finder.options:
        option.checked(settings[option.name])
    finder.check(settings)
    return settings


def write_back(finder: Finder, ctx: Context, findings: Findings, settings: dict[str, Any]) -> None:
    """Write a finder's fields to the rows it was run on (others untouched): sample fields, or attributes of
    the boxes of a patch run; tag and save the flagged ones, and record the run."""
    import fiftyone as fo
    from fiftyone import ViewField as F

    collection, boxes = ctx.collection, ctx.patches
    values: dict[str, tuple[Any, dict[str, Any]]] = {finder.score: (fo.FloatField, {
        sid: float(s) for sid, s in zip(findings.ids, findings.scores, strict=True) if np.isfinite(s)})}
    if findings.flags is not None:
        values[finder.flag] = (fo.BooleanField, dict(zip(findings.ids, findings.flags.tolist(), strict=True)))
    view = finder.view_name(boxes)
    if boxes is None:
        write_fields(collection, {**values, **findings.fields})
        if finder.tag:
            collection.untag_samples(finder.tag)
            collection.match(F(finder.flag) == True).tag_samples(finder.tag)  # noqa: E712 (a query, not a test)
        if view:
            flagged = ctx.dataset.match_tags(finder.tag) if finder.tag else ctx.dataset.match(F(finder.flag) == True)  # noqa: E712
            ctx.dataset.save_view(view, flagged.sort_by(finder.score, reverse=True), overwrite=True)
    else:
        write_label_fields(collection, boxes, {name: v for name, (_, v) in {**values, **findings.fields}.items()})
        # Matched by the flag just written, not by id: a $in over a hundred thousand label ids, evaluated for each
        # of a million boxes, ran for more than ten minutes.
        flagged = collection.filter_labels(boxes, F(finder.flag) == True)  # noqa: E712 (a query, not a test)
        if finder.tag:
            collection.untag_labels(finder.tag, label_fields=[boxes])
            flagged.tag_labels(finder.tag, label_fields=[boxes])
        if view:
            patches = ctx.dataset.filter_labels(boxes, F(finder.flag) == True).to_patches(boxes)  # noqa: E712
            ctx.dataset.save_view(view, patches.sort_by(f"{boxes}.{finder.score}", reverse=True), overwrite=True)
    finder.after_write(ctx, findings)
    written = [*values, *findings.fields]
    record(finder, ctx, findings, settings, written if boxes is None else [f"{boxes}.detections.{n}" for n in written])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def record(finder: Finder, ctx: Context, findings: Findings, settings: dict[str, Any], fields: list[str]) -> None:
    """Record (or replace) the finder's run on the collection it ran on."""
    from fiftyone.core.brain import BrainMethod

    from .record import FinderRunConfig  # imports fiftyone: not at lookalike's import

    boxes = ctx.patches
    config = FinderRunConfig(
        finder=finder.name, settings=_jsonable(settings), model=ctx.run.model if finder.needs_embeddings else None,
        fields=fields + [f for f in finder.extra_fields(boxes) if f not in fields],
        tags=[t for t in (finder.tag, *finder.extra_tags()) if t],
        views=[v for v in (finder.view_name(boxes), *finder.extra_views(boxes)) if v],
        summary=_jsonable(findings.summary), patches_field=boxes)
    method = config.build()
    key = finder.key(boxes)
    if key in ctx.dataset.list_brain_runs():  # the old record goes, not what the new run wrote
        BrainMethod.delete_run(ctx.dataset, key, cleanup=False)
    method.register_run(ctx.collection, key, cleanup=False)
