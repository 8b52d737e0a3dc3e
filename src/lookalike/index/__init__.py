"""Vector indexes: one protocol (:mod:`.base`), three placements, a module each (as qdrant-client splits its
local and remote clients).

- :class:`ExactIndex` — NumPy brute force in memory; the reference the others are tested against.
- :class:`EdgeIndex` — Qdrant's engine in-process (qdrant-edge), stored in a folder: the default.
  Chosen over qdrant-client's local mode by ``benchmarks/index_stores.py`` (see README).
  The shard is opened per operation (or per :meth:`EdgeIndex.session`) and closed right after, so a
  notebook and the App server can use one store in turn.
- :class:`QdrantIndex` — a Qdrant server or cluster by URL (+ API key) through qdrant-client's query API;
  also runs on qdrant-client's local mode (``path=``), which is how the tests exercise it offline.

Points are keyed by a UUID derived from the row id (the sample id; a box's label id); the payload carries
``sample_id``, ``label``, ``split``, ``tags``, ``filepath`` and ``content_hash`` (a box's also ``label_id``,
``label_tags``, ``box`` and ``box_size``). ``where`` filters (``{"label": "cat"}``,
``{"tags": ["a", "b"]}``: any of) run inside Qdrant.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .base import PAYLOAD_KEYS, Hit, VectorIndex, Where, best_score, collection_name, point_id
from .edge import EdgeIndex
from .exact import ExactIndex
from .server import QdrantIndex

if TYPE_CHECKING:
    from ..config import IndexConfig

__all__ = ["PAYLOAD_KEYS", "EdgeIndex", "ExactIndex", "Hit", "QdrantIndex", "VectorIndex", "Where", "best_score",
           "collection_name", "open_index", "point_id"]


def open_index(dataset: str, model_key: str, dim: int, url: str | None = None, api_key: str | None = None,
               home: Path | None = None, rebuild: bool = False, settings: IndexConfig | None = None
               ) -> EdgeIndex | QdrantIndex:
    """The collection for (``dataset``, ``model_key``): on the server at ``url`` (laid out and written as
    ``settings`` say: shards, replicas, quantization, consistency), else the embedded store under ``home``.
    ``rebuild`` drops an existing collection first."""
    from ..config import default_home

    name = collection_name(dataset, model_key)
    if url:
        return QdrantIndex.connect(name, dim, url=url, api_key=api_key, rebuild=rebuild, settings=settings)
    path = (home or default_home()) / "qdrant" / name
    if rebuild:
        shutil.rmtree(path, ignore_errors=True)
    return EdgeIndex(path, dim, model_key)
