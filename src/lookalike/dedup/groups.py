"""Groups of verified pairs, and which member each keeps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def connected_groups(n: int, pairs: Sequence[tuple[int, int]] | np.ndarray) -> list[list[int]]:
    """The groups (size >= 2) that the pairs connect, each sorted, largest group first."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if not len(edges) or n < 2:
        return []
    _, component = connected_components(coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                                                   shape=(n, n)), directed=False)
    order = np.argsort(component, kind="stable")
    _, starts, counts = np.unique(component[order], return_index=True, return_counts=True)
    groups = [order[a:a + c].tolist() for a, c in zip(starts, counts, strict=True) if c > 1]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


@dataclass
class DuplicateGroup:
    """Row indices of one group, the one kept, and whether the group spans splits."""

    members: list[int]
    keep: int
    kind: str  # "exact" (same bytes or pixels) or "near"
    leak: bool = False
    splits: list[str] = field(default_factory=list)


def keep_plan(members: list[int], sizes: Sequence[int], splits: Sequence[str | None], policy: str) -> int:
    """The member to keep: ``largest`` (most pixels, then first), ``train`` (a train copy, then largest),
    or ``first``."""
    if policy == "first":
        return members[0]
    if policy == "train":
        return min(members, key=lambda i: (splits[i] != "train", -sizes[i], i))
    if policy == "largest":
        return min(members, key=lambda i: (-sizes[i], i))
    raise ValueError(f"unknown keep policy {policy!r}; use largest, train or first")
