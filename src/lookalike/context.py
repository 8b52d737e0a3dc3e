"""What every analysis starts from, resolved once: :class:`Context` (the samples asked about, a dataset or
any FiftyOne view of it, their embedding run, its index, the settings) and :class:`RunRows` (the run's
indexed samples as rows: their ids, their vectors and the shared kNN graph, kept beside the store).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import Config, load_config
from .datasets import (
    box_table,
    detections_field,
    find_label_field,
    get_dataset,
    label_values,
    sample_table,
    values_in_order,
)
from .engines import engine_of
from .exceptions import ConfigError
from .graph import KnnGraph, knn, recall, update_knn
from .index import EdgeIndex, QdrantIndex, collection_name
from .label_issues import DEFAULT_K
from .runs import HASH_FIELD, VECTOR_HASH, EmbeddingRun

if TYPE_CHECKING:
    import fiftyone as fo

log = logging.getLogger(__name__)

GRAPH_K = DEFAULT_K  # neighbours stored per sample: enough for every analysis
UPDATE_ABOVE = 0.5  # share of unchanged samples above which a stored graph is updated rather than rebuilt
RECALL_SAMPLE = 200  # rows an approximate graph is checked on against exact search (200 x N: well under 1 s)
GRAPH_SUFFIX, VECTORS_SUFFIX = ".npz", ".vectors.npy"  # files beside the store, named by the rows' keys
# What makes a row's key (a changed key is a changed row): a box's label id (two boxes alike on one image are two
# rows), its sample, its content (a box's: image and crop), an imported vector's digest.
ROW_KEYS = ("label_id", "sample_id", HASH_FIELD, VECTOR_HASH)


@dataclass
class RunRows:
    """An embedding run's indexed samples, read once: their ids (sorted), each row's key (its sample id and
    content: a changed image is a changed row), and the files derived from them beside the store, named by
    a digest of the keys (any change to the samples gives new names): the kNN graph and a copy of the
    vectors, memory-mapped (reading a million vectors out of the store, as lists of Python floats, took
    50 s in every analysis). Rows of a view (:meth:`subset`) read the run's vectors and keep their graph in
    memory: a view's graph is its own, and the run's stays as it is."""

    run: EmbeddingRun
    index: EdgeIndex | QdrantIndex
    ids: list[str]
    keys: list[str]
    folder: Path
    stem: str  # collection name: the files of every version of this run's rows start with it
    config: Config
    parent: tuple[RunRows, np.ndarray] | None = None  # (the run's rows, which of them) for a view's rows
    _vectors: np.ndarray | None = None
    _graph: KnnGraph | None = None

    @classmethod
    def of(cls, run: EmbeddingRun, config: Config) -> RunRows:
        index = run.open_index(config)
        return cls.listed(run, index, index.payloads(), config)  # a million payload dicts (1.5 GB) let go

    @classmethod
    def listed(cls, run: EmbeddingRun, index: EdgeIndex | QdrantIndex, payloads: dict[str, dict[str, Any]],
               config: Config) -> RunRows:
        """The rows of the points whose payloads these are."""
        ids = sorted(payloads)
        keys = [":".join(str(payloads[i][key]) for key in ROW_KEYS if key in payloads[i]) for i in ids]
        return cls(run=run, index=index, ids=ids, keys=keys, folder=config.index.home_path() / "graphs",
                   stem=collection_name(run.dataset, run.key), config=config)

    def subset(self, ids: set[str]) -> RunRows:
        """The rows of these samples (those of them that are indexed), in the same order."""
        rows = np.array([r for r, sid in enumerate(self.ids) if sid in ids], dtype=np.int64)
        return RunRows(run=self.run, index=self.index, ids=[self.ids[r] for r in rows],
                       keys=[self.keys[r] for r in rows], folder=self.folder, stem=self.stem, config=self.config,
                       parent=(self, rows))

    @cached_property
    def digest(self) -> str:
        """Names this version of the rows' files: any change to the samples gives a new one."""
        return hashlib.sha256("".join(self.keys).encode()).hexdigest()[:16]

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}-{self.digest}{suffix}"

    def earlier(self, suffix: str) -> list[Path]:
        """Files of earlier versions of these rows, oldest first."""
        mine = re.compile(re.escape(self.stem) + r"-[0-9a-f]{16}" + re.escape(suffix))  # not another run's
        return sorted((p for p in self.folder.glob(f"{self.stem}-*{suffix}")
                       if mine.fullmatch(p.name) and p != self.path(suffix)), key=lambda p: p.stat().st_mtime)

    def save_vectors(self, rows: Callable[[list[str]], np.ndarray]) -> None:
        """Write the copy of the vectors, ``rows(ids)`` giving those of a slice of the ids, a slice at a time;
        earlier copies go. Complete or absent: it is written under another name and renamed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.path(".partial.npy")
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(self.ids), self.run.dim))
        for start in range(0, len(self.ids), 1 << 16):
            out[start:start + (1 << 16)] = rows(self.ids[start:start + (1 << 16)])
        out.flush()
        del out
        partial.replace(self.path(VECTORS_SUFFIX))
        for stale in [*self.earlier(VECTORS_SUFFIX), *self.earlier(".partial.npy")]:
            stale.unlink()

    def vectors(self) -> np.ndarray:
        """The rows' vectors, from the copy beside the store (``embed`` writes it; read from the store where
        it is missing)."""
        if self._vectors is None:
            if self.parent is not None:
                whole, rows = self.parent
                self._vectors = np.asarray(whole.vectors()[rows])
                return self._vectors
            if not self.path(VECTORS_SUFFIX).is_file():
                stored = self.index.vectors(self.ids)
                row = {sid: r for r, sid in enumerate(self.ids)}
                self.save_vectors(lambda ids: stored[[row[i] for i in ids]])
            self._vectors = np.load(self.path(VECTORS_SUFFIX), mmap_mode="c")  # copy-on-write: writable, lazy
        return self._vectors

    def graph(self, k: int) -> KnnGraph:
        """The kNN graph of these rows, with at least ``k`` neighbours (see :func:`lookalike.knn_graph`)."""
        k = min(k, len(self.ids) - 1)
        if self._graph is not None and self._graph.k >= k:
            return self._graph.first(k)
        want = min(max(k, GRAPH_K), len(self.ids) - 1)
        config = self.config
        if self.parent is not None:  # a view's: computed, not stored
            self._graph = knn(self.vectors(), want, config.index.exact_graph_max, config.index.graph_precision,
                              engine_of(self.config))
            return self._graph.first(k)
        path = self.path(GRAPH_SUFFIX)
        if path.is_file():
            kept, _ = KnnGraph.load(path)
            if kept.k >= k:
                self._graph = kept
                return kept.first(k)
        graph: KnnGraph | None = None
        stored = self.earlier(GRAPH_SUFFIX)
        if stored:  # an earlier version of this run's samples: search only for what changed
            old, old_keys = KnnGraph.load(stored[-1])
            row = {key: r for r, key in enumerate(old_keys)}
            old_rows = np.array([row.get(key, -1) for key in self.keys])
            if old.k >= want and (old_rows >= 0).mean() >= UPDATE_ABOVE:
                graph = update_knn(old, old_rows, self.vectors(), want, precision=config.index.graph_precision)
        if graph is None:
            vectors = self.vectors()
            graph = knn(vectors, want, config.index.exact_graph_max, config.index.graph_precision, engine_of(config))
            if len(self.ids) > config.index.exact_graph_max:
                rows = np.random.default_rng(0).choice(len(self.ids), min(RECALL_SAMPLE, len(self.ids)), replace=False)
                log.info("approximate kNN graph of %d samples: recall@%d %.4f against exact search on %d rows",
                         len(self.ids), want, recall(graph, vectors, rows), len(rows))
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in stored:
            stale.unlink()
        graph.save(path, self.keys)
        self._graph = graph
        return graph.first(k)


@dataclass
class Context:
    """The samples an analysis is about, resolved once and passed down: ``collection`` (the dataset, or a
    view of it), its root ``dataset``, the embedding ``run`` and the settings. ``rows`` (the embedded samples
    of the collection, their vectors and graph) are read on first use."""

    collection: fo.Dataset | fo.DatasetView
    dataset: fo.Dataset
    config: Config
    model: str | None = None  # which embedding run: a model name or key; None: the latest
    patches: str | None = None  # rows: the boxes of this Detections field; None: the samples

    @classmethod
    def of(cls, target: str | fo.Dataset | fo.DatasetView, model: str | None = None,
           config: Config | None = None, patches: str | None = None) -> Context:
        """``target``: a dataset name, a dataset or a view (``SampleCollection``); ``model``: which embedding
        run (default the latest); ``patches``: a Detections field whose boxes are the rows (its patch run)."""
        if isinstance(target, str):
            collection: Any = get_dataset(target)
        elif hasattr(target, "_root_dataset"):
            # A view with no stages (the App's whole dataset) is the dataset: its graph and state are kept.
            collection = target._root_dataset if getattr(target, "_stages", None) == [] else target
        else:
            raise ConfigError(f"expected a dataset name or a FiftyOne dataset or view, got {type(target).__name__}")
        dataset = collection._root_dataset
        if patches:
            detections_field(dataset, patches)
        return cls(collection=collection, dataset=dataset, config=config or load_config(), model=model,
                   patches=patches)

    @cached_property
    def run(self) -> EmbeddingRun:
        """The embedding run (looked up on first use: a pixel-only finder needs none)."""
        return EmbeddingRun.get(self.dataset, self.model, self.patches)

    @property
    def name(self) -> str:
        return str(self.dataset.name)

    @property
    def is_view(self) -> bool:
        return self.collection is not self.dataset

    @cached_property
    def label_field(self) -> str | None:
        return find_label_field(self.dataset, self.config.dataset.label_field)

    @cached_property
    def rows(self) -> RunRows:
        """The run's rows, or, on a view, those of the view's samples (or boxes)."""
        whole = RunRows.of(self.run, self.config)
        if not self.is_view:
            return whole
        return whole.subset(set(self.row_ids_in(self.collection)))

    def row_ids_in(self, collection: fo.Dataset | fo.DatasetView) -> list[str]:
        """The ids of a collection's rows: its sample ids, or the label ids of its boxes."""
        if self.patches is None or getattr(collection, "_is_patches", False):  # a patch's id is its label's
            return [str(i) for i in collection.values("id")]
        return [str(i) for i in collection.values(f"{self.patches}.detections.id", unwind=True)]

    @property
    def row_key(self) -> str:
        """The payload key that names a row in the index: ``sample_id``, or a box's ``label_id``."""
        return "sample_id" if self.patches is None else "label_id"

    @property
    def ids(self) -> list[str]:
        return self.rows.ids

    def select_rows(self, ids: list[str]) -> fo.DatasetView:
        """The view of the collection holding these rows: these samples, or the samples with only these boxes."""
        if self.patches is None:
            return self.collection.select(ids)
        return self.collection.select_labels(ids=ids, fields=self.patches)

    def rows_view(self, ids: list[str]) -> fo.DatasetView:
        """The dataset's view of these rows in this order, to save: the samples, or a patches view of the boxes
        (a patch's id is its label's)."""
        if self.patches is None:
            return self.dataset.select(ids, ordered=True)
        return self.dataset.select_labels(ids=ids, fields=self.patches).to_patches(self.patches).select(
            ids, ordered=True)

    def row_values(self, name: str) -> list[Any]:
        """A field of each row, in the order of :attr:`ids`: a sample field, or an attribute of a box (None
        where a row has none)."""
        if self.patches is not None:
            return label_values(self.collection, self.patches, name, self.ids)
        if not self.dataset.has_field(name):
            return [None] * len(self.ids)
        return values_in_order(self.collection, [name], self.ids)[0]

    @cached_property
    def table(self) -> dict[str, list[Any]]:
        """The rows' columns, in the order of :attr:`ids`: id, filepath, label, split, tags; a box's also
        sample_id, label_tags and box (see :mod:`lookalike.datasets`)."""
        if self.patches is None:
            return sample_table(self.collection, self.label_field, self.ids)
        return box_table(self.collection, self.patches, self.ids)

    def graph(self, k: int) -> KnnGraph:
        return self.rows.graph(k)

    def vectors(self) -> np.ndarray:
        return self.rows.vectors()

    def state_path(self, kind: str) -> Path | None:
        """Where a finder keeps state between runs of the whole run's rows (None on a view: a view's
        results are not kept for the next run)."""
        if self.is_view:
            return None
        return self.config.index.home_path() / kind / f"{collection_name(self.name, self.run.key)}.npz"
