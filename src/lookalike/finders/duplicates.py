"""Exact and near duplicates as a finder: ``duplicate_group``, ``duplicate_keep`` (the keep plan) and
``duplicate_score`` (0..1: the best pixel similarity verified with any other sample), the tags
``duplicate`` and ``leak``; the method is :mod:`lookalike.dedup`. Nothing is deleted."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..context import UPDATE_ABOVE
from ..datasets import sample_table, values_in_order
from ..dedup import DEFAULT_CANDIDATE_COSINE, DEFAULT_THRESHOLD, Verified, find_duplicates, open_for_keypoints
from ..dedup.boxes import DEFAULT_IOU, find_double_annotations
from ..display import tile
from ..embedding import EmbeddingCache, cache_image_facts
from ..engines import engine_of
from ..exceptions import ConfigError
from ..graph import KnnGraph
from ..runs import HASH_FIELD
from .base import Finder, Findings, Option, Record

if TYPE_CHECKING:
    from ..context import Context
    from ..embedding import Progress

log = logging.getLogger(__name__)

DUPLICATE_NEIGHBOURS = 10  # embedding neighbours per sample that may be verified as copies
LEAK_TAG = "leak"
LEAKS_VIEW = "lookalike-leaks"
KEEP_POLICIES = ("largest", "train", "first")


@dataclass
class Duplicate(Record):
    """One member of a duplicate group."""

    id: str
    filepath: str
    label: Any
    split: str | None
    keep: bool


@dataclass
class DuplicateSet(Record):
    """Samples that are copies of each other, which one to keep, and whether they span splits."""

    group: int
    kind: str  # "exact" (same bytes or pixels) or "near"
    leak: bool
    splits: list[str]
    members: list[Duplicate]

    def rows(self) -> list[dict[str, Any]]:
        """One row per member, with the group's columns (``Results.to_pandas``)."""
        return [{"group": self.group, "kind": self.kind, "leak": self.leak, **m.to_dict()} for m in self.members]

    def html(self, budget: int) -> tuple[str, int]:
        """The members side by side (at most ``budget`` of them), the kept one marked."""
        shown = self.members[:budget]
        leak = f", leak across {' / '.join(self.splits)}" if self.leak else ""
        head = html.escape(f"group {self.group}: {self.kind}{leak}")
        tiles = "".join(tile(m.to_dict(), m.filepath) for m in shown)
        return (f"<div style='border:1px solid #ccc;margin:2px;padding:2px'><div style='font-size:11px'>{head}</div>"
                f"{tiles}</div>", len(shown))


