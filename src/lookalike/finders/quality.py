"""Image quality as a finder: per issue (dark, bright, blurry, low information, grayscale, odd size, odd
aspect ratio) a score ``quality_<issue>`` in [0, 1], the flagged ones in ``quality_issues``, and
``quality_score``, the highest of them. From the quality measures cached in the decode pass (files embedded
before them, or never, are decoded once); no embeddings needed. The method is :mod:`lookalike.image_quality`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..datasets import box_table
from ..embedding import EmbeddingCache, cache_image_facts, hash_files
from ..image_quality import ISSUES, image_stats, score_issues
from .base import Finder, Findings, Record

if TYPE_CHECKING:
    from ..context import Context
    from ..embedding import Progress


@dataclass
class QualityIssue(Record):
    """One sample's quality: the issues it is flagged for, and its score for each issue (0..1, 0.5 at the
    flag)."""

    id: str
    filepath: str
    issues: list[str]
    scores: dict[str, float]

    @property
    def flagged(self) -> bool:
        return bool(self.issues)

    @property
    def severity(self) -> float:
        return max(self.scores.values(), default=0.0)


# A box that is no crop, by the reason lookalike.decoding gives, and the issue it is flagged for.
BOX_ISSUE_OF = {"no bounding box": "degenerate", "not finite": "degenerate", "zero or negative": "degenerate",
                "outside the image": "outside_image", "too small": "tiny"}
BOX_ISSUES = ("degenerate", "outside_image", "tiny")


def _crop_stats(crop: Any) -> np.ndarray:
    """A crop's quality measures and its size: what the decode workers hand back for a box."""
    return np.concatenate([image_stats(crop), np.array(crop.size, np.float32)])


