"""lookalike's Qdrant index as a fiftyone-brain similarity backend, so the App's sort-by-similarity (by
selected samples and by text prompt) and ``dataset.sort_by_similarity(...)`` search our index.

FiftyOne's own Qdrant backend needs a server and calls ``QdrantClient.search``, which qdrant-client 1.16
removed; this one serves the embedded store and a server alike, through :mod:`lookalike.index`.
``lookalike.embed`` registers it for every embedding run under :func:`brain_key` (``lookalike_<model>``).
The brain run records only which embedding run it serves; the store's place and the API key come from
the run and the config when the index is opened, so no secret is stored.

Distances are cosine distances (1 - cosine similarity, lower is closer), as fiftyone-brain's default (sklearn)
backend gives them, so its own methods read them right: ``compute_uniqueness``, ``compute_near_duplicates``
(a distance threshold) and ``compute_leaky_splits`` accept ``similarity_index=<our key>``; their full-index
neighbours come from the run's stored kNN graph (:meth:`lookalike.context.RunRows.graph`), not from a
pairwise matrix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from fiftyone.brain.similarity import DuplicatesMixin, Similarity, SimilarityConfig, SimilarityIndex

from .config import load_config
from .context import GRAPH_K, RunRows
from .datasets import box_table, find_label_field, sample_table
from .index import Hit
from .runs import HASH_FIELD, EmbeddingRun, index_payload

if TYPE_CHECKING:
    import fiftyone as fo

    from .models import Embedder

METHOD = "lookalike"


def brain_key(model: str, patches: str | None = None) -> str:
    """The brain key of the similarity index over ``model``'s vectors: ``lookalike_`` + the model name
    with every other character than letters and digits made ``_`` (``clip:ViT-B-32`` -> ``lookalike_clip_ViT_B_32``);
    over the boxes of ``patches``, ``__`` + the field after it."""
    key = f"{METHOD}_{re.sub(r'[^A-Za-z0-9]+', '_', model).strip('_')}"
    return key if patches is None else f"{key}__{re.sub(r'[^A-Za-z0-9_]+', '_', patches)}"


class LookalikeSimilarityConfig(SimilarityConfig):
    """Which embedding run (``run_key``: the model key recorded by ``lookalike.embed``) the index serves."""

    def __init__(self, run_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_key = run_key

    @property
    def method(self) -> str:
        return METHOD

    @property
    def metric(self) -> str:
        return "cosine"

    @property
    def max_k(self) -> int | None:
        return None

    @property
    def supports_least_similarity(self) -> bool:
        return True

    @property
    def supported_aggregations(self) -> tuple[str, ...]:
        return ("mean",)


class LookalikeSimilarity(Similarity):
    """Factory of :class:`LookalikeSimilarityIndex` (FiftyOne finds it by the config's class name)."""

    def initialize(self, samples: Any, brain_key: str) -> LookalikeSimilarityIndex:
        return LookalikeSimilarityIndex(samples, self.config, brain_key, backend=self)


class _PromptModel:
    """What the brain needs of a model for text prompts: ``embed_prompts`` inside a ``with`` block."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.can_embed_prompts = embedder.has_text

    def __enter__(self) -> _PromptModel:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def embed_prompts(self, prompts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed_text(list(prompts))


def _digest(vector: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(vector, dtype=np.float32).tobytes(), digest_size=16).digest()


@dataclass
class _Neighbours:
    """The current rows' neighbours (positions in ``ids``, nearest first, cosine distances), and which row a
    stored vector is (built on first use: fiftyone-brain's uniqueness asks by the vectors it was given)."""

    ids: list[str]
    indices: np.ndarray
    dists: np.ndarray
    _index_vectors: Callable[[], dict[bytes, int]]
    _rows: dict[bytes, int] | None = None

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def first(self, k: int) -> _Neighbours:
        return dataclasses.replace(self, indices=self.indices[:, :k], dists=self.dists[:, :k])

    def positions(self, vectors: np.ndarray) -> np.ndarray:
        """Each vector's row where it is, byte for byte, a current row's stored vector; -1 where not."""
        if self._rows is None:
            self._rows = self._index_vectors()
        return np.array([self._rows.get(_digest(v), -1) for v in vectors], dtype=np.int64)


def _answer(samples: list[Any], labels: list[Any] | None, dists: list[Any], single: bool,
            return_dists: bool) -> tuple[Any, ...]:
    """fiftyone-brain's shape of a query's answer: per query (one query: unwrapped) its neighbours' sample ids,
    label ids (of boxes; else None) and, asked for, their distances."""
    if single:
        samples, dists = samples[0], dists[0]
        labels = labels[0] if labels is not None else None
    return (samples, labels, dists) if return_dists else (samples, labels)


class LookalikeSimilarityIndex(SimilarityIndex, DuplicatesMixin):
    """A brain similarity index that reads and writes the collection of one lookalike embedding run: of
    samples, or of the boxes of a Detections field (``config.patches_field``: its points are keyed by label id,
    as fiftyone-brain's own backends key patches).

    The embedded store is opened per call, so the App server and a notebook can take turns with it.
    Distances (``dist_field``) are cosine distances, lower is closer, as in fiftyone-brain's sklearn backend.
    """

    def __init__(self, samples: Any, config: LookalikeSimilarityConfig, brain_key: str, backend: Any = None) -> None:
        SimilarityIndex.__init__(self, samples, config, brain_key, backend=backend)
        DuplicatesMixin.__init__(self)
        self._run = EmbeddingRun.get(samples._root_dataset, config.run_key, config.patches_field)
        self._settings = load_config()
        self._index = self._run.open_index(self._settings)
        self._neighbours: _Neighbours | None = None
        self._current: tuple[Any, list[str]] | None = None  # fiftyone-brain's current ids, and as strings

    @property
    def _boxes(self) -> str | None:
        return self.config.patches_field

    def _points(self) -> tuple[list[str], list[str]]:
        """Every point's row id (sorted) and sample id."""
        payloads = self._index.payloads()
        rows = sorted(payloads)
        return rows, [str(payloads[r].get("sample_id", r)) for r in rows]

    @property
    def total_index_size(self) -> int:
        return self._index.count()

    @property
    def sample_ids(self) -> np.ndarray:
        return np.array(self._points()[1])

    @property
    def label_ids(self) -> np.ndarray | None:
        return np.array(self._points()[0]) if self._boxes else None

    def add_to_index(self, embeddings: np.ndarray, sample_ids: Sequence[str], label_ids: Any = None,
                     overwrite: bool = True, allow_existing: bool = True, warn_existing: bool = False,
                     reload: bool = True) -> None:
        """Upsert vectors of samples (of boxes: ``label_ids``), with the payload
        :func:`lookalike.runs.index_payload` gives them."""
        if (label_ids is None) != (self._boxes is None):
            raise ValueError(f"this index holds {self._run.rows}: give label_ids exactly when it holds boxes")
        ids = [str(i) for i in (sample_ids if label_ids is None else label_ids)]
        vectors = np.asarray(embeddings, dtype=np.float32)
        if not overwrite:
            present = set(self._index.payloads())
            keep = [n for n, i in enumerate(ids) if i not in present]
            ids, vectors = [ids[n] for n in keep], vectors[keep]
        dataset = self._samples._root_dataset
        if self._boxes:
            table = box_table(dataset.select(sorted({str(i) for i in sample_ids})), self._boxes, ids)
            hashes: list[str | None] = [None] * len(table["id"])
        else:
            view = dataset.select(ids, ordered=True)
            table = sample_table(view, find_label_field(dataset, self._settings.dataset.label_field))
            hashes = view.values(HASH_FIELD) if dataset.has_field(HASH_FIELD) else [None] * len(view)
        if len(table["id"]) < len(ids):
            raise ValueError(f"{len(ids) - len(table['id'])} of the ids are not in dataset {dataset.name!r}")
        row = {i: n for n, i in enumerate(ids)}
        payloads = [index_payload(table, n, hashes[n]) for n in range(len(table["id"]))]
        self._index.upsert(table["id"], vectors[[row[i] for i in table["id"]]], payloads)
        if reload:
            self.reload()

    def remove_from_index(self, sample_ids: Sequence[str] | None = None, label_ids: Any = None,
                          allow_missing: bool = True, warn_missing: bool = False, reload: bool = True) -> None:
        if label_ids is not None:
            self._index.delete([str(i) for i in label_ids])
        elif self._boxes and sample_ids is not None:  # every box of these samples
            gone = {str(i) for i in sample_ids}
            rows, samples = self._points()
            self._index.delete([r for r, s in zip(rows, samples, strict=True) if s in gone])
        else:
            self._index.delete([str(i) for i in sample_ids or []])
        if reload:
            self.reload()

    def get_embeddings(self, sample_ids: Sequence[str] | str | None = None, label_ids: Any = None,
                       allow_missing: bool = True, warn_missing: bool = False
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        rows, samples = self._points()
        given: Any = label_ids if label_ids is not None else sample_ids
        if label_ids is not None or (self._boxes is None and sample_ids is not None):
            wanted = [given] if isinstance(given, str) else [str(i) for i in given]
            present = set(rows)
            found = [i for i in wanted if i in present]
        elif sample_ids is not None:  # every box of these samples
            keep = {sample_ids} if isinstance(sample_ids, str) else {str(i) for i in sample_ids}
            wanted = found = [r for r, s in zip(rows, samples, strict=True) if s in keep]
        else:
            wanted = found = rows
        if len(found) < len(wanted) and not allow_missing:
            missing = [i for i in wanted if i not in set(found)]
            raise ValueError(f"{len(missing)} of the ids are not in the index, e.g. {missing[0]}")
        sample_of = dict(zip(rows, samples, strict=True))
        found_samples = np.array([sample_of[i] for i in found])
        return self._index.vectors(found), found_samples, np.array(found) if self._boxes else None

    def cleanup(self) -> None:
        """Nothing to delete: the collection belongs to the embedding run, which other analyses use."""

    def get_model(self) -> _PromptModel:
        """The run's model, rebuilt from its recorded spec (FiftyOne's own would look in its zoo)."""
        if self._model is None:
            self._model: _PromptModel | None = _PromptModel(self._run.embedder(self._settings))
        return self._model

    def _current_ids(self) -> list[str]:
        """The rows of the current view, in fiftyone-brain's order: full-index answers are positions in it (made
        once per view: its uniqueness asks ten rows at a time)."""
        current = self.current_label_ids if self._boxes else self.current_sample_ids
        if self._current is None or self._current[0] is not current:
            self._current = (current, [str(i) for i in current])
        return self._current[1]

    def _search(self, vectors: np.ndarray, k: int, min_score: float | None = None) -> list[list[Hit]]:
        """The index's answer among the current rows: those of a small view named, a large view's others left
        out (fiftyone-brain's duplicate search asks within every row but the duplicates)."""
        if not self.has_view:
            return self._index.query(vectors, k, min_score=min_score)
        current = self._current_ids()
        if 2 * len(current) < self.total_index_size:
            return self._index.query(vectors, k, {"label_id" if self._boxes else "sample_id": current},
                                     min_score=min_score)
        inside = set(current)
        others = [i for i in self._points()[0] if i not in inside]  # row ids: label ids of boxes
        return self._index.query(vectors, k, exclude=others, min_score=min_score)

    def _graph(self, k: int) -> _Neighbours:
        """Every current row's ``k`` nearest current rows (itself excluded) as positions in :meth:`_current_ids`,
        with their cosine distances: the run's stored kNN graph, or, on a view, the view's own."""
        current = self._current_ids()
        kept = self._neighbours
        if kept is not None and (kept.ids is current or kept.ids == current) and kept.k >= min(k, len(current) - 1):
            return kept
        rows = RunRows.of(self._run, self._settings)
        if rows.ids != sorted(current):
            rows = rows.subset(set(current))
        if len(rows.ids) < len(current):
            raise ValueError(f"{len(current) - len(rows.ids)} rows of the view are not in the index")
        position = {i: n for n, i in enumerate(current)}
        to_current = np.array([position[i] for i in rows.ids], dtype=np.int64)
        if len(current) < 2:
            indices, dists = np.zeros((len(current), 0), np.int64), np.zeros((len(current), 0), np.float32)
        else:
            graph = rows.graph(k)
            indices, dists = np.empty_like(graph.indices), np.empty(graph.sims.shape, dtype=np.float32)
            indices[to_current] = to_current[graph.indices]
            dists[to_current] = 1.0 - graph.sims
        vectors = rows.vectors()
        self._neighbours = _Neighbours(current, indices, dists, lambda: {
            _digest(vectors[r]): int(to_current[r]) for r in range(len(to_current))})
        return self._neighbours

    def _kneighbors(self, query: Any = None, k: int | None = None, reverse: bool = False,
                    aggregation: str | None = None, return_dists: bool = False) -> Any:
        if query is None:  # every current row's neighbours, from the graph
            if reverse or aggregation is not None:
                raise ValueError("full-index neighbours are nearest first and per row: no reverse, no aggregation")
            graph = self._graph(k or GRAPH_K).first(k or GRAPH_K)
            return (list(graph.indices), list(graph.dists)) if return_dists else list(graph.indices)
        if aggregation not in (None, "mean"):
            raise ValueError(f"unsupported aggregation {aggregation!r}; use 'mean'")
        vectors, single = self._query_vectors(query, aggregation)
        # The stored graph is the whole run's: a view's would be computed for the occasion, so a view queries.
        if not (reverse or self.has_view) and k is not None and 1 <= k <= GRAPH_K + 1 and aggregation is None:
            known = self._graph(k - 1).positions(vectors)
            if (known >= 0).all():  # every query is a stored row: itself, then its neighbours in the graph
                return self._from_graph(known, k, single, return_dists)
        # Least similar first: the nearest to the opposite vector (cosine is odd in its query), its score negated.
        sign = -1.0 if reverse else 1.0
        hits = self._search(sign * vectors, k or self.total_index_size)
        return self._found(hits, single, return_dists, sign)

    def _radius_neighbors(self, query: Any = None, thresh: float | None = None,
                          return_dists: bool = False) -> tuple[Any, ...] | list[np.ndarray]:
        """Neighbours within cosine distance ``thresh``. For every current row (``query=None``): from the graph,
        and for a row whose whole graph list lies within ``thresh`` (it may have more), searched again in the
        index; as positions in the current rows, itself excluded."""
        if thresh is None:
            raise ValueError("give thresh, a cosine distance")
        if query is not None:
            vectors, single = self._query_vectors(query, None)
            hits = self._search(vectors, self.index_size, min_score=1.0 - thresh)
            return self._found(hits, single, return_dists, 1.0)
        graph = self._graph(GRAPH_K)
        indices, dists = graph.indices, graph.dists
        inds = [row[d <= thresh] for row, d in zip(indices, dists, strict=True)]
        near = [list(d[d <= thresh]) for d in dists]
        full = np.flatnonzero(dists[:, -1] <= thresh) if dists.shape[1] else np.empty(0, dtype=np.int64)
        if len(full):
            current = self._current_ids()
            position = {i: n for n, i in enumerate(current)}
            hits = self._search(self._index.vectors([current[r] for r in full]), self.index_size,
                                min_score=1.0 - thresh)
            for r, row in zip(full, hits, strict=True):
                found = [(position[h.id], 1.0 - h.score) for h in row if h.id in position and position[h.id] != r]
                inds[r] = np.array([p for p, _ in found], dtype=np.int64)
                near[r] = [d for _, d in found]
        return (inds, [np.array(d, dtype=np.float32) for d in near]) if return_dists else inds

    def _from_graph(self, rows: np.ndarray, k: int, single: bool, return_dists: bool) -> tuple[Any, ...]:
        """The answer to queries that are the stored vectors of these current rows, from the graph."""
        graph = self._graph(k - 1).first(k - 1)
        order = [[r, *graph.indices[r]] for r in rows]
        current_samples = self.current_sample_ids
        samples: list[Any] = [[str(current_samples[i]) for i in row] for row in order]
        labels: list[Any] | None = None
        if self._boxes:
            current_labels = self.current_label_ids
            labels = [[str(current_labels[i]) for i in row] for row in order]
        dists: list[Any] = [[0.0, *map(float, graph.dists[r])] for r in rows]
        return _answer(samples, labels, dists, single, return_dists)

    def _found(self, hits: list[list[Hit]], single: bool, return_dists: bool, sign: float) -> tuple[Any, ...]:
        """fiftyone-brain's answer to a query: sample ids, label ids (of boxes) and cosine distances per query."""
        samples: list[Any] = [[str(h.payload.get("sample_id", h.id)) for h in row] for row in hits]
        labels: list[Any] | None = [[h.id for h in row] for row in hits] if self._boxes else None
        dists: list[Any] = [[1.0 - sign * h.score for h in row] for row in hits]
        return _answer(samples, labels, dists, single, return_dists)

    def _query_vectors(self, query: Any, aggregation: str | None) -> tuple[np.ndarray, bool]:
        """The query's vectors (as given, or the stored vectors of ids; their mean under ``aggregation``),
        and whether it is a single query."""
        single = isinstance(query, str)
        query = np.asarray([query] if single else query)
        if np.issubdtype(query.dtype, np.number):
            single = query.ndim == 1
            vectors = query.astype(np.float32).reshape(-1, query.shape[-1])
        else:
            try:
                vectors = self._index.vectors([str(i) for i in query])
            except KeyError as e:
                raise ValueError(f"{e.args[0]} is not in the index (its image may be unreadable)") from e
        if aggregation == "mean":
            return vectors.mean(axis=0, keepdims=True), True
        return vectors, single

    @classmethod
    def _from_dict(cls, d: dict[str, Any], samples: Any, config: LookalikeSimilarityConfig,
                   brain_key: str) -> LookalikeSimilarityIndex:
        return cls(samples, config, brain_key)


def register_similarity(dataset: fo.Dataset, run: EmbeddingRun, has_text: bool) -> str:
    """Register (or refresh) the similarity index over an embedding run; returns its brain key."""
    key = brain_key(run.model, run.patches_field)
    config = LookalikeSimilarityConfig(run_key=run.key, model=run.model, supports_prompts=has_text,
                                       patches_field=run.patches_field)
    method = config.build()
    if key in dataset.list_brain_runs():
        dataset.delete_brain_run(key)  # our cleanup() keeps the collection
    method.register_run(dataset, key)
    method.save_run_results(dataset, key, method.initialize(dataset, key))
    return key
