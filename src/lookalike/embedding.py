"""Streaming image embedding with a content-addressed cache.

Files are hashed (SHA-256 of their bytes); only hashes the cache lacks for this model are decoded
(in DataLoader worker processes) and run through the model in batches. Each batch is committed to the
cache as soon as it is done, so an interrupted run loses at most one batch and a rerun resumes.
Unreadable files are reported with a reason and skipped; the run goes on.

The decode that feeds the model also makes each image's facts (a pixel hash, a grey thumbnail and quality
measures, :func:`lookalike.thumbnails.image_facts`), cached by content hash, so finding duplicates or
quality issues later decodes nothing that was embedded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .decoding import Box, Source, box_problem, decode_batches, whole_images
from .thumbnails import THUMB, ImageFacts, Thumbnails

if TYPE_CHECKING:
    from .engines import Engine
    from .models import Embedder

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
# A file modified this recently is hashed again next time rather than trusted by its signature: a write in the
# same tick of a coarse file-system clock would leave size and time unchanged (git's "racily clean" entries).
RACY_NS = 2_000_000_000


def content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_files(paths: Sequence[str], cache: EmbeddingCache | None = None) -> tuple[list[str | None], dict[int, str]]:
    """Each file's :func:`content_hash` (None where it cannot be read) and the errors, by position. With a
    ``cache``, a file whose size, modification time and inode are those recorded when it was last hashed
    keeps that hash unread, as git's index does: rereading a million unchanged files took minutes."""
    hashes: list[str | None] = [None] * len(paths)
    errors: dict[int, str] = {}
    stats: dict[int, tuple[int, int, int]] = {}
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
            stats[i] = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError as e:
            errors[i] = f"cannot read file: {e.strerror or e}"
    known = cache.file_hashes([paths[i] for i in stats]) if cache else {}
    fresh: dict[str, tuple[tuple[int, int, int], str]] = {}
    for i, stat in stats.items():
        seen = known.get(paths[i])
        if seen is not None and seen[0] == stat:
            hashes[i] = seen[1]
            continue
        try:
            hashes[i] = h = content_hash(paths[i])
        except OSError as e:
            errors[i] = f"cannot read file: {e.strerror or e}"
            continue
        if time.time_ns() - stat[1] > RACY_NS:
            fresh[paths[i]] = (stat, h)
    if cache and fresh:
        cache.put_file_hashes(fresh)
    return hashes, errors