class Quality(Finder):
    name = "quality"
    label = "lookalike: find image quality issues"
    review = "sample"
    review_detail = "quality_issues"
    help = "find dark, bright, blurry, low-information, grayscale, odd-size and odd-aspect images"
    score_doc = ("0..1, the highest of the issue scores quality_<issue> (0: typical of the collection, 0.5: "
                 "flagged, 1: far out)")
    tag = "quality-issue"
    view = "lookalike-quality"
    lists_samples = True
    needs_embeddings = False
    on_boxes = True  # over boxes: the crops measured alike, and the boxes that cannot be crops
    stages = ("measuring",)

    def compute(self, ctx: Context, progress: Progress | None = None, **options: Any) -> Findings:
        if ctx.patches is not None:
            return self._boxes(ctx, progress)

        ids, paths = ctx.collection.values(["id", "filepath"])
        cache = EmbeddingCache(ctx.config.index.home_path() / "embeddings.sqlite")
        try:
            hashes, unreadable = hash_files(paths, cache)
            readable = [i for i, h in enumerate(hashes) if h]
            errors = cache_image_facts([paths[i] for i in readable], [hashes[i] or "" for i in readable], cache,
                                       ctx.config.embed.num_workers, progress)
            rows = [i for i in readable if hashes[i] not in errors]
            facts = cache.thumbnails([hashes[i] or "" for i in rows])
        finally:
            cache.close()
        scores = score_issues(facts.stats, facts.widths, facts.heights)
        matrix = np.stack([scores[i] for i in ISSUES], axis=1) if rows else np.zeros((0, len(ISSUES)), np.float32)
        failed = {paths[i]: e for i, e in unreadable.items()}
        failed.update({paths[i]: errors[hashes[i] or ""] for i in readable if hashes[i] in errors})
        return self._findings(ids, paths, rows, matrix, ISSUES, {"samples": len(ids), "measured": len(rows),
                                                                 "unreadable": len(failed), "errors": failed})

    def _findings(self, ids: list[str], paths: list[str], rows: list[int], matrix: np.ndarray,
                  issues: tuple[str, ...], summary: dict[str, Any]) -> Findings:
        """Findings of the rows measured (``rows``: their positions in ``ids``; ``matrix``: one row of issue
        scores each), samples or boxes alike: the flagged issues, per-issue fields, the highest score."""
        import fiftyone as fo

        flagged = matrix >= 0.5
        records = sorted((QualityIssue(id=ids[i], filepath=paths[i],
                                       issues=[issues[j] for j in np.flatnonzero(flagged[r])],
                                       scores={issue: round(float(matrix[r, j]), 4) for j, issue in enumerate(issues)})
                          for r, i in enumerate(rows)), key=lambda q: (-len(q.issues), -q.severity))
        fields: dict[str, tuple[Any, dict[str, Any]]] = {
            "quality_issues": (fo.ListField, {q.id: q.issues for q in records if q.issues})}
        for j, issue in enumerate(issues):
            fields[f"quality_{issue}"] = (fo.FloatField, {ids[i]: float(matrix[r, j]) for r, i in enumerate(rows)})
        summary.update(flagged=int(flagged.any(axis=1).sum()),
                       by_issue={issue: int(flagged[:, j].sum()) for j, issue in enumerate(issues)})
        return Findings(finder=self.name, ids=[ids[i] for i in rows], scores=matrix.max(axis=1, initial=0.0),
                        flags=np.asarray(flagged.any(axis=1)), records=records, summary=summary, fields=fields)

    def _boxes(self, ctx: Context, progress: Progress | None) -> Findings:
        """Every box of the field (embedded or not): its crop measured as an image is (each image decoded
        once), scored against the field's crops; a box that is no crop gets ``degenerate`` (NaN, zero or
        negative size), ``outside_image`` or ``tiny`` (under ``MIN_BOX_PX``) at 1."""

        from ..decoding import MIN_BOX_PX, Source, decode_batches

        boxes = ctx.patches or ""
        table = box_table(ctx.collection, boxes)
        ids, paths = table["id"], table["filepath"]
        by_image: dict[str, list[int]] = {}
        for i, path in enumerate(paths):
            by_image.setdefault(path, []).append(i)
        sources = [Source(path, tuple(rows), tuple(tuple(table["box"][i] or (math.nan,) * 4) for i in rows))
                   for path, rows in by_image.items()]
        measured: dict[int, np.ndarray] = {}
        geometric: dict[int, str] = {}
        unreadable: dict[int, str] = {}
        done = 0
        if progress:
            progress(0, len(ids))
        for batch in decode_batches(sources, _crop_stats, 32, ctx.config.embed.num_workers):
            for row, stats, _, err in batch:
                if stats is not None:
                    measured[row] = stats
                elif err and err.startswith("cannot decode"):
                    unreadable[row] = err
                else:
                    geometric[row] = BOX_ISSUE_OF[next(k for k in BOX_ISSUE_OF if k in (err or ""))]
            done += len(batch)
            if progress:
                progress(done, len(ids))
        rows = sorted(measured)
        block = np.stack([measured[r] for r in rows]) if rows else np.zeros((0, 7), np.float32)
        scores = score_issues(block[:, :5], block[:, 5], block[:, 6])
        issues = (*ISSUES, *BOX_ISSUES)
        matrix = np.zeros((len(ids), len(issues)), np.float32)
        for j, issue in enumerate(ISSUES):
            matrix[rows, j] = scores[issue]
        for r, issue in geometric.items():
            matrix[r, issues.index(issue)] = 1.0
        scored = sorted([*rows, *geometric])
        return self._findings(ids, paths, scored, matrix[scored], issues, {
            "boxes": len(ids), "measured": len(scored), "unreadable": len(unreadable),
            "errors": {f"{paths[r]} [{ids[r]}]": e for r, e in unreadable.items()}, "min_box_px": MIN_BOX_PX})

    def table(self, findings: Findings, limit: int) -> str:
        shown = [q for q in findings.records if q.flagged][:limit]
        lines = [f"  {'worst':>6}  {'issues':<36} id                        file"] if shown else ["  (none)"]
        lines += [f"  {q.severity:6.3f}  {', '.join(q.issues):<36} {q.id}  {Path(q.filepath).name}" for q in shown]
        s = findings.summary
        by_issue = ", ".join(f"{issue} {n}" for issue, n in s["by_issue"].items() if n) or "none"
        what = "boxes" if "boxes" in s else "images"
        lines.append(f"{s['flagged']} of {s['measured']} {what} flagged ({by_issue}); {s['unreadable']} unreadable "
                     f"(tag {self.tag!r}, view {self.view!r})")
        return "\n".join(lines)

    def message(self, findings: Findings) -> str:
        return f"{findings.summary['flagged']} images with quality issues of {findings.summary['measured']}"
