"""The verbs behind the CLI, for Python and Jupyter: :func:`embed` (or :func:`import_vectors`), then
:func:`similar` and the finders (:func:`find`, and one function per finder: :func:`mislabels`,
:func:`duplicates`, :func:`compute_map`, :func:`quality`, :func:`outliers`, :func:`evaluate`, :func:`tag`),
each on a dataset by name or on any FiftyOne view. The record of each embedding run is :mod:`lookalike.runs`;
what an analysis starts from, :mod:`lookalike.context`; the finders, :mod:`lookalike.finders`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import Config, load_config
from .context import VECTORS_SUFFIX, Context, RunRows
from .datasets import (
    box_table,
    detections_field,
    find_label_field,
    get_dataset,
    sample_table,
    write_fields,
    write_label_fields,
)
from .dedup import DEFAULT_THRESHOLD
from .dedup.boxes import DEFAULT_IOU
from .display import Results
from .embedding import EmbeddingCache, EmbedResult, Progress, cache_image_facts, embed_boxes, embed_files, hash_files
from .engines import engine_of
from .exceptions import ConfigError, IndexMismatchError, NotEmbeddedError
from .failure_slices import DEFAULT_K as SLICE_K
from .failure_slices import DEFAULT_MAX_SLICES, DEFAULT_MIN_SIZE
from .finders import Findings
from .finders.base import Record, settle
from .finders.duplicates import DuplicateSet
from .finders.evaluate import INDEX_QUERIES
from .finders.map import EmbeddingMap
from .finders.mislabels import Suspect
from .finders.outliers import Outlier
from .finders.quality import QualityIssue
from .finders.slices import FailureSlice
from .finders.tags import Tagged
from .graph import KnnGraph
from .index import EdgeIndex, Hit, QdrantIndex, open_index
from .label_issues import DEFAULT_K, DEFAULT_MAX_RATIO
from .models import Embedder, get_embedder
from .outlier_scores import DEFAULT_K as OUTLIER_K
from .processes import exclusive
from .runs import HASH_FIELD, VECTOR_HASH, EmbeddingRun, index_payload, public_url

if TYPE_CHECKING:
    import fiftyone as fo

log = logging.getLogger(__name__)

ERROR_FIELD = "embed_error"
UPSERT_ROWS = 65_536  # rows handed to the index at a time when a run is stored
SIMILAR_VIEW = "lookalike-similar"


@dataclass
class EmbedSummary:
    """What :func:`embed` did."""

    dataset: str
    model: str
    model_key: str
    dim: int
    samples: int  # rows: samples, or boxes for a patch run
    embedded: int
    computed: int
    cached: int
    failed: dict[str, str] = field(default_factory=dict)
    upserted: int = 0
    relabelled: int = 0  # points whose payload alone changed (tags, label): their vectors were kept
    deleted: int = 0
    collection: str = ""
    brain_key: str = ""  # the similarity index the App sorts by (lookalike.brain)
    patches: str | None = None  # the Detections field whose boxes were embedded (None: whole images)


@dataclass
class Match(Record):
    """One result of :func:`similar`."""

    id: str
    filepath: str
    label: Any
    split: str | None
    tags: list[str]
    score: float


@dataclass
class BoxMatch(Record):
    """One result of :func:`similar` over boxes (``patches=``): ``id`` is the box's label id, ``bbox``
    FiftyOne's relative [x, y, w, h], ``tags`` the sample's."""

    id: str
    sample_id: str
    filepath: str
    label: Any
    bbox: list[float]
    split: str | None
    tags: list[str]
    label_tags: list[str]
    score: float


def _precision(dataset: Any, model: str, patches: str | None, config: Config) -> str:
    """``embed.precision``; for ``auto``, the choice the dataset's earlier run of this model made, where there is
    one: a later probe (on a busier machine, say) never moves a dataset to another collection."""
    if config.embed.precision != "auto":
        return config.embed.precision
    try:
        earlier = EmbeddingRun.get(dataset, model, patches)
    except NotEmbeddedError:
        return "auto"
    return earlier.precision if earlier.model == model and not earlier.imported else "auto"


def embed(
    name: str,
    model: str | Embedder | None = None,
    pretrained: str | None = None,
    image_size: int | None = None,
    *,
    patches: str | None = None,
    margin: float | None = None,
    config: Config | None = None,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> EmbedSummary:
    """Embed every sample of dataset ``name`` and sync the Qdrant collection for (dataset, model).

    Vectors come from the embedding cache where the file's bytes were seen before, so a rerun on an
    unchanged dataset does no model work and an interrupted run resumes. Unreadable images get a reason
    in the ``embed_error`` field and are left out of the index. ``rebuild`` drops the collection first.

    ``patches``: a Detections field (e.g. ``ground_truth_detections``) whose boxes are embedded instead, each
    cropped with ``margin`` (a share of its width and height on every side; default ``embed.margin``) from
    one decode of its image, into a collection of their own (the image run of the same model stays as it
    is). A box that cannot be embedded (outside the image, degenerate, too small, its image unreadable) gets
    its reason in the label's ``embed_error`` attribute.
    """
    config = config or load_config()
    dataset = get_dataset(name)
    patches = patches or config.embed.patches
    margin = config.embed.margin if margin is None else margin
    if patches:
        detections_field(dataset, patches)
        if not 0 <= margin <= 2:
            raise ConfigError(f"margin must be between 0 and 2 (a share of the box's sides), got {margin}")
    if isinstance(model, str) or model is None:
        embedder = get_embedder(model or config.embed.model, pretrained=pretrained or config.embed.pretrained,
                                image_size=image_size or config.embed.image_size, device=config.embed.device,
                                precision=_precision(dataset, model or config.embed.model, patches, config),
                                normalize=config.embed.normalize)
    else:
        embedder = model
    home = config.index.home_path()
    with _embedding_lock(name, config):
        index = open_index(name, EmbeddingRun.key_of(embedder.key, patches), embedder.dim, url=config.index.url,
                           api_key=config.index.api_key, home=home, rebuild=rebuild, settings=config.index)
        table = box_table(dataset, patches) if patches else sample_table(
            dataset, find_label_field(dataset, config.dataset.label_field))
        cache = EmbeddingCache(home / "embeddings.sqlite")
        streamed: list[int] = []
        run = EmbeddingRun(dataset=name, model=embedder.name, model_key=embedder.key, dim=embedder.dim,
                           spec=embedder.spec, patches_field=patches, margin=margin if patches else 0.0)

        def write_on(fresh: dict[int, tuple[str, np.ndarray]]) -> None:
            """A batch's new vectors into the index and their hashes into FiftyOne as they come (what the
            sync below then finds unchanged): a long run's finished work is in place before it ends."""
            import fiftyone as fo

            rows = sorted(fresh)
            if not rows:
                return
            hashes = [fresh[i][0] for i in rows]
            ids = [table["id"][i] for i in rows]
            index.upsert(ids, np.stack([fresh[i][1] for i in rows]),
                         [index_payload(table, i, h) for i, h in zip(rows, hashes, strict=True)])
            if not patches:  # a box's key lives in its point only
                write_fields(dataset.select(ids), {HASH_FIELD: (fo.StringField, dict(zip(ids, hashes, strict=True)))})
            streamed.extend(rows)

        steps: dict[str, Any] = dict(batch_size=config.embed.batch_size, num_workers=config.embed.num_workers,
                                     progress=progress, engine=engine_of(config), on_batch=write_on)
        try:
            result = embed_boxes(table["filepath"], table["box"], margin, embedder, cache, **steps) if patches \
                else embed_files(table["filepath"], embedder, cache, **steps)
        finally:
            cache.close()
        return _store_run(dataset, table, result, run, index, config, has_text=embedder.has_text,
                          streamed=len(streamed))


