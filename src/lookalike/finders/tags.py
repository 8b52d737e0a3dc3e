"""Zero-shot tags as a finder: each image's ``top`` tags from a vocabulary, by a CLIP model's text tower,
into the Classifications field ``zero_shot`` (label and probability), with ``zero_shot_confidence`` (the top
tag's probability, 0..1) and the flag ``zero_shot_disagrees`` (the top tag is another word of the vocabulary
than the sample's own label). Needs a run of a model with a text tower (``clip:...``); with real weights the
tags are CLIP's zero-shot classification, with the test model's random weights they are noise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..datasets import sample_table
from ..exceptions import ConfigError, TextNotSupportedError
from .base import Finder, Findings, Option, Record

if TYPE_CHECKING:
    from ..context import Context
    from ..embedding import Progress

TAGS_FIELD = "zero_shot"
LOGIT_SCALE = 100.0  # CLIP's trained temperature (exp of its logit_scale, clamped at 100)


@dataclass
class Tagged(Record):
    """One image's tags, most likely first, with probabilities over the vocabulary."""

    id: str
    filepath: str
    label: Any
    tags: list[tuple[str, float]]
    flagged: bool


def vocabulary(words: list[str]) -> list[str]:
    """The words given, or the lines of a file given as the only word (blank lines and # comments skipped)."""
    if len(words) == 1 and Path(words[0]).is_file():
        lines = Path(words[0]).read_text().splitlines()
        words = [w.strip() for w in lines if w.strip() and not w.strip().startswith("#")]
    words = list(dict.fromkeys(w.strip() for w in words if w.strip()))
    if len(words) < 2:
        raise ConfigError("--vocab needs at least two words (or a file of them, one per line)")
    return words


class Tags(Finder):
    name = "tag"
    label = "lookalike: zero-shot tags"
    help = "tag every image with the words of a vocabulary it matches best (CLIP text tower)"
    score_field = "zero_shot_confidence"
    flag_field = "zero_shot_disagrees"
    score_doc = "0..1, the top tag's probability over the vocabulary"
    view = "lookalike-zero-shot-disagrees"
    lists_samples = True
    options = (
        Option("vocab", str, None, "the words, or a text file of them (one per line)", many=True),
        Option("top", int, 3, "tags kept per image", minimum=1),
        Option("prompt", str, "a photo of a {}", "the text each word is put in ({} is the word)"),
    )

    def check(self, options: dict[str, Any]) -> None:
        if not options["vocab"]:
            raise ConfigError("give a vocabulary: --vocab WORD WORD ... or --vocab FILE")
        if "{}" not in options["prompt"]:
            raise ConfigError(f"the prompt must hold {{}} where the word goes, got {options['prompt']!r}")

    def extra_fields(self, patches: str | None = None) -> tuple[str, ...]:
        return (TAGS_FIELD,)

    def compute(self, ctx: Context, progress: Progress | None = None, **options: Any) -> Findings:
        words = vocabulary(list(options["vocab"]))
        embedder = ctx.run.embedder(ctx.config)
        if not embedder.has_text:
            raise TextNotSupportedError(f"the run {ctx.run.model!r} has no text tower, so it cannot tag by words; "
                                        f"embed with a CLIP model (`lookalike embed {ctx.name} --model clip:ViT-B-32`)")
        text = embedder.embed_text([options["prompt"].format(w) for w in words])
        ids, vectors = ctx.ids, ctx.vectors()
        probs = np.empty((len(ids), len(words)), np.float32)
        for start in range(0, len(ids), 1 << 14):
            logits = LOGIT_SCALE * (np.asarray(vectors[start:start + (1 << 14)]) @ text.T)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs[start:start + len(e)] = e / e.sum(axis=1, keepdims=True)
        top = np.argsort(-probs, axis=1, kind="stable")[:, : min(options["top"], len(words))]
        table = sample_table(ctx.collection, ctx.label_field, ids)
        known = set(words)
        flags = np.array([lab in known and words[t[0]] != lab for lab, t in zip(table["label"], top, strict=True)])
        records = [Tagged(id=sid, filepath=table["filepath"][i], label=table["label"][i],
                          tags=[(words[j], round(float(probs[i, j]), 4)) for j in top[i]], flagged=bool(flags[i]))
                   for i, sid in enumerate(ids)]
        counts = np.bincount(top[:, 0], minlength=len(words))
        return Findings(finder=self.name, ids=ids, scores=probs[np.arange(len(ids)), top[:, 0]], flags=flags,
                        records=records, summary={"samples": len(ids), "vocabulary": words, "field": TAGS_FIELD,
                                                  "top_tag_counts": dict(zip(words, counts.tolist(), strict=True)),
                                                  "disagree": int(flags.sum())})

    def after_write(self, ctx: Context, findings: Findings) -> None:
        import fiftyone as fo

        values = {r.id: fo.Classifications(classifications=[fo.Classification(label=w, confidence=p)
                                                            for w, p in r.tags]) for r in findings.records}
        ctx.collection.set_values(TAGS_FIELD, values, key_field="id")

    def table(self, findings: Findings, limit: int) -> str:
        lines = [f"  {'label':<14} {'tags':<48} file"]
        lines += [f"  {r.label!s:<14} {', '.join(f'{w} {p:.2f}' for w, p in r.tags):<48} {Path(r.filepath).name}"
                  for r in findings.records[:limit]]
        s = findings.summary
        lines.append(f"{s['samples']} images tagged into field {s['field']!r}; top tags: "
                     + ", ".join(f"{w} {n}" for w, n in s["top_tag_counts"].items() if n)
                     + f"; {s['disagree']} whose top tag is another word than their label (field {self.flag!r})")
        return "\n".join(lines)

    def message(self, findings: Findings) -> str:
        return f"{findings.summary['samples']} images tagged; {findings.summary['disagree']} disagree with their label"
