"""lookalike's Qdrant index as a fiftyone-brain similarity backend, so the App's sort-by-similarity (by
selected samples and by text prompt) and ``dataset.sort_by_similarity(...)`` search our index.

FiftyOne's own Qdrant backend needs a server and calls ``QdrantClient.search``, which qdrant-client 1.16
removed; this one serves the embedded store and a server alike, through :mod:`lookalike.index`.
``lookalike.embed`` registers it for every embedding run under :func:`brain_key` (``lookalike_<model>``).
The brain run records only which embedding run it serves; the store's place and the API key come from
the run and the config when the index is opened, so no secret is stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from fiftyone.brain.similarity import Similarity, SimilarityConfig, SimilarityIndex

from .config import load_config
from .datasets import find_label_field, sample_table
from .runs import HASH_FIELD, EmbeddingRun, index_payload

if TYPE_CHECKING:
    import fiftyone as fo

    from .models import Embedder

METHOD = "lookalike"


def brain_key(model: str) -> str:
    """The brain key of the similarity index over ``model``'s vectors: ``lookalike_`` + the model name
    with every other character than letters and digits made ``_`` (``clip:ViT-B-32`` -> ``lookalike_clip_ViT_B_32``)."""
    return f"{METHOD}_{re.sub(r'[^A-Za-z0-9]+', '_', model).strip('_')}"


class LookalikeSimilarityConfig(SimilarityConfig):
    """Which embedding run (``run_key``: the model key recorded by ``lookalike.embed``) the index serves."""

    def __init__(self, run_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_key = run_key

    @property
    def method(self) -> str:
        return METHOD

    @property
    def max_k(self) -> int | None:
        return None

    @property
    def supports_least_similarity(self) -> bool:
        return False

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


class LookalikeSimilarityIndex(SimilarityIndex):
    """A brain similarity index that reads and writes the collection of one lookalike embedding run.

    The embedded store is opened per call, so the App server and a notebook can take turns with it.
    Scores (``dist_field``) are cosine similarities, higher is closer, as in FiftyOne's Qdrant backend.
    """

    def __init__(self, samples: Any, config: LookalikeSimilarityConfig, brain_key: str, backend: Any = None) -> None:
        super().__init__(samples, config, brain_key, backend=backend)
        self._run = EmbeddingRun.get(samples._root_dataset, config.run_key)
        self._settings = load_config()
        self._index = self._run.open_index(self._settings)

    @property
    def total_index_size(self) -> int:
        return self._index.count()

    @property
    def sample_ids(self) -> np.ndarray:
        return np.array(sorted(self._index.payloads()))

    def add_to_index(self, embeddings: np.ndarray, sample_ids: Sequence[str], label_ids: Any = None,
                     overwrite: bool = True, allow_existing: bool = True, warn_existing: bool = False,
                     reload: bool = True) -> None:
        """Upsert vectors of samples, with the payload :func:`lookalike.runs.index_payload` gives them."""
        if label_ids is not None:
            raise ValueError("lookalike indexes whole images, not patches")
        ids = [str(i) for i in sample_ids]
        if not overwrite:
            present = set(self._index.payloads())
            keep = [n for n, i in enumerate(ids) if i not in present]
            ids, embeddings = [ids[n] for n in keep], np.asarray(embeddings)[keep]
        dataset = self._samples._root_dataset
        view = dataset.select(ids, ordered=True)
        table = sample_table(view, find_label_field(dataset, self._settings.dataset.label_field))
        hashes = view.values(HASH_FIELD) if dataset.has_field(HASH_FIELD) else [None] * len(view)
        payloads = [index_payload(table, n, hashes[n]) for n in range(len(view))]
        self._index.upsert(table["id"], np.asarray(embeddings, dtype=np.float32), payloads)
        if reload:
            self.reload()

    def remove_from_index(self, sample_ids: Sequence[str] | None = None, label_ids: Any = None,
                          allow_missing: bool = True, warn_missing: bool = False, reload: bool = True) -> None:
        self._index.delete([str(i) for i in sample_ids or []])
        if reload:
            self.reload()

    def get_embeddings(self, sample_ids: Sequence[str] | str | None = None, label_ids: Any = None,
                       allow_missing: bool = True, warn_missing: bool = False) -> tuple[np.ndarray, np.ndarray, None]:
        present = self._index.payloads()
        wanted = sorted(present) if sample_ids is None else [sample_ids] if isinstance(sample_ids, str) \
            else [str(i) for i in sample_ids]
        found = [i for i in wanted if i in present]
        if len(found) < len(wanted) and not allow_missing:
            missing = [i for i in wanted if i not in present]
            raise ValueError(f"{len(missing)} samples are not in the index, e.g. {missing[0]}")
        return self._index.vectors(found), np.array(found), None

    def cleanup(self) -> None:
        """Nothing to delete: the collection belongs to the embedding run, which other analyses use."""

    def get_model(self) -> _PromptModel:
        """The run's model, rebuilt from its recorded spec (FiftyOne's own would look in its zoo)."""
        if self._model is None:
            self._model: _PromptModel | None = _PromptModel(self._run.embedder(self._settings))
        return self._model

    def _kneighbors(self, query: Any = None, k: int | None = None, reverse: bool = False,
                    aggregation: str | None = None, return_dists: bool = False) -> tuple[Any, ...]:
        if query is None:
            raise ValueError("full-index neighbours are not served here; use lookalike.knn_graph()")
        if reverse:
            raise ValueError("lookalike does not sort by least similarity")
        if aggregation not in (None, "mean"):
            raise ValueError(f"unsupported aggregation {aggregation!r}; use 'mean'")
        vectors = self._query_vectors(query)
        if aggregation == "mean" or vectors.ndim == 1:
            vectors = vectors.reshape(-1, vectors.shape[-1]).mean(axis=0, keepdims=True)
            single = True
        else:
            single = False
        where = {"sample_id": [str(i) for i in self.current_sample_ids]} if self.has_view else None
        hits = self._index.query(vectors, k or self.total_index_size, where)
        ids: list[Any] = [[h.id for h in row] for row in hits]
        scores: list[Any] = [[h.score for h in row] for row in hits]
        if single:
            ids, scores = ids[0], scores[0]
        return (ids, None, scores) if return_dists else (ids, None)

    def _query_vectors(self, query: Any) -> np.ndarray:
        """Vectors as given, or the stored vectors of sample ids."""
        if isinstance(query, str):
            query = [query]
        query = np.asarray(query)
        if np.issubdtype(query.dtype, np.number):
            return query.astype(np.float32)
        try:
            return self._index.vectors([str(i) for i in query])
        except KeyError as e:
            raise ValueError(f"sample {e.args[0]} is not in the index (its image may be unreadable)") from e

    @classmethod
    def _from_dict(cls, d: dict[str, Any], samples: Any, config: LookalikeSimilarityConfig,
                   brain_key: str) -> LookalikeSimilarityIndex:
        return cls(samples, config, brain_key)


def register_similarity(dataset: fo.Dataset, run: EmbeddingRun, has_text: bool) -> str:
    """Register (or refresh) the similarity index over an embedding run; returns its brain key."""
    key = brain_key(run.model)
    config = LookalikeSimilarityConfig(run_key=run.model_key, model=run.model, supports_prompts=has_text)
    method = config.build()
    if key in dataset.list_brain_runs():
        dataset.delete_brain_run(key)  # our cleanup() keeps the collection
    method.register_run(dataset, key)
    method.save_run_results(dataset, key, method.initialize(dataset, key))
    return key
