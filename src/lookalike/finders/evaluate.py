"""Retrieval evaluation as a finder: per labeled sample ``retrieval_precision`` (its precision@k as a query,
0..1, higher = more of its nearest carry its label) and the flag ``retrieval_miss`` (none of them does);
overall and per class precision@k, recall@k and mAP@k, and the vector index's recall@k against exact
search. The method is :mod:`lookalike.retrieval`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import ConfigError
from ..graph import nearest
from ..retrieval import index_recall, label_retrieval
from .base import Finder, Findings, Option
from .mislabels import class_labels

if TYPE_CHECKING:
    from ..context import Context
    from ..embedding import Progress

INDEX_QUERIES = 200  # samples the index is queried with to measure its recall (exact search: 200 x N)


class Evaluate(Finder):
    name = "evaluate"
    label = "lookalike: evaluate retrieval"
    help = "precision@k, recall@k and mAP@k of label retrieval, and the index's recall@k"
    score_field = "retrieval_precision"
    flag_field = "retrieval_miss"
    score_doc = "0..1, higher = more of its k nearest neighbours carry its label (its precision@k as a query)"
    on_boxes = True
    options = (Option("k", int, 10, "neighbours retrieved per query", minimum=1),
               Option("index_queries", int, INDEX_QUERIES, "samples the index's recall is measured on (0: none)",
                      minimum=0))

    def compute(self, ctx: Context, progress: Progress | None = None, **options: Any) -> Findings:
        ids, k = ctx.ids, options["k"]
        if len(ids) <= k:
            raise ConfigError(f"{ctx.name!r} has {len(ids)} embedded samples here; k must be below that")
        classes, labels = class_labels(ctx)
        result = label_retrieval(ctx.graph(k), labels, k)
        per_class = {c: result.mean(np.flatnonzero(labels == n)) for n, c in enumerate(classes)}
        summary: dict[str, Any] = {"k": k, "overall": result.mean(), "per_class": per_class,
                                   "index_recall_at_k": self._index_recall(ctx, k, options["index_queries"])}
        scored = np.flatnonzero(np.isfinite(result.precision))
        return Findings(finder=self.name, ids=[ids[i] for i in scored], scores=result.precision[scored],
                        flags=result.recall[scored] == 0, summary=summary)

    @staticmethod
    def _index_recall(ctx: Context, k: int, queries: int) -> float | None:
        """Recall@k of the index's search against exact search, on ``queries`` random samples."""
        ids = ctx.ids
        if queries <= 0:
            return None
        vectors = ctx.vectors()
        rows = np.sort(np.random.default_rng(0).choice(len(ids), min(queries, len(ids)), replace=False))
        exact = nearest(vectors[rows], vectors, k + 1, precision="fp32")
        where = {ctx.row_key: list(ids)} if ctx.is_view else None
        found = ctx.rows.index.query(np.asarray(vectors[rows]), k + 1, where)
        return index_recall([[h.id for h in hits if h.id != ids[r]][:k] for r, hits in zip(rows, found, strict=True)],
                            [[ids[j] for j in row if j != r][:k] for r, row in zip(rows, exact, strict=True)])

    def json(self, findings: Findings, everything: bool = False) -> Any:
        return findings.summary

    def table(self, findings: Findings, limit: int) -> str:
        s = findings.summary
        lines = [f"  {'class':<16} {'queries':>8} {'P@k':>7} {'R@k':>7} {'mAP@k':>7}"]
        for name, m in [("(all)", s["overall"]), *list(s["per_class"].items())[:limit]]:
            lines.append(f"  {name!s:<16} {m['queries']:8d} {m['precision_at_k']:7.3f} {m['recall_at_k']:7.3f} "
                         f"{m['map_at_k']:7.3f}")
        recall = s["index_recall_at_k"]
        lines.append(f"k = {s['k']}; index recall@k against exact search: "
                     + ("not measured" if recall is None else f"{recall:.4f}")
                     + f"; {findings.flagged} samples none of whose {s['k']} nearest carry their label "
                       f"(field {self.flag!r})")
        return "\n".join(lines)

    def message(self, findings: Findings) -> str:
        o = findings.summary["overall"]
        return f"precision@{findings.summary['k']} {o['precision_at_k']:.3f}, mAP {o['map_at_k']:.3f}"