class Duplicates(Finder):
    name = "duplicates"
    label = "lookalike: find duplicates"
    review = "group"
    help = "find exact and near duplicates, a keep/remove plan, and leaks across splits"
    score_doc = "0..1, the best pixel similarity verified with another sample (1: same bytes or pixels)"
    score_field = "duplicate_score"
    flag_field = "is_duplicate"
    tag = "duplicate"
    stages = ("thumbnails", "keypoints")
    on_boxes = True  # over boxes: double annotations (two boxes on one object of one image)
    options = (
        Option("threshold", float, DEFAULT_THRESHOLD, "pixel similarity that makes a duplicate"),
        Option("keep", str, "largest", "which copy each group keeps", choices=KEEP_POLICIES),
        Option("iou", float, DEFAULT_IOU, "with --patches: boxes of one image overlapping at least this much "
               "(intersection over union) mark one object twice"),
        Option("keypoints", bool, True, "match keypoints in the files: finds heavy crops and rotations (slower)",
               off_help="skip keypoint matching: faster (no image is opened again), but misses heavy crops and "
                        "rotations"),
    )

    def check(self, options: dict[str, Any]) -> None:
        if not 0 < options["threshold"] <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {options['threshold']}")
        if not 0 < options["iou"] <= 1:
            raise ConfigError(f"iou must be in (0, 1], got {options['iou']}")

    def extra_tags(self) -> tuple[str, ...]:
        return (LEAK_TAG,)

    def extra_views(self, patches: str | None = None) -> tuple[str, ...]:
        return ("lookalike-duplicates", LEAKS_VIEW) if patches is None else (f"lookalike-duplicates-{patches}",)

    def compute(self, ctx: Context, progress: Progress | None = None, **options: Any) -> Findings:
        if ctx.patches is not None:
            return self._double_annotations(ctx, options)
        import fiftyone as fo

        config, ids = ctx.config, ctx.ids
        graph = ctx.graph(DUPLICATE_NEIGHBOURS)
        table = sample_table(ctx.collection, ctx.label_field, ids)
        (hashes,) = values_in_order(ctx.collection, [HASH_FIELD], ids)
        cache = EmbeddingCache(config.index.home_path() / "embeddings.sqlite")
        try:
            errors = cache_image_facts(table["filepath"], hashes, cache, config.embed.num_workers, progress)
            rows = [i for i, h in enumerate(hashes) if h not in errors]  # changed or gone since embedding: out
            images = cache.thumbnails([hashes[i] for i in rows])
        finally:
            cache.close()
        for error in errors.values():
            log.warning("left out of duplicate finding: %s", error)
        keep_rows = np.full(len(ids), -1)
        keep_rows[rows] = np.arange(len(rows))
        sub = KnnGraph(indices=keep_rows[graph.indices[rows]],
                       sims=np.where(keep_rows[graph.indices[rows]] >= 0, graph.sims[rows], -1.0))
        content = [hashes[i] for i in rows]
        state = ctx.state_path("duplicates")
        earlier = Verified.load(state, content, DEFAULT_CANDIDATE_COSINE, options["keypoints"]) if state else None
        if earlier is not None and earlier.covered is not None and (
                earlier.covered.mean() < UPDATE_ABOVE or (~earlier.covered).sum() > config.index.exact_graph_max):
            # Mostly new images, or more than an exact pixel search of them against every thumbnail pays for
            # (290,000 new rows against 2M thumbnails ran longer than a whole first run): from scratch.
            earlier = None
        groups, verified = find_duplicates(
            images, content, [table["split"][i] for i in rows], graph=sub, threshold=options["threshold"],
            policy=options["keep"], exact_max=config.index.exact_graph_max, progress=progress, earlier=earlier,
            engine=engine_of(config),
            open_image=(lambda r: open_for_keypoints(table["filepath"][rows[r]])) if options["keypoints"] else None)
        if state:
            verified.save(state, content, DEFAULT_CANDIDATE_COSINE, options["keypoints"])

        records = []
        for number, g in enumerate(groups):
            members = [Duplicate(id=ids[rows[m]], filepath=table["filepath"][rows[m]], label=table["label"][rows[m]],
                                 split=table["split"][rows[m]], keep=m == g.keep) for m in g.members]
            records.append(DuplicateSet(group=number, kind=g.kind, leak=g.leak, splits=g.splits, members=members))
        best = np.full(len(rows), -np.inf, dtype=np.float32)
        for side in (0, 1):
            np.maximum.at(best, verified.pairs[:, side], verified.scores)
        scored = np.flatnonzero(np.isfinite(best))  # rows with a verified pair; the others: no score
        in_group = np.zeros(len(rows), dtype=bool)
        in_group[[m for g in groups for m in g.members]] = True
        return Findings(
            finder=self.name, ids=[ids[rows[r]] for r in scored], scores=np.clip(best[scored], 0, 1),
            flags=in_group[scored], records=records,
            summary={"groups": len(records), "exact_groups": sum(s.kind == "exact" for s in records),
                     "to_remove": sum(len(s.members) - 1 for s in records), "leaks": sum(s.leak for s in records)},
            fields={"duplicate_group": (fo.IntField, {m.id: s.group for s in records for m in s.members}),
                    "duplicate_keep": (fo.BooleanField, {m.id: m.keep for s in records for m in s.members})})

    def _double_annotations(self, ctx: Context, options: dict[str, Any]) -> Findings:
        """Over boxes: groups of boxes of one image that mark one object (see :mod:`lookalike.dedup.boxes`);
        ``keep``: the largest box, else the first annotated."""
        import fiftyone as fo

        ids, table = ctx.ids, ctx.table
        found = find_double_annotations(table["sample_id"], np.array(table["box"], dtype=np.float64).reshape(-1, 4),
                                        options["iou"])
        records = []
        for number, group in enumerate(sorted(found.groups, key=lambda g: (-len(g), g[0]))):
            areas = [table["box"][r][2] * table["box"][r][3] for r in group]
            keep = group[int(np.argmax(areas))] if options["keep"] == "largest" else group[0]
            labels = {table["label"][r] for r in group}
            members = [Duplicate(id=ids[r], filepath=table["filepath"][r], label=table["label"][r],
                                 split=table["split"][r], keep=r == keep) for r in group]
            records.append(DuplicateSet(group=number, kind="same-label" if len(labels) == 1 else "conflicting-labels",
                                        leak=False, splits=sorted({str(m.split) for m in members}), members=members))
        in_group = np.zeros(len(ids), dtype=bool)
        in_group[[r for g in found.groups for r in g]] = True
        return Findings(
            finder=self.name, ids=ids, scores=found.best_iou, flags=in_group, records=records,
            summary={"groups": len(records), "conflicting_labels": sum(s.kind != "same-label" for s in records),
                     "to_remove": sum(len(s.members) - 1 for s in records), "leaks": 0},
            fields={"duplicate_group": (fo.IntField, {m.id: s.group for s in records for m in s.members}),
                    "duplicate_keep": (fo.BooleanField, {m.id: m.keep for s in records for m in s.members})})

    def after_write(self, ctx: Context, findings: Findings) -> None:
        from fiftyone import ViewField as F

        if ctx.patches is not None:  # boxes: a patches view of the groups; no splits to leak across
            boxes = ctx.patches
            grouped = ctx.dataset.select_labels(tags=self.tag, fields=boxes).to_patches(boxes)
            ctx.dataset.save_view(f"lookalike-duplicates-{boxes}", grouped.sort_by(f"{boxes}.duplicate_group"),
                                  overwrite=True)
            return
        collection, dataset = ctx.collection, ctx.dataset
        collection.untag_samples(LEAK_TAG)
        leaks = [s.group for s in findings.records if s.leak]
        # Matched by field, not by id: at a million samples the members' ids are too large a request.
        collection.match(F("duplicate_group").is_in(leaks)).tag_samples(LEAK_TAG)
        in_groups = dataset.match_tags(self.tag).sort_by("duplicate_group")
        dataset.save_view("lookalike-duplicates", in_groups, overwrite=True)
        dataset.save_view(LEAKS_VIEW, in_groups.match_tags(LEAK_TAG), overwrite=True)

    def table(self, findings: Findings, limit: int) -> str:
        from ..tables import format_duplicates

        s = findings.summary
        return (f"{format_duplicates(findings.records[:limit])}\n{s['groups']} duplicate groups ({s['to_remove']} "
                f"samples to remove), {s['leaks']} leaks across splits (tags {self.tag!r}, {LEAK_TAG!r}; views "
                f"'lookalike-duplicates', {LEAKS_VIEW!r})")

    def json(self, findings: Findings, everything: bool = False) -> Any:
        groups = [g.to_dict() for g in findings.records]
        return {"groups": groups, "leaks": [g for g in groups if g["leak"]]}

    def message(self, findings: Findings) -> str:
        return f"{findings.summary['groups']} duplicate groups, {findings.summary['leaks']} leaks"


