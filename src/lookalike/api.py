"""The verbs behind the CLI, for Python and Jupyter: :func:`embed`, :func:`similar`, :func:`mislabels`,
:func:`duplicates`, :func:`compute_map`. The record of each embedding run is :mod:`lookalike.runs`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import Config, load_config
from .datasets import find_label_field, get_dataset, sample_table, values_in_order, write_fields
from .dedup import DEFAULT_CANDIDATE_COSINE, DEFAULT_THRESHOLD, Verified, find_duplicates, open_for_keypoints
from .embedding import EmbeddingCache, EmbedResult, Progress, cache_image_facts, embed_files, hash_files
from .exceptions import ConfigError, IndexMismatchError, NotEmbeddedError
from .graph import KnnGraph, knn, recall, update_knn
from .index import EdgeIndex, Hit, QdrantIndex, collection_name, open_index
from .label_issues import DEFAULT_K, DEFAULT_MAX_SUPPORT, find_mislabels
from .models import Embedder, get_embedder
from .runs import HASH_FIELD, VECTOR_HASH, EmbeddingRun, index_payload, public_url

if TYPE_CHECKING:
    import fiftyone as fo

log = logging.getLogger(__name__)

ERROR_FIELD = "embed_error"
SIMILAR_VIEW = "lookalike-similar"
GRAPH_K = DEFAULT_K  # neighbours stored per sample: enough for every analysis
UPDATE_ABOVE = 0.5  # share of unchanged samples above which a stored graph is updated rather than rebuilt
RECALL_SAMPLE = 200  # rows an approximate graph is checked on against exact search (200 x N: well under 1 s)
GRAPH_SUFFIX, VECTORS_SUFFIX = ".npz", ".vectors.npy"  # files beside the store, named by the rows' keys


@dataclass
class EmbedSummary:
    """What :func:`embed` did."""

    dataset: str
    model: str
    model_key: str
    dim: int
    samples: int
    embedded: int
    computed: int
    cached: int
    failed: dict[str, str] = field(default_factory=dict)
    upserted: int = 0
    relabelled: int = 0  # points whose payload alone changed (tags, label): their vectors were kept
    deleted: int = 0
    collection: str = ""
    brain_key: str = ""  # the similarity index the App sorts by (lookalike.brain)


@dataclass
class Match:
    """One result of :func:`similar`."""

    id: str
    filepath: str
    label: Any
    split: str | None
    tags: list[str]
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def embed(
    name: str,
    model: str | Embedder | None = None,
    pretrained: str | None = None,
    image_size: int | None = None,
    *,
    config: Config | None = None,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> EmbedSummary:
    """Embed every sample of dataset ``name`` and sync the Qdrant collection for (dataset, model).

    Vectors come from the embedding cache where the file's bytes were seen before, so a rerun on an
    unchanged dataset does no model work and an interrupted run resumes. Unreadable images get a reason
    in the ``embed_error`` field and are left out of the index. ``rebuild`` drops the collection first.
    """
    config = config or load_config()
    dataset = get_dataset(name)
    if isinstance(model, str) or model is None:
        embedder = get_embedder(model or config.embed.model, pretrained=pretrained or config.embed.pretrained,
                                image_size=image_size or config.embed.image_size, device=config.embed.device,
                                precision=config.embed.precision)
    else:
        embedder = model
    home = config.index.home_path()
    index = open_index(name, embedder.key, embedder.dim, url=config.index.url, api_key=config.index.api_key,
                       home=home, rebuild=rebuild)
    table = sample_table(dataset, find_label_field(dataset, config.dataset.label_field))
    cache = EmbeddingCache(home / "embeddings.sqlite")
    try:
        result = embed_files(table["filepath"], embedder, cache, batch_size=config.embed.batch_size,
                             num_workers=config.embed.num_workers, progress=progress)
    finally:
        cache.close()
    run = EmbeddingRun(dataset=name, model=embedder.name, model_key=embedder.key, dim=embedder.dim,
                       spec=embedder.spec)
    return _store_run(dataset, table, result, run, index, config, has_text=embedder.has_text)


def import_vectors(
    name: str,
    vectors: np.ndarray | str | Path | None = None,
    ids: Sequence[str] | str | Path | None = None,
    *,
    from_field: str | None = None,
    model_name: str | None = None,
    config: Config | None = None,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> EmbedSummary:
    """Index vectors the user already has, as an embedding run of dataset ``name`` that every analysis,
    ``similar(sample=...)`` and the App use like a computed one.

    ``vectors``: an array or a ``.npy`` file, one row per sample: of ``ids`` (a list, or a JSON file such as
    the ``.ids.json`` that ``lookalike embeddings --out`` writes), else of the dataset's samples in order.
    ``from_field``: a FiftyOne embeddings field instead (samples without a value are left out). Everything
    is checked before anything is written (see :mod:`lookalike.imported`); rows are L2-normalised.
    ``model_name`` names the run (default ``vectors:<file stem>`` or ``field:<field>``). Image files are
    still decoded (no model) for the duplicate finder's thumbnails, cached by content hash; an unreadable
    file gets its reason in ``embed_error`` and is left out of the pixel stage only. An imported run has no
    model, so image and text queries say so.
    """
    from .imported import checked_vectors, read_ids, read_vectors, run_key

    if (vectors is None) == (from_field is None):
        raise ConfigError("give either vectors (an array or a .npy file) or from_field, not both or neither")
    config = config or load_config()
    dataset = get_dataset(name)
    table = sample_table(dataset, find_label_field(dataset, config.dataset.label_field))
    if from_field is not None:
        if not dataset.has_field(from_field):
            raise ConfigError(f"dataset {name!r} has no field {from_field!r}")
        values = dataset.values(from_field)
        listed = [i for i, x in enumerate(values) if x is not None]
        if not listed:
            raise ConfigError(f"field {from_field!r} of dataset {name!r} holds no vectors")
        shapes = {np.shape(values[i]) for i in listed}
        if len(shapes) != 1:
            raise ConfigError(f"field {from_field!r} holds vectors of several shapes: {sorted(shapes)[:3]}")
        raw: np.ndarray = np.stack([np.asarray(values[i]) for i in listed])
        id_list = [table["id"][i] for i in listed]
        source, default_name = f"field {from_field!r}", f"field:{from_field}"
    else:
        raw = vectors if isinstance(vectors, np.ndarray) else read_vectors(str(vectors))
        source = str(vectors) if not isinstance(vectors, np.ndarray) else "vectors"
        default_name = f"vectors:{Path(str(vectors)).stem}" if not isinstance(vectors, np.ndarray) else "vectors"
        if ids is None:
            id_list = list(table["id"])
        else:
            id_list = read_ids(ids) if isinstance(ids, str | Path) else [str(i) for i in ids]
    normalised = checked_vectors(raw, id_list, table["id"], source)
    model = model_name or default_name
    key, dim = run_key(model), int(normalised.shape[1])
    try:
        existing: EmbeddingRun | None = EmbeddingRun.get(dataset, key)
    except NotEmbeddedError:
        existing = None
    if existing and existing.dim != dim and not rebuild:
        raise IndexMismatchError(f"{source}: {dim}-d vectors, but the run {model!r} holds {existing.dim}-d "
                                 "ones; give another --model-name, or --rebuild to replace it")
    index = open_index(name, key, dim, url=config.index.url, api_key=config.index.api_key,
                       home=config.index.home_path(), rebuild=rebuild)
    row_of = {sid: r for r, sid in enumerate(table["id"])}
    result = EmbedResult(hashes=[None] * len(table["id"]))
    for r, sid in enumerate(id_list):
        result.vectors[row_of[sid]] = normalised[r]
        result.vector_hashes[row_of[sid]] = hashlib.blake2b(normalised[r].tobytes(), digest_size=8).hexdigest()
    rows = sorted(result.vectors)
    cache = EmbeddingCache(config.index.home_path() / "embeddings.sqlite")
    try:
        hashes, errors = hash_files([table["filepath"][i] for i in rows], cache)
        decode_errors = cache_image_facts([table["filepath"][i] for i, h in zip(rows, hashes, strict=True) if h],
                                          [h for h in hashes if h], cache, config.embed.num_workers, progress)
    finally:
        cache.close()
    for i, h in zip(rows, hashes, strict=True):
        result.hashes[i] = h
    result.errors = {rows[j]: e for j, e in errors.items()}
    result.errors.update({i: decode_errors[h] for i, h in zip(rows, hashes, strict=True) if h in decode_errors})
    result.cached = len(rows)
    run = EmbeddingRun(dataset=name, model=model, model_key=key, dim=dim, spec={"name": model}, imported=True)
    return _store_run(dataset, table, result, run, index, config, has_text=False)


def _store_run(dataset: fo.Dataset, table: dict[str, list[Any]], result: EmbedResult, run: EmbeddingRun,
               index: EdgeIndex | QdrantIndex, config: Config, has_text: bool) -> EmbedSummary:
    """Write an embedding run's vectors: the hash and error fields, the collection synced (changed points
    upserted, changed payloads of unchanged points set, gone ones deleted), the run recorded and registered
    as a brain similarity index."""
    import fiftyone as fo

    write_fields(dataset, {
        HASH_FIELD: (fo.StringField, {sid: h for sid, h in zip(table["id"], result.hashes, strict=True) if h}),
        ERROR_FIELD: (fo.StringField, {table["id"][i]: e for i, e in result.errors.items()}),
    })

    ok = sorted(result.vectors)
    wanted = {table["id"][i]: index_payload(table, i, result.hashes[i], result.vector_hashes.get(i)) for i in ok}
    with index.session():
        present = index.payloads()
        changed = [i for i in ok if present.get(table["id"][i]) != wanted[table["id"][i]]]
        stale = [sid for sid in present if sid not in wanted]
        # A point whose content (and imported vector) is the same keeps its vector: only the keys that
        # changed (tags an analysis wrote, a reviewed label) are set. Rewriting the vectors of the million
        # points an analysis had tagged made a re-import as long as the first.
        same = {HASH_FIELD, VECTOR_HASH}
        relabelled = [i for i in changed if (old := present.get(table["id"][i])) is not None
                      and all(old.get(key) == wanted[table["id"][i]].get(key) for key in same)]
        moved = sorted(set(changed) - set(relabelled))
        if moved:
            moved_ids = [table["id"][i] for i in moved]
            index.upsert(moved_ids, result.matrix(moved), [wanted[s] for s in moved_ids])
        if relabelled:
            ids = [table["id"][i] for i in relabelled]
            changes = [{key: v for key, v in wanted[sid].items() if present[sid].get(key) != v} for sid in ids]
            index.set_payloads(ids, changes)
        index.delete(stale)
        if moved and 0 < config.index.hnsw_above <= len(wanted):
            index.optimize()

    collection = index.collection if isinstance(index, QdrantIndex) else str(index.path)
    run = dataclasses.replace(run, url=public_url(config.index.url), collection=collection, count=len(wanted))
    listed = _RunRows.listed(run, index, wanted, config)
    if wanted and not listed.path(VECTORS_SUFFIX).is_file():  # the analyses read this copy, not the store
        row_of = {sid: i for i, sid in enumerate(table["id"])}
        listed.save_vectors(lambda ids: result.matrix([row_of[s] for s in ids]))
    run.save(dataset)
    from .brain import register_similarity  # brain builds on this module

    brain_key = register_similarity(dataset, run, has_text)
    return EmbedSummary(
        dataset=run.dataset, model=run.model, model_key=run.model_key, dim=run.dim,
        samples=len(table["id"]), embedded=len(ok), computed=result.computed, cached=result.cached,
        failed={table["filepath"][i]: e for i, e in sorted(result.errors.items())},
        upserted=len(moved), relabelled=len(relabelled), deleted=len(stale), collection=collection,
        brain_key=brain_key,
    )


def _examples(items: Sequence[str], dataset: fo.Dataset, index: EdgeIndex | QdrantIndex,
              model: Callable[[], Embedder], dim: int) -> tuple[np.ndarray, list[str]]:
    """Vectors for sample ids (from the index) and image files (embedded now); also the sample ids."""
    ids = [s for s in items if not Path(s).is_file()]
    files = [s for s in items if Path(s).is_file()]
    rows = []
    if ids:
        try:
            known = set(dataset.select(ids).values("id"))
        except Exception:  # not even shaped like an ObjectId
            known = set()
        unknown = [s for s in ids if s not in known]
        if unknown:
            raise ConfigError(f"{unknown[0]!r} is neither an image file nor a sample id of {dataset.name!r}")
        try:
            rows.append(index.vectors(ids))
        except KeyError as e:
            raise NotEmbeddedError(
                f"sample {ids} has no vector (its image may be unreadable: see its {ERROR_FIELD} field)"
            ) from e
    if files:
        from PIL import Image

        images = [Image.open(f).convert("RGB") for f in files]
        rows.append(model().embed_pil(images))
    return np.concatenate(rows) if rows else np.zeros((0, dim), np.float32), ids


def similar(
    name: str,
    *,
    image: str | None = None,
    sample: str | None = None,
    text: str | None = None,
    like: Sequence[str] = (),
    unlike: Sequence[str] = (),
    k: int = 10,
    min_score: float | None = None,
    label: str | None = None,
    split: str | None = None,
    tag: str | None = None,
    model: str | None = None,
    config: Config | None = None,
    save_view: bool = True,
) -> list[Match]:
    """The ``k`` samples of dataset ``name`` most similar to a query, most similar first.

    Give exactly one of ``image`` (a file), ``sample`` (a sample id), ``text`` (needs a CLIP model), or
    ``like``/``unlike`` (sample ids or image files; Qdrant's recommendation: near any ``like``, away from
    every ``unlike``). ``label``, ``split`` and ``tag`` filter inside Qdrant; query samples are left out
    of their own results. ``score`` is the cosine similarity (for ``like``, Qdrant's best-score value).
    The results are also saved as the dataset view ``lookalike-similar``.
    """
    given = [x for x in (image, sample, text) if x] + ([like] if like else [])
    if len(given) != 1:
        raise ConfigError("give exactly one query: image, sample, text, or like (with optional unlike)")
    if unlike and not like:
        raise ConfigError("unlike needs at least one like example")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    config = config or load_config()
    dataset = get_dataset(name)
    run = EmbeddingRun.get(dataset, model)
    index = run.open_index(config)
    where = {key: v for key, v in (("label", label), ("split", split), ("tags", tag)) if v is not None}
    model_once = functools.cache(lambda: run.embedder(config))  # built only for images and text
    if text:
        hits = index.query(model_once().embed_text([text]), k, where, min_score=min_score)[0]
    elif like:
        pos, pos_ids = _examples(like, dataset, index, model_once, run.dim)
        neg, neg_ids = _examples(unlike, dataset, index, model_once, run.dim)
        hits = index.recommend(pos, neg, k, where, exclude=pos_ids + neg_ids, min_score=min_score)
    else:
        vec, ids = _examples([sample or image or ""], dataset, index, model_once, run.dim)
        hits = index.query(vec, k, where, exclude=ids, min_score=min_score)[0]
    matches = [_match(h) for h in hits]
    if save_view:
        dataset.save_view(SIMILAR_VIEW, dataset.select([m.id for m in matches], ordered=True), overwrite=True)
    return matches


def _match(hit: Hit) -> Match:
    p = hit.payload
    return Match(id=hit.id, filepath=p.get("filepath", ""), label=p.get("label"), split=p.get("split"),
                 tags=list(p.get("tags") or []), score=hit.score)


SUSPECT_TAG = "suspect-label"
SUSPECT_VIEW = "lookalike-suspect-labels"


@dataclass
class Suspect:
    """One sample scored by :func:`mislabels`."""

    id: str
    filepath: str
    label: str
    suggested_label: str
    score: float
    flagged: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def embeddings(name: str, *, model: str | None = None, config: Config | None = None) -> tuple[list[str], np.ndarray]:
    """The indexed vectors of an embedding run (L2-normalised float32 rows) and their sample ids, sorted
    by id: the same vectors every analysis reads."""
    rows = _RunRows.of(name, model, config or load_config())
    return rows.ids, rows.vectors()


def knn_graph(name: str, k: int = DEFAULT_K, *, model: str | None = None,
              config: Config | None = None) -> tuple[list[str], KnnGraph]:
    """The k-nearest-neighbour graph of an embedding run, with the sample id of each row: exact up to
    ``config.index.exact_graph_max`` samples, approximate (cluster by cluster) beyond, its recall then measured
    against exact search on ``RECALL_SAMPLE`` rows and logged.

    Computed once from the indexed vectors and stored beside the store (with at least ``GRAPH_K``
    neighbours, so one graph serves every analysis); reused while the indexed samples and their images
    stay the same. After samples are added, changed or removed, the stored graph is updated: only new and
    changed samples, and those that lost a neighbour, are searched again.
    """
    rows = _RunRows.of(name, model, config or load_config())
    return rows.ids, rows.graph(k)


@dataclass
class _RunRows:
    """An embedding run's indexed samples, read once: their ids (sorted), each row's key (its sample id and
    content: a changed image is a changed row), and the files derived from them beside the store, named by
    a digest of the keys (any change to the samples gives new names): the kNN graph and a copy of the
    vectors, memory-mapped (reading a million vectors out of the store, as lists of Python floats, took
    50 s in every analysis)."""

    run: EmbeddingRun
    index: EdgeIndex | QdrantIndex
    ids: list[str]
    keys: list[str]
    folder: Path
    stem: str  # collection name: the files of every version of this run's rows start with it
    digest: str
    config: Config
    _vectors: np.ndarray | None = None

    @classmethod
    def of(cls, name: str, model: str | None, config: Config) -> _RunRows:
        run = EmbeddingRun.get(get_dataset(name), model)
        index = run.open_index(config)
        return cls.listed(run, index, index.payloads(), config)  # a million payload dicts (1.5 GB) let go

    @classmethod
    def listed(cls, run: EmbeddingRun, index: EdgeIndex | QdrantIndex, payloads: dict[str, dict[str, Any]],
               config: Config) -> _RunRows:
        """The rows of the points whose payloads these are."""
        ids = sorted(payloads)
        keys = [":".join(str(payloads[i][key]) for key in ("sample_id", HASH_FIELD, VECTOR_HASH) if key in payloads[i])
                for i in ids]
        return cls(run=run, index=index, ids=ids, keys=keys, folder=config.index.home_path() / "graphs",
                   stem=collection_name(run.dataset, run.model_key),
                   digest=hashlib.sha256("".join(keys).encode()).hexdigest()[:16], config=config)

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
            if not self.path(VECTORS_SUFFIX).is_file():
                stored = self.index.vectors(self.ids)
                row = {sid: r for r, sid in enumerate(self.ids)}
                self.save_vectors(lambda ids: stored[[row[i] for i in ids]])
            self._vectors = np.load(self.path(VECTORS_SUFFIX), mmap_mode="c")  # copy-on-write: writable, lazy
        return self._vectors

    def graph(self, k: int) -> KnnGraph:
        """The :func:`knn_graph` of these rows, with at least ``k`` neighbours."""
        k = min(k, len(self.ids) - 1)
        path = self.path(GRAPH_SUFFIX)
        if path.is_file():
            kept, _ = KnnGraph.load(path)
            if kept.k >= k:
                return kept.first(k)
        want = min(max(k, GRAPH_K), len(self.ids) - 1)
        config = self.config
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
            graph = knn(vectors, want, config.index.exact_graph_max, config.index.graph_precision)
            if len(self.ids) > config.index.exact_graph_max:
                rows = np.random.default_rng(0).choice(len(self.ids), min(RECALL_SAMPLE, len(self.ids)), replace=False)
                log.info("approximate kNN graph of %d samples: recall@%d %.4f against exact search on %d rows",
                         len(self.ids), want, recall(graph, vectors, rows), len(rows))
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in stored:
            stale.unlink()
        graph.save(path, self.keys)
        return graph.first(k)


def _class_probs(dataset: fo.Dataset, ids: list[str], field: str, classes: list[str]) -> np.ndarray:
    """Model probabilities per class from a Classification field: its logits when the dataset lists the
    field's classes, else its confidence on the predicted class spread evenly over the others."""
    logits_order = dataset.classes.get(field) or dataset.default_classes
    if logits_order and dataset.has_field(f"{field}.logits"):
        (logits,) = values_in_order(dataset, [f"{field}.logits"], ids)
        out = np.zeros((len(ids), len(classes)), np.float32)
        for i, row in enumerate(logits):
            if row is not None:
                e = np.exp(np.asarray(row, np.float64) - np.max(row))
                p = dict(zip(logits_order, e / e.sum(), strict=False))
                out[i] = [p.get(c, 0.0) for c in classes]
            else:
                out[i] = 1 / len(classes)
        return out
    preds, conf = values_in_order(dataset, [f"{field}.label", f"{field}.confidence"], ids)
    out = np.zeros((len(ids), len(classes)), np.float32)
    for i, (label, c) in enumerate(zip(preds, conf, strict=True)):
        c = 1.0 if c is None else float(c)
        out[i] = (1 - c) / max(1, len(classes) - 1)
        if label in classes:
            out[i, classes.index(label)] = c
        else:
            out[i] = 1 / len(classes)
    return out


def mislabels(
    name: str,
    *,
    k: int = DEFAULT_K,
    max_support: float = DEFAULT_MAX_SUPPORT,
    prediction_field: str | None = None,
    model: str | None = None,
    config: Config | None = None,
) -> list[Suspect]:
    """Score every labeled sample of dataset ``name`` for a wrong label from its embedding neighbours.

    Returns all scored samples, most suspect first. Writes ``mislabel_score`` (0..1, higher = more likely
    wrong), ``suggested_label`` and ``suspect_label`` to the samples, tags the flagged ones
    ``suspect-label`` and saves them as the view ``lookalike-suspect-labels``; a rerun replaces all of it.
    ``prediction_field``: a Classification field of model predictions (confidence or logits) to combine
    with the neighbours. See :mod:`lookalike.label_issues` for the method.
    """
    import fiftyone as fo
    from fiftyone import ViewField as F

    config = config or load_config()
    dataset = get_dataset(name)
    label_field = find_label_field(dataset, config.dataset.label_field)
    if label_field is None or dataset.get_field(label_field).document_type is not fo.Classification:
        raise ConfigError(f"dataset {name!r} has no Classification label field; mislabels needs class labels")
    ids, graph = knn_graph(name, k, model=model, config=config)
    names, paths = values_in_order(dataset, [f"{label_field}.label", "filepath"], ids)
    classes = sorted({n for n in names if n is not None})
    code = {c: i for i, c in enumerate(classes)}
    labels = np.array([code.get(n, -1) if n is not None else -1 for n in names])
    pred = _class_probs(dataset, ids, prediction_field, classes) if prediction_field else None
    result = find_mislabels(graph, labels, n_classes=len(classes), pred_probs=pred, max_support=max_support)

    scored = {sid: i for i, sid in enumerate(ids) if labels[i] >= 0}  # unlabeled or not embedded: None
    write_fields(dataset, {
        "mislabel_score": (fo.FloatField, {sid: float(result.score[i]) for sid, i in scored.items()}),
        "suggested_label": (fo.StringField, {sid: classes[result.suggested[i]] for sid, i in scored.items()}),
        "suspect_label": (fo.BooleanField, {sid: bool(result.flag[i]) for sid, i in scored.items()}),
    })
    dataset.untag_samples(SUSPECT_TAG)
    dataset.match(F("suspect_label") == True).tag_samples(SUSPECT_TAG)  # noqa: E712 (a query, not a test)
    dataset.save_view(SUSPECT_VIEW, dataset.match_tags(SUSPECT_TAG).sort_by("mislabel_score", reverse=True),
                      overwrite=True)

    suspects = [
        Suspect(id=sid, filepath=paths[i], label=classes[labels[i]], suggested_label=classes[result.suggested[i]],
                score=float(result.score[i]), flagged=bool(result.flag[i]))
        for sid, i in scored.items()
    ]
    return sorted(suspects, key=lambda s: -s.score)


DUPLICATE_TAG = "duplicate"
LEAK_TAG = "leak"
DUPLICATES_VIEW = "lookalike-duplicates"
LEAKS_VIEW = "lookalike-leaks"
DUPLICATE_NEIGHBOURS = 10  # embedding neighbours per sample that may be verified as copies


@dataclass
class Duplicate:
    """One member of a duplicate group."""

    id: str
    filepath: str
    label: Any
    split: str | None
    keep: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DuplicateSet:
    """Samples that are copies of each other, which one to keep, and whether they span splits."""

    group: int
    kind: str  # "exact" (same bytes or pixels) or "near"
    leak: bool
    splits: list[str]
    members: list[Duplicate]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def duplicates(
    name: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    keep: str = "largest",
    keypoints: bool = True,
    model: str | None = None,
    config: Config | None = None,
    progress: Progress | None = None,
) -> list[DuplicateSet]:
    """Exact and near duplicates among the embedded samples of dataset ``name``, largest group first.

    Candidates come from the embedding kNN graph and from a pixel-level neighbour search; each is
    verified at pixel level and kept at or above ``threshold`` (see :mod:`lookalike.dedup`). With
    ``keypoints``, images whose thumbnails do not line up with their nearest neighbours' are opened again
    and matched by keypoints (finding heavy crops and rotations; ``progress`` follows both stages).
    ``keep`` picks the member each group keeps: ``largest`` (most pixels), ``train`` (a train-split copy)
    or ``first``. Writes ``duplicate_group`` (a group number) and ``duplicate_keep`` (the plan) to the
    members, tags them ``duplicate`` (and ``leak`` where a group spans splits) and saves the views
    ``lookalike-duplicates`` and ``lookalike-leaks``; a rerun replaces all of it. Nothing is deleted.
    The pairs verified are kept beside the store: a rerun after a few images were added verifies only
    pairs with those.
    """
    import fiftyone as fo
    from fiftyone import ViewField as F

    if keep not in ("largest", "train", "first"):
        raise ConfigError(f"unknown keep policy {keep!r}; use largest, train or first")
    if not 0 < threshold <= 1:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    config = config or load_config()
    dataset = get_dataset(name)
    run_rows = _RunRows.of(name, model, config)  # the run resolved once
    ids, graph = run_rows.ids, run_rows.graph(DUPLICATE_NEIGHBOURS)
    table = sample_table(dataset, find_label_field(dataset, config.dataset.label_field), ids)
    (hashes,) = values_in_order(dataset, [HASH_FIELD], ids)
    cache = EmbeddingCache(config.index.home_path() / "embeddings.sqlite")
    try:
        errors = cache_image_facts(table["filepath"], hashes, cache, config.embed.num_workers, progress)
        rows = [i for i, h in enumerate(hashes) if h not in errors]  # files changed or gone since embedding drop out
        images = cache.thumbnails([hashes[i] for i in rows])
    finally:
        cache.close()
    for error in errors.values():
        log.warning("left out of duplicate finding: %s", error)
    keep_rows = np.full(len(ids), -1)
    keep_rows[rows] = np.arange(len(rows))
    sub = KnnGraph(indices=keep_rows[graph.indices[rows]], sims=np.where(keep_rows[graph.indices[rows]] >= 0,
                                                                          graph.sims[rows], -1.0))
    content = [hashes[i] for i in rows]
    state = config.index.home_path() / "duplicates" / f"{run_rows.stem}.npz"
    earlier = Verified.load(state, content, DEFAULT_CANDIDATE_COSINE, keypoints)
    if earlier is not None and earlier.covered is not None and (
            earlier.covered.mean() < UPDATE_ABOVE or (~earlier.covered).sum() > config.index.exact_graph_max):
        # Mostly new images, or more than an exact pixel search of them against every thumbnail pays for
        # (290,000 new rows against 2M thumbnails ran longer than a whole first run): from scratch.
        earlier = None
    groups, verified = find_duplicates(
        images, content, [table["split"][i] for i in rows], graph=sub, threshold=threshold,
        policy=keep, exact_max=config.index.exact_graph_max, progress=progress, earlier=earlier,
        open_image=(lambda r: open_for_keypoints(table["filepath"][rows[r]])) if keypoints else None)
    verified.save(state, content, DEFAULT_CANDIDATE_COSINE, keypoints)

    result = []
    for number, g in enumerate(groups):
        members = [Duplicate(id=ids[rows[m]], filepath=table["filepath"][rows[m]], label=table["label"][rows[m]],
                             split=table["split"][rows[m]], keep=m == g.keep) for m in g.members]
        result.append(DuplicateSet(group=number, kind=g.kind, leak=g.leak, splits=g.splits, members=members))

    write_fields(dataset, {
        "duplicate_group": (fo.IntField, {m.id: s.group for s in result for m in s.members}),
        "duplicate_keep": (fo.BooleanField, {m.id: m.keep for s in result for m in s.members}),
    })
    dataset.untag_samples([DUPLICATE_TAG, LEAK_TAG])
    # Matched by field, not by id: at a million samples the members' ids are too large a request.
    dataset.exists("duplicate_group").tag_samples(DUPLICATE_TAG)
    dataset.match(F("duplicate_group").is_in([s.group for s in result if s.leak])).tag_samples(LEAK_TAG)
    in_groups = dataset.match_tags(DUPLICATE_TAG).sort_by("duplicate_group")
    dataset.save_view(DUPLICATES_VIEW, in_groups, overwrite=True)
    dataset.save_view(LEAKS_VIEW, in_groups.match_tags(LEAK_TAG), overwrite=True)
    return result


MAP_BRAIN_KEY = "lookalike_map"


@dataclass
class EmbeddingMap:
    """What :func:`compute_map` made: the layout's brain key, the plot, cluster sizes and the most unique
    samples."""

    dataset: str
    brain_key: str
    samples: int
    plot: str
    clusters: dict[int, int]  # cluster number -> size; -1: in no cluster
    most_unique: list[tuple[str, float]]  # (sample id, uniqueness), most unique first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MAP_REFIT_ABOVE = 0.1  # share of rows placed since a map was last fitted beyond which it is fitted anew


def _earlier_map(path: Path, keys: list[str], seed: int, min_size: int | None
                 ) -> tuple[np.ndarray | None, np.ndarray | None, int | None]:
    """The points and clusters of the last map of these rows, NaN / ``maps.UNKNOWN`` where a row is new, and
    the rows that map was fitted on; all None (fit anew) where there is none, it was made with other
    settings, or more than ``MAP_REFIT_ABOVE`` of the rows would be placed rather than fitted."""
    from . import maps

    if not path.is_file():
        return None, None, None
    with np.load(path) as old:
        if int(old["seed"]) != seed or int(old["min_size"]) != (min_size or 0):
            return None, None, None
        fitted = int(old["fitted"])
        if len(keys) > (1 + MAP_REFIT_ABOVE) * fitted:
            return None, None, None
        row = {key: r for r, key in enumerate(old["keys"].tolist())}
        at = np.array([row.get(key, -1) for key in keys])
        if (at < 0).mean() > MAP_REFIT_ABOVE:
            return None, None, None
        known = at >= 0
        points = np.full((len(keys), 2), np.nan, dtype=np.float32)
        points[known] = old["points"][at[known]]
        clusters = np.full(len(keys), maps.UNKNOWN)
        clusters[known] = old["cluster"][at[known]]
    return points, clusters, fitted


def compute_map(
    name: str,
    *,
    colour_by: str = "label",
    plot_path: str | Path | None = None,
    seed: int = 0,
    min_cluster_size: int | None = None,
    model: str | None = None,
    config: Config | None = None,
) -> EmbeddingMap:
    """Uniqueness, a 2-D UMAP layout and clusters of an embedding run, from the shared kNN graph.

    Writes ``uniqueness`` (0..1, higher = fewer look-alikes) and ``cluster`` (-1: in none) to the samples,
    stores the layout as the FiftyOne visualization brain run ``lookalike_map`` (the App's Embeddings
    panel; colour it by any field) and saves a PNG coloured by ``colour_by`` (one of ``maps.COLOUR_FIELDS``) to
    ``plot_path`` (default ``$LOOKALIKE_HOME/maps/NAME.png``). A rerun replaces all of it; the same seed
    gives the same layout. See :mod:`lookalike.maps`.
    """
    import fiftyone as fo
    import fiftyone.brain as fob

    from . import maps

    if colour_by not in maps.COLOUR_FIELDS:
        raise ConfigError(f"cannot colour by {colour_by!r}; use one of {', '.join(maps.COLOUR_FIELDS)}")
    config = config or load_config()
    dataset = get_dataset(name)
    rows = _RunRows.of(name, model, config)
    run, ids, keys = rows.run, rows.ids, rows.keys
    if len(ids) < 4:
        raise ConfigError(f"dataset {name!r} has {len(ids)} embedded samples; a map needs at least 4")
    vectors, graph = rows.vectors(), rows.graph(maps.UMAP_K)
    unique = maps.uniqueness(graph)
    state = config.index.home_path() / "maps" / f"{collection_name(name, run.model_key)}.npz"
    known_points, known_clusters, fitted = _earlier_map(state, keys, seed, min_cluster_size)
    points = maps.layout(vectors, graph, seed=seed, known=known_points)
    cluster = maps.clusters(points, min_cluster_size, seed=seed, known=known_clusters)
    state.parent.mkdir(parents=True, exist_ok=True)
    np.savez(state, keys=np.array(keys), points=points, cluster=cluster, seed=seed,
             min_size=min_cluster_size or 0, fitted=fitted or len(keys))

    write_fields(dataset, {"uniqueness": (fo.FloatField, {sid: float(u) for sid, u in zip(ids, unique, strict=True)}),
                           "cluster": (fo.IntField, {sid: int(c) for sid, c in zip(ids, cluster, strict=True)})})
    row = {sid: i for i, sid in enumerate(ids)}
    at = [row.get(sid) for sid in dataset.values("id")]
    if MAP_BRAIN_KEY in dataset.list_brain_runs():
        dataset.delete_brain_run(MAP_BRAIN_KEY)
    # The whole dataset where every sample is embedded: a view selecting a million ids is too large a request.
    mapped = dataset if len(at) == len(ids) and None not in at else dataset.select(ids)
    in_mapped = [row[sid] for sid in mapped.values("id")]
    fob.compute_visualization(mapped, points=points[in_mapped], brain_key=MAP_BRAIN_KEY, progress=False)

    if colour_by == "label":
        colours = sample_table(dataset, find_label_field(dataset, config.dataset.label_field), ids)["label"]
    elif colour_by in ("cluster", "uniqueness"):
        colours = list(cluster if colour_by == "cluster" else unique)
    else:
        colours = values_in_order(dataset, [colour_by], ids)[0] if dataset.has_field(colour_by) else [None] * len(ids)
    path = Path(plot_path) if plot_path else config.index.home_path() / "maps" / f"{name}.png"
    maps.plot(points, colours, path, title=f"{name}: {run.model} embeddings (UMAP), coloured by {colour_by}")
    sizes = dict(sorted(zip(*(x.tolist() for x in np.unique(cluster, return_counts=True)), strict=True)))
    order = np.argsort(-unique)[:10]
    return EmbeddingMap(dataset=name, brain_key=MAP_BRAIN_KEY, samples=len(ids), plot=str(path), clusters=sizes,
                        most_unique=[(ids[i], float(unique[i])) for i in order])