class EmbeddingCache:
    """Vectors by (model key, content hash) in one SQLite file; safe to share between runs and datasets."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT, hash TEXT, vector BLOB, PRIMARY KEY (model, hash))"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS facts (hash TEXT PRIMARY KEY, pixel_hash TEXT, width INTEGER, "
            "height INTEGER, thumb BLOB)"
        )
        if "stats" not in {row[1] for row in self._db.execute("PRAGMA table_info(facts)")}:
            # Caches from before the quality measures: their images are decoded again once (known_facts).
            self._db.execute("ALTER TABLE facts ADD COLUMN stats BLOB")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, "
            "hash TEXT)"
        )
        self._db.commit()

    def _select(self, sql: str, params: Sequence[Any], keys: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` (ending in ``... IN``) for the keys, in chunks SQLite accepts."""
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            yield from self._db.execute(f"{sql} ({','.join('?' * len(chunk))})", [*params, *chunk])

    def get(self, model_key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        rows = self._select("SELECT hash, vector FROM vectors WHERE model = ? AND hash IN", [model_key], hashes)
        return {h: np.frombuffer(blob, dtype=np.float32) for h, blob in rows}

    def put(self, model_key: str, items: dict[str, np.ndarray]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
            [(model_key, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items.items()],
        )
        self._db.commit()

    def thumbnails(self, hashes: Sequence[str]) -> Thumbnails:
        """The cached facts of these images (every hash must be cached), in order, as one block of arrays."""
        at: dict[str, list[int]] = {}
        for row, h in enumerate(hashes):
            at.setdefault(h, []).append(row)
        out = Thumbnails.empty(len(hashes))
        found = 0
        for h, pixel_hash, width, height, thumb, stats in self._select(
                "SELECT hash, pixel_hash, width, height, thumb, stats FROM facts WHERE hash IN", [], hashes):
            for row in at[h]:
                out.set(row, pixel_hash, np.frombuffer(thumb, dtype=np.float32).reshape(THUMB, THUMB), width, height,
                        np.frombuffer(stats, dtype=np.float32) if stats is not None else None)
            found += 1
        if found < len(at):
            raise KeyError(f"{len(at) - found} images have no cached facts")
        return out

    def known_facts(self, hashes: Sequence[str]) -> set[str]:
        """The hashes whose facts are cached, quality measures included (without reading them)."""
        return {h for (h,) in self._select("SELECT hash FROM facts WHERE stats IS NOT NULL AND hash IN", [], hashes)}

    def put_facts(self, items: dict[str, ImageFacts]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO facts (hash, pixel_hash, width, height, thumb, stats) VALUES (?, ?, ?, ?, ?, ?)",
            [(h, f.pixel_hash, f.width, f.height, np.asarray(f.thumb, np.float32).tobytes(),
              np.asarray(f.stats, np.float32).tobytes()) for h, f in items.items()],
        )
        self._db.commit()

    def file_hashes(self, paths: Sequence[str]) -> dict[str, tuple[tuple[int, int, int], str]]:
        """The (size, mtime_ns, inode) each file had when it was last hashed, and that hash."""
        rows = self._select("SELECT path, size, mtime_ns, inode, hash FROM files WHERE path IN", [], paths)
        return {p: ((size, mtime, inode), h) for p, size, mtime, inode, h in rows}

    def put_file_hashes(self, items: dict[str, tuple[tuple[int, int, int], str]]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                             [(p, *stat, h) for p, (stat, h) in items.items()])
        self._db.commit()

    def count(self, model_key: str) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vectors WHERE model = ?", [model_key]).fetchone()[0])

    def close(self) -> None:
        self._db.close()


@dataclass
class EmbedResult:
    """Per input file: its hash (``None`` if unreadable), its vector row or its error."""

    hashes: list[str | None]
    vectors: dict[int, np.ndarray] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    computed: int = 0
    cached: int = 0
    vector_hashes: dict[int, str] = field(default_factory=dict)  # imported vectors: a digest of each

    def matrix(self, indices: Sequence[int]) -> np.ndarray:
        return np.stack([self.vectors[i] for i in indices]).astype(np.float32, copy=False)


def cache_image_facts(paths: Sequence[str], hashes: Sequence[str], cache: EmbeddingCache, num_workers: int = 2,
                      progress: Progress | None = None) -> dict[str, str]:
    """Decode the files whose facts the cache lacks (by content hash) and cache their facts; return the errors
    of files that could not be decoded, by hash."""
    known = cache.known_facts(hashes)
    todo = {h: p for p, h in zip(paths, hashes, strict=True) if h not in known}
    order = list(todo)
    errors: dict[str, str] = {}
    done = 0
    if progress:
        progress(0, len(order))
    for batch in decode_batches(whole_images([todo[h] for h in order]), None, 256, num_workers):
        cache.put_facts({order[j]: f for j, _, f, _ in batch if f is not None})
        errors.update({order[j]: err for j, _, _, err in batch if err is not None})
        done += len(batch)
        if progress:
            progress(done, len(order))
    return errors


def cache_key(embedder: Embedder) -> str:
    """The cache's name for an embedder's vectors: its key (weights, preprocessing, precision) and the decoding
    version (:data:`lookalike.images.DECODING_VERSION`), so vectors of pixels decoded otherwise are not reused."""
    from .images import DECODING_VERSION

    return f"{embedder.key}+decoding{DECODING_VERSION}"


def embed_files(
    paths: Sequence[str],
    embedder: Embedder,
    cache: EmbeddingCache | None = None,
    batch_size: int = 32,
    num_workers: int = 2,
    progress: Progress | None = None,
    engine: Engine | None = None,
    on_batch: Callable[[dict[int, tuple[str, np.ndarray]]], None] | None = None,
) -> EmbedResult:
    """Embed image files, reusing cached vectors; see the module docstring. ``engine``: where the decoding and
    the model run (:mod:`lookalike.engines`; default: here). ``on_batch``: called with each batch's new
    (content hash, vector) by input position, once the cache holds them (to write them on as they come)."""
    hashes, errors = hash_files(paths, cache)
    result = EmbedResult(hashes=hashes, errors=errors)
    _embed_missing(result, lambda rows: [Source(paths[i], (i,)) for i in rows], embedder, cache, batch_size,
                   num_workers, progress, engine, on_batch, len(paths))
    for i, err in result.errors.items():
        log.info("skipped %s: %s", paths[i], err)
    return result


def box_key(content_hash: str, box: Box, margin: float) -> str:
    """The cache key of a box's vector: its image's content and the crop (box and margin), so a moved box or
    another margin is a new vector and an unchanged one is never embedded again."""
    crop = json.dumps([round(float(v), 6) for v in (*box, margin)])
    return f"{content_hash}:{hashlib.blake2b(crop.encode(), digest_size=8).hexdigest()}"


def embed_boxes(
    paths: Sequence[str],
    boxes: Sequence[Box],
    margin: float,
    embedder: Embedder,
    cache: EmbeddingCache | None = None,
    batch_size: int = 32,
    num_workers: int = 2,
    progress: Progress | None = None,
    engine: Engine | None = None,
    on_batch: Callable[[dict[int, tuple[str, np.ndarray]]], None] | None = None,
) -> EmbedResult:
    """Embed boxes: row ``i`` is ``boxes[i]`` (relative ``[x, y, w, h]``) of the image ``paths[i]``, widened by
    ``margin``. Each image is decoded once for all its boxes; vectors are cached by :func:`box_key`, so a
    rerun or a resumed run embeds only new or changed boxes. ``hashes`` holds each row's key; a box that
    cannot be embedded (outside the image, degenerate, too small, its image unreadable) gets its reason in
    ``errors``."""
    files = list(dict.fromkeys(paths))
    file_hashes, file_errors = hash_files(files, cache)
    hash_of = dict(zip(files, file_hashes, strict=True))
    error_of = {files[i]: e for i, e in file_errors.items()}
    result = EmbedResult(hashes=[None] * len(paths))
    for i, (path, box) in enumerate(zip(paths, boxes, strict=True)):
        problem = error_of.get(path) or box_problem(box)
        if problem:
            result.errors[i] = problem
        else:
            result.hashes[i] = box_key(hash_of[path] or "", box, margin)

    def sources(rows: list[int]) -> list[Source]:
        by_image: dict[str, list[int]] = {}
        for i in rows:
            by_image.setdefault(paths[i], []).append(i)
        return [Source(path, tuple(at), tuple(tuple(boxes[i]) for i in at), margin)  # type: ignore[misc]
                for path, at in by_image.items()]

    return _embed_missing(result, sources, embedder, cache, batch_size, num_workers, progress, engine, on_batch,
                          len(paths), what="boxes")


def _embed_missing(
    result: EmbedResult,
    sources: Callable[[list[int]], list[Source]],
    embedder: Embedder,
    cache: EmbeddingCache | None,
    batch_size: int,
    num_workers: int,
    progress: Progress | None,
    engine: Engine | None,
    on_batch: Callable[[dict[int, tuple[str, np.ndarray]]], None] | None,
    total_rows: int,
    what: str = "files",
) -> EmbedResult:
    """Fill ``result`` with a vector for every row that has a key (``result.hashes``): from the cache, else
    embedded from ``sources(rows)``, committed batch by batch; rows sharing a key share its vector."""
    keys = result.hashes
    cached_as = cache_key(embedder)
    known = cache.get(cached_as, [h for h in keys if h]) if cache else {}
    todo: dict[str, int] = {}  # key -> first row carrying it
    for i, h in enumerate(keys):
        if h is None:
            continue
        if h in known:
            result.vectors[i] = known[h]
            result.cached += 1
        else:
            todo.setdefault(h, i)
    total = len(todo)
    if progress:
        progress(0, total)
    if total:
        from .engines import LocalEngine

        done = 0
        for batch in (engine or LocalEngine()).embed(sources(list(todo.values())), embedder, batch_size,
                                                     num_workers):
            result.errors.update({row: err for row, _, _, err in batch if err is not None})
            new = {row: v for row, v, _, _ in batch if v is not None}
            if cache:  # committed batch by batch: an interrupted run resumes from here
                cache.put_facts({h: f for row, _, f, _ in batch if f is not None and (h := keys[row])})
                cache.put(cached_as, {keys[i] or "": v for i, v in new.items()})
            result.vectors.update(new)
            result.computed += len(new)
            if on_batch:
                on_batch({i: (keys[i] or "", v) for i, v in new.items()})
            done += len(batch)
            if progress:
                progress(done, total)
        # Rows with the same key share the vector (or the error) of the first one embedded.
        for i, h in enumerate(keys):
            if h is not None and i not in result.vectors and i not in result.errors:
                first = todo[h]
                if first in result.vectors:
                    result.vectors[i] = result.vectors[first]
                else:
                    result.errors[i] = result.errors[first]
    if result.errors:  # one line: the summary (and the CLI) list them
        log.warning("%d of %d %s skipped: unreadable or not embeddable (their reasons: the summary's `failed`, "
                    "the field embed_error)", len(result.errors), total_rows, what)
    return result
