"""Outliers as a finder: ``outlier_score`` (0..1, higher = further from everything else, 0.5 at the flag)
and the flag ``outlier_flag``, from the shared kNN graph; the method is :mod:`lookalike.outlier_scores`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import ConfigError
from ..outlier_scores import DEFAULT_K, outlier_scores
from .base import Finder, Findings, Option, Record

if TYPE_CHECKING:
    from ..context import Context
    from ..embedding import Progress


@dataclass
class Outlier(Record):
    """One sample's outlier score."""

    id: str
    filepath: str
    label: Any
    score: float
    flagged: bool


class Outliers(Finder):
    name = "outliers"
    label = "lookalike: find outliers"
    review = "sample"
    help = "find samples far from everything else in embedding space"
    score_field = "outlier_score"
    flag_field = "outlier_flag"
    score_doc = ("0..1, higher = further out: from its nearest neighbours or from the collection as a whole "
                 "(Mahalanobis), judged against the collection (0.5: flagged)")
    tag = "outlier"
    view = "lookalike-outliers"
    lists_samples = True
    on_boxes = True
    options = (Option("k", int, DEFAULT_K, "neighbours whose distance makes the score", minimum=1),)

    def compute(self, ctx: Context, progress: Progress | None = None, **options: Any) -> Findings:
        ids = ctx.ids
        if len(ids) < 3:
            raise ConfigError(f"{ctx.name!r} has {len(ids)} embedded samples here; outliers need at least 3")
        graph = ctx.graph(options["k"])
        scores = outlier_scores(graph, min(options["k"], graph.k), vectors=ctx.vectors())
        flags = scores >= 0.5
        table = ctx.table
        order = np.argsort(-scores, kind="stable")
        records = [Outlier(id=ids[i], filepath=table["filepath"][i], label=table["label"][i], score=float(scores[i]),
                           flagged=bool(flags[i])) for i in order]
        return Findings(finder=self.name, ids=ids, scores=scores, flags=flags, records=records,
                        summary={"samples": len(ids), "flagged": int(flags.sum())})

    def table(self, findings: Findings, limit: int) -> str:
        shown = [o for o in findings.records if o.flagged][:limit]
        lines = [f"  {'score':>6}  {'label':<12} id                        file"] if shown else ["  (none)"]
        lines += [f"  {o.score:6.3f}  {o.label!s:<12} {o.id}  {Path(o.filepath).name}" for o in shown]
        lines.append(f"{findings.flagged} of {len(findings.ids)} samples flagged "
                     f"(tag {self.tag!r}, view {self.view!r})")
        return "\n".join(lines)

    def message(self, findings: Findings) -> str:
        return f"{findings.flagged} outliers of {len(findings.ids)}"
