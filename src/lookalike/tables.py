"""Results as plain text tables, for the command line and the main job (the CLI prints them; ``--json``
prints the results' own dicts instead)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .maps import NOISE


def format_suspects(suspects: list[Any]) -> str:
    """A plain table of suspected mislabels."""
    if not suspects:
        return "  (none)"
    lines = [f"  {'score':>6}  {'label':<12} {'suggested':<12} id                        file"]
    for s in suspects:
        lines.append(f"  {s.score:6.3f}  {s.label:<12} {s.suggested_label:<12} {s.id}  {Path(s.filepath).name}")
    return "\n".join(lines)


def format_matches(matches: list[Any]) -> str:
    """A plain table of matches."""
    if not matches:
        return "  (no matches)"
    lines = [f"  {'score':>7}  {'label':<12} {'split':<6} id                        file"]
    for m in matches:
        label = ",".join(m.label) if isinstance(m.label, list) else str(m.label)
        lines.append(f"  {m.score:7.4f}  {label:<12} {m.split!s:<6} {m.id}  {Path(m.filepath).name}")
    return "\n".join(lines)


def format_duplicates(groups: list[Any]) -> str:
    """A plain listing of duplicate groups: the kept member first, then those to remove."""
    if not groups:
        return "  (none)"
    lines = []
    for g in groups:
        leak = f", leak across {'/'.join(g.splits)}" if g.leak else ""
        lines.append(f"  group {g.group} ({g.kind}, {len(g.members)} images{leak}):")
        for m in sorted(g.members, key=lambda m: not m.keep):
            lines.append(f"    {'keep  ' if m.keep else 'remove'} {m.label!s:<12} {m.split!s:<6} {m.id}  "
                         f"{Path(m.filepath).name}")
    return "\n".join(lines)


def format_clusters(sizes: dict[int, int]) -> str:
    """Cluster sizes on one line, ``none`` for the samples in no cluster."""
    return ", ".join(f"{'none' if c == NOISE else c}: {n}" for c, n in sizes.items())