def import_vectors(
    name: str,
    vectors: np.ndarray | str | Path | None = None,
    ids: Sequence[str] | str | Path | None = None,
    *,
    from_field: str | None = None,
    model_name: str | None = None,
    patches: str | None = None,
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

    ``patches``: vectors of the boxes of this Detections field (a patch run): rows of label ids (``ids``, else
    every box in the dataset's order); no image is decoded.
    """
    from .imported import checked_vectors, read_ids, read_vectors, run_key

    if (vectors is None) == (from_field is None):
        raise ConfigError("give either vectors (an array or a .npy file) or from_field, not both or neither")
    config = config or load_config()
    dataset = get_dataset(name)
    if patches:
        if from_field is not None:
            raise ConfigError("from_field holds vectors of samples; box vectors come as a .npy file with --patches")
        detections_field(dataset, patches)
    table = box_table(dataset, patches) if patches else sample_table(
        dataset, find_label_field(dataset, config.dataset.label_field))
    if from_field is not None:
        if not dataset.has_field(from_field):
            raise ConfigError(f"from_field {from_field!r}: dataset {name!r} has no field of that name")
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
    normalised = checked_vectors(raw, id_list, table["id"], source, "box" if patches else "sample")
    model = model_name or default_name
    key, dim = run_key(model), int(normalised.shape[1])
    try:
        existing: EmbeddingRun | None = EmbeddingRun.get(dataset, EmbeddingRun.key_of(key, patches), patches)
    except NotEmbeddedError:
        existing = None
    if existing and existing.dim != dim and not rebuild:
        raise IndexMismatchError(f"{source}: {dim}-d vectors, but the run {model!r} holds {existing.dim}-d "
                                 "ones; give another --model-name, or --rebuild to replace it")
    with _embedding_lock(name, config):
        index = open_index(name, EmbeddingRun.key_of(key, patches), dim, url=config.index.url,
                           api_key=config.index.api_key, home=config.index.home_path(), rebuild=rebuild,
                           settings=config.index)
        row_of = {sid: r for r, sid in enumerate(table["id"])}
        result = EmbedResult(hashes=[None] * len(table["id"]))
        for r, sid in enumerate(id_list):
            result.vectors[row_of[sid]] = normalised[r]
            result.vector_hashes[row_of[sid]] = hashlib.blake2b(normalised[r].tobytes(), digest_size=8).hexdigest()
        run = EmbeddingRun(dataset=name, model=model, model_key=key, dim=dim, spec={"name": model}, imported=True,
                           patches_field=patches)
        result.cached = len(result.vectors)
        if patches:  # boxes: no pixel stage
            return _store_run(dataset, table, result, run, index, config, has_text=False)
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
        return _store_run(dataset, table, result, run, index, config, has_text=False)


def _embedding_lock(name: str, config: Config) -> AbstractContextManager[None]:
    """One embedding (or import) of a dataset at a time, across processes: a second is refused at once."""
    return exclusive(config.index.home_path() / "locks" / f"{hashlib.sha1(name.encode()).hexdigest()[:16]}.lock",
                     f"an embedding of dataset {name!r}")


def _store_run(dataset: fo.Dataset, table: dict[str, list[Any]], result: EmbedResult, run: EmbeddingRun,
               index: EdgeIndex | QdrantIndex, config: Config, has_text: bool, streamed: int = 0) -> EmbedSummary:
    """Write an embedding run's vectors: the hash and error fields, the collection synced (changed points
    upserted, changed payloads of unchanged points set, gone ones deleted), the run recorded and registered
    as a brain similarity index."""
    import fiftyone as fo

    errors = {table["id"][i]: e for i, e in result.errors.items()}
    if run.patches_field:
        write_label_fields(dataset, run.patches_field, {ERROR_FIELD: errors})
    else:
        write_fields(dataset, {
            HASH_FIELD: (fo.StringField, {sid: h for sid, h in zip(table["id"], result.hashes, strict=True) if h}),
            ERROR_FIELD: (fo.StringField, errors),
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
        for start in range(0, len(moved), UPSERT_ROWS):  # a slice at a time: a million rows stacked took 2 GB more
            part = moved[start:start + UPSERT_ROWS]
            part_ids = [table["id"][i] for i in part]
            index.upsert(part_ids, result.matrix(part), [wanted[s] for s in part_ids])
        if relabelled:
            ids = [table["id"][i] for i in relabelled]
            changes = [{key: v for key, v in wanted[sid].items() if present[sid].get(key) != v} for sid in ids]
            index.set_payloads(ids, changes)
        index.delete(stale)
        if (moved or streamed) and 0 < config.index.hnsw_above <= len(wanted):
            index.optimize()

    collection = index.collection if isinstance(index, QdrantIndex) else str(index.path)
    run = dataclasses.replace(run, url=public_url(config.index.url), collection=collection, count=len(wanted))
    listed = RunRows.listed(run, index, wanted, config)
    if wanted and not listed.path(VECTORS_SUFFIX).is_file():  # the analyses read this copy, not the store
        row_of = {sid: i for i, sid in enumerate(table["id"])}
        listed.save_vectors(lambda ids: result.matrix([row_of[s] for s in ids]))
    run.save(dataset)
    from .brain import register_similarity  # brain builds on this module

    brain_key = register_similarity(dataset, run, has_text)
    # A box's failure is named by its label id beside its file: an image's boxes fail one by one.
    failed = {(f"{table['filepath'][i]} [{table['id'][i]}]" if run.patches_field else table["filepath"][i]): e
              for i, e in sorted(result.errors.items())}
    return EmbedSummary(
        dataset=run.dataset, model=run.model, model_key=run.model_key, dim=run.dim,
        samples=len(table["id"]), embedded=len(ok), computed=result.computed, cached=result.cached,
        failed=failed, upserted=len(moved) + streamed, relabelled=len(relabelled), deleted=len(stale),
        collection=collection, brain_key=brain_key, patches=run.patches_field,
    )


def _known_rows(ctx: Context, ids: list[str]) -> set[str]:
    """Which of ``ids`` are rows of the dataset: sample ids, or label ids of the patch field's boxes."""
    try:
        if ctx.patches is None:
            return set(ctx.dataset.select(ids).values("id"))
        return set(ctx.dataset.select_labels(ids=ids, fields=ctx.patches).values(
            f"{ctx.patches}.detections.id", unwind=True))
    except Exception:  # not even shaped like an ObjectId
        return set()


def _examples(items: Sequence[str], ctx: Context, index: EdgeIndex | QdrantIndex,
              model: Callable[[], Embedder], role: str) -> tuple[np.ndarray, list[str]]:
    """Vectors for row ids (from the index: sample ids, or label ids of boxes) and image files (embedded now);
    also the row ids. ``role``: the argument they came as (like, unlike, sample, image), which an error names."""
    ids = [s for s in items if not Path(s).is_file()]
    files = [s for s in items if Path(s).is_file()]
    rows = []
    what = "a sample id" if ctx.patches is None else f"a label id of {ctx.patches!r}"
    if ids:
        known = _known_rows(ctx, ids)
        unknown = [s for s in ids if s not in known]
        if unknown:
            raise ConfigError(f"{role} {unknown[0]!r} is neither an image file nor {what} of {ctx.dataset.name!r}")
        try:
            rows.append(index.vectors(ids))
        except KeyError as e:
            where = f"its {ERROR_FIELD} field" if ctx.patches is None else f"its label's {ERROR_FIELD} attribute"
            raise NotEmbeddedError(
                f"{'sample' if ctx.patches is None else 'box'} {ids} has no vector (see {where})") from e
    if files:
        from .images import open_image

        images = []
        for f in files:
            try:
                images.append(open_image(f))
            except Exception as e:  # a query image the decoder refuses: say which and why, in one line
                raise ConfigError(f"{role} {f}: cannot use it as a query image: {type(e).__name__}: {e}") from e
        rows.append(model().embed_pil(images))
    return np.concatenate(rows) if rows else np.zeros((0, ctx.run.dim), np.float32), ids


def similar(
    name: str | Any,
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
    patches: str | None = None,
    model: str | None = None,
    config: Config | None = None,
    save_view: bool = True,
) -> Results[Any]:
    """The ``k`` samples of a dataset (by name) or a FiftyOne view most similar to a query, most similar first.

    Give exactly one of ``image`` (a file), ``sample`` (a sample id), ``text`` (needs a CLIP model), or
    ``like``/``unlike`` (sample ids or image files; Qdrant's recommendation: near any ``like``, away from
    every ``unlike``). ``label``, ``split`` and ``tag`` filter inside Qdrant; query samples are left out
    of their own results. ``score`` is the cosine similarity (for ``like``, Qdrant's best-score value).
    The results are also saved as the dataset view ``lookalike-similar``.

    ``patches``: search the boxes of this Detections field instead (its patch run: ``embed(patches=...)``);
    ``sample`` and ``like``/``unlike`` then take label ids, ``label`` filters the box's label, ``split`` and
    ``tag`` its sample's; the results are :class:`BoxMatch` rows, saved as a patches view
    ``lookalike-similar-FIELD``.
    """
    given = [x for x in (image, sample, text) if x] + ([like] if like else [])
    if len(given) != 1:
        raise ConfigError("give exactly one query: image, sample, text, or like (with optional unlike)")
    if unlike and not like:
        raise ConfigError("unlike needs at least one like example")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    ctx = Context.of(name, model, config, patches)
    dataset, run, config = ctx.dataset, ctx.run, ctx.config
    index = run.open_index(config)
    where: dict[str, Any] = {key: v for key, v in (("label", label), ("split", split), ("tags", tag)) if v is not None}
    if ctx.is_view:  # searched inside the store, like the other filters
        where[ctx.row_key] = ctx.row_ids_in(ctx.collection)
    model_once = functools.cache(lambda: run.embedder(config))  # built only for images and text
    if text:
        hits = index.query(model_once().embed_text([text]), k, where, min_score=min_score)[0]
    elif like:
        pos, pos_ids = _examples(like, ctx, index, model_once, "like")
        neg, neg_ids = _examples(unlike, ctx, index, model_once, "unlike")
        hits = index.recommend(pos, neg, k, where, exclude=pos_ids + neg_ids, min_score=min_score)
    else:
        vec, ids = _examples([sample or image or ""], ctx, index, model_once, "sample" if sample else "image")
        hits = index.query(vec, k, where, exclude=ids, min_score=min_score)[0]
    matches: Results[Any] = Results(_match(h) if patches is None else _box_match(h) for h in hits)
    if save_view:
        dataset.save_view(similar_view(patches), ctx.rows_view([m.id for m in matches]), overwrite=True)
    return matches


def similar_view(patches: str | None = None) -> str:
    """The saved view of :func:`similar`'s results: samples, or the boxes of ``patches``."""
    return SIMILAR_VIEW if patches is None else f"{SIMILAR_VIEW}-{patches}"


def _match(hit: Hit) -> Match:
    p = hit.payload
    return Match(id=hit.id, filepath=p.get("filepath", ""), label=p.get("label"), split=p.get("split"),
                 tags=list(p.get("tags") or []), score=hit.score)


def _box_match(hit: Hit) -> BoxMatch:
    p = hit.payload
    return BoxMatch(id=hit.id, sample_id=str(p.get("sample_id")), filepath=p.get("filepath", ""),
                    label=p.get("label"), bbox=list(p.get("box") or []), split=p.get("split"),
                    tags=list(p.get("tags") or []), label_tags=list(p.get("label_tags") or []), score=hit.score)


def embeddings(name: str | Any, *, patches: str | None = None, model: str | None = None,
               config: Config | None = None) -> tuple[list[str], np.ndarray]:
    """The indexed vectors of an embedding run (L2-normalised float32 rows) and their sample ids (with
    ``patches``: the label ids of that field's boxes), sorted by id: the same vectors every analysis reads.
    ``name``: a dataset name, or a FiftyOne view."""
    ctx = Context.of(name, model, config, patches)
    return ctx.ids, ctx.vectors()


def knn_graph(name: str | Any, k: int = DEFAULT_K, *, model: str | None = None,
              config: Config | None = None) -> tuple[list[str], KnnGraph]:
    """The k-nearest-neighbour graph of an embedding run, with the sample id of each row: exact up to
    ``config.index.exact_graph_max`` samples, approximate (cluster by cluster) beyond, its recall then measured
    against exact search on ``RECALL_SAMPLE`` rows and logged.

    Computed once from the indexed vectors and stored beside the store (with at least ``GRAPH_K``
    neighbours, so one graph serves every analysis); reused while the indexed samples and their images
    stay the same. After samples are added, changed or removed, the stored graph is updated: only new and
    changed samples, and those that lost a neighbour, are searched again. On a view: the graph of the view's
    samples among themselves, computed and not stored.
    """
    ctx = Context.of(name, model, config)
    return ctx.ids, ctx.graph(k)


def find(finder: str, name: str | Any, *, patches: str | None = None, model: str | None = None,
         config: Config | None = None, progress: Progress | None = None, **options: Any) -> Findings:
    """Run the finder ``finder`` (see ``lookalike.finders.FINDERS``) on a dataset (by name) or a FiftyOne
    view, write its fields to those samples and record the run; returns its findings. ``patches``: run it on
    the boxes of this Detections field instead (its patch run), writing to the labels themselves
    (``FIELD.detections.<score>``, label tags, a patches view named like the samples' one plus ``-FIELD``)."""
    from . import finders

    chosen = finders.get(finder)
    settle(chosen, options)  # a wrong option is named before the dataset is opened
    if patches and not chosen.on_boxes:
        on = ", ".join(f.name for f in finders.FINDERS.values() if f.on_boxes)
        raise ConfigError(f"{chosen.name} runs on whole images only, not on patches; on boxes run: {on}")
    return finders.run(chosen, Context.of(name, model, config, patches), progress, **options)


def mislabels(name: str | Any, *, k: int = DEFAULT_K, max_ratio: float = DEFAULT_MAX_RATIO,
              prediction_field: str | None = None, probe: bool = True, patches: str | None = None,
              model: str | None = None, config: Config | None = None) -> Results[Suspect]:
    """Score every labeled sample of a dataset (by name) or view for a wrong label from its embedding
    neighbours and a cross-validated linear probe on its vector (``probe=False``: neighbours only).

    Returns all scored samples, most suspect first. Writes ``mislabel_score`` (0..1, higher = more likely
    wrong), ``suggested_label`` and ``suspect_label`` to the samples, tags the flagged ones
    ``suspect-label`` and saves them as the view ``lookalike-suspect-labels``; a rerun replaces all of it.
    ``prediction_field``: a Classification field of model predictions (confidence or logits) to combine
    with the neighbours. See :mod:`lookalike.label_issues` for the method.

    ``patches``: score the boxes of this Detections field (its patch run) by their labels instead; the
    results are written on the boxes (``FIELD.detections.mislabel_score``, ...), the flagged ones tagged
    ``suspect-label`` and saved as the patches view ``lookalike-suspect-labels-FIELD``.
    """
    return Results(find("mislabels", name, patches=patches, model=model, config=config, k=k, max_ratio=max_ratio,
                        prediction_field=prediction_field, probe=probe).records)


def duplicates(name: str | Any, *, threshold: float = DEFAULT_THRESHOLD, keep: str = "largest", keypoints: bool = True,
               patches: str | None = None, iou: float = DEFAULT_IOU, model: str | None = None,
               config: Config | None = None, progress: Progress | None = None) -> Results[DuplicateSet]:
    """Exact and near duplicates among the embedded samples of a dataset (by name) or view, largest group
    first.

    Candidates come from the embedding kNN graph and from a pixel-level neighbour search; each is
    verified at pixel level and kept at or above ``threshold`` (see :mod:`lookalike.dedup`). With
    ``keypoints``, images whose thumbnails do not line up with their nearest neighbours' are opened again
    and matched by keypoints (finding heavy crops and rotations; ``progress`` follows both stages).
    ``keep`` picks the member each group keeps: ``largest`` (most pixels), ``train`` (a train-split copy)
    or ``first``. Writes ``duplicate_group`` (a group number), ``duplicate_keep`` (the plan) and
    ``duplicate_score`` to the members, tags them ``duplicate`` (and ``leak`` where a group spans splits)
    and saves the views ``lookalike-duplicates`` and ``lookalike-leaks``; a rerun replaces all of it. Nothing
    is deleted. The pairs verified are kept beside the store: a rerun after a few images were added verifies
    only pairs with those.

    ``patches``: double annotations among the boxes of this Detections field instead: boxes of one image
    overlapping at ``iou`` or more (same label or not), grouped; ``keep`` ``largest`` keeps the largest box,
    otherwise the first annotated. Written on the boxes (``FIELD.detections.duplicate_group``, ...), tagged
    ``duplicate``, saved as the patches view ``lookalike-duplicates-FIELD``.
    """
    return Results(find("duplicates", name, patches=patches, model=model, config=config, progress=progress,
                        threshold=threshold, keep=keep, keypoints=keypoints, iou=iou).records)


def compute_map(name: str | Any, *, colour_by: str = "label", plot_path: str | Path | None = None, seed: int = 0,
                min_cluster_size: int | None = None, patches: str | None = None, model: str | None = None,
                config: Config | None = None) -> EmbeddingMap:
    """Uniqueness, a 2-D UMAP layout and clusters of an embedding run, from the shared kNN graph.

    Writes ``uniqueness`` (0..1, higher = fewer look-alikes) and ``cluster`` (-1: in none) to the samples,
    stores the layout as the FiftyOne visualization brain run ``lookalike_map`` (the App's Embeddings
    panel; colour it by any field) and saves a PNG coloured by ``colour_by`` (one of ``maps.COLOUR_FIELDS``) to
    ``plot_path`` (default ``$LOOKALIKE_HOME/maps/NAME.png``). A rerun replaces all of it; the same seed
    gives the same layout. See :mod:`lookalike.maps`. ``patches``: the map of the boxes of that field (its patch
    run): ``uniqueness`` and ``cluster`` on the boxes, the brain run ``lookalike_map__FIELD`` with
    ``patches_field`` (the App's Embeddings panel on a patches view).
    """
    found = find("map", name, patches=patches, model=model, config=config, colour_by=colour_by,
                 out=str(plot_path) if plot_path else None, seed=seed, min_cluster_size=min_cluster_size)
    return found.records[0]


def quality(name: str | Any, *, patches: str | None = None, config: Config | None = None,
            progress: Progress | None = None) -> Results[QualityIssue]:
    """Image quality issues (dark, bright, blurry, low information, grayscale, odd size, odd aspect ratio) of
    every readable sample of a dataset (by name) or view, flagged ones first, most severe first. No embeddings
    needed: measured in the decode pass (cached). Writes ``quality_<issue>`` scores (0..1, 0.5 at the flag),
    ``quality_issues`` (the flagged issues) and ``quality_score`` (the highest), tags the flagged samples
    ``quality-issue`` and saves them as the view ``lookalike-quality``. See :mod:`lookalike.image_quality`.
    ``patches``: every box of that Detections field instead, its crop measured alike (no embeddings needed),
    and boxes that are no crops flagged ``degenerate``, ``outside_image`` or ``tiny``."""
    return Results(find("quality", name, patches=patches, config=config, progress=progress).records)


def outliers(name: str | Any, *, k: int = OUTLIER_K, patches: str | None = None, model: str | None = None,
             config: Config | None = None) -> Results[Outlier]:
    """Every embedded sample of a dataset (by name) or view scored for being far from all others, most
    outlying first: ``outlier_score`` (0..1, 0.5 at the flag) and ``outlier_flag``, tag ``outlier``, view
    ``lookalike-outliers``; ``patches``: the boxes of that field instead. See :mod:`lookalike.outlier_scores`."""
    return Results(find("outliers", name, patches=patches, model=model, config=config, k=k).records)


def evaluate(name: str | Any, *, k: int = 10, index_queries: int = INDEX_QUERIES, patches: str | None = None,
             model: str | None = None, config: Config | None = None) -> dict[str, Any]:
    """Label retrieval by the embedding: precision@k, recall@k and mAP@k overall and per class (each labeled
    sample a query, itself left out), and the vector index's recall@k against exact search on
    ``index_queries`` samples: ``{"k", "overall", "per_class", "index_recall_at_k"}``. Writes each sample's
    precision@k to ``retrieval_precision`` and flags ``retrieval_miss`` where none of its k nearest carry its
    label. See :mod:`lookalike.retrieval`. ``patches``: retrieval of box labels among the boxes of that field."""
    return dict(find("evaluate", name, patches=patches, model=model, config=config, k=k,
                     index_queries=index_queries).summary)


def tag(name: str | Any, vocab: Sequence[str] | str, *, top: int = 3, prompt: str = "a photo of a {}",
        model: str | None = None, config: Config | None = None) -> Results[Tagged]:
    """Zero-shot tags of every embedded image of a dataset (by name) or view, from the words of ``vocab`` (a
    list, or a file of one word a line), by the run's CLIP text tower: the ``top`` words and their
    probabilities into the Classifications field ``zero_shot``; ``zero_shot_confidence`` (the top one's) and
    ``zero_shot_disagrees`` (its top word is another word of the vocabulary than its label). A run of a
    model without a text tower raises :class:`~lookalike.exceptions.TextNotSupportedError`."""
    words = [vocab] if isinstance(vocab, str) else list(vocab)
    return Results(find("tag", name, model=model, config=config, vocab=words, top=top, prompt=prompt).records)


def slices(name: str | Any, *, prediction_field: str, k: int = SLICE_K, min_size: int = DEFAULT_MIN_SIZE,
           max_slices: int = DEFAULT_MAX_SLICES, vocab: str | None = None, patches: str | None = None,
           model: str | None = None, config: Config | None = None) -> Results[FailureSlice]:
    """Failure slices of a model, on a dataset (by name) or any view (e.g. the test split): among the samples with
    a label and a prediction in the Classification field ``prediction_field``, groups of look-alike samples where
    the predictions fail far more often than elsewhere, most harmful first, each with its figures, a description
    (a CLIP run: the ``vocab`` phrases nearest it) and every member, most typical first; and whose mistake each
    error is (``error_kind``: ``label``, ``model`` or ``ambiguous``, by the whole run's neighbours). Writes
    ``slice`` (-1: none), ``slice_score``, ``in_slice`` and ``error_kind`` to those samples and a view per slice
    (``lookalike-slice-N``). In Jupyter the result shows each slice with a strip of its members;
    ``.to_pandas()`` is a table of slices. See :mod:`lookalike.failure_slices` for the method.

    ``patches``: a detector's failures over the labelled boxes of this Detections field (its patch run):
    ``prediction_field`` is then the detector's Detections field, matched to them by IoU, so a box is predicted
    right, as another class or ``(missed)``; the fields are written on the boxes, each slice saved as a patches
    view (``lookalike-slice-N-FIELD``), and the detector's boxes that match no labelled one as the patches view
    ``lookalike-false-positives-FIELD``."""
    return Results(find("slices", name, patches=patches, model=model, config=config,
                        prediction_field=prediction_field, k=k, min_size=min_size, max_slices=max_slices,
                        vocab=vocab).records)
