"""The record of each embedding run (dataset + model or imported vectors), :class:`EmbeddingRun`: kept in
``dataset.info["lookalike"]`` so later calls know which model, dimension and collection to use; it opens
its index and rebuilds its model; :func:`index_payload` is what a point of its collection carries. The API
key is never recorded. :mod:`lookalike.api` writes runs, :mod:`lookalike.brain` and every verb read them;
this module imports neither.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .config import Config
from .exceptions import ModelError, NotEmbeddedError
from .index import EdgeIndex, QdrantIndex, open_index
from .models import Embedder, get_embedder

if TYPE_CHECKING:
    import fiftyone as fo

INFO_KEY = "lookalike"
HASH_FIELD = "content_hash"
VECTOR_HASH = "vector_hash"  # payload key of an imported vector's digest


def public_url(url: str | None) -> str | None:
    """The URL without credentials, fit to be stored."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class EmbeddingRun:
    """One embedding run of a dataset, as recorded in ``dataset.info["lookalike"]``."""

    dataset: str
    model: str  # a registered model's name, or the name given to imported vectors
    model_key: str  # names the collection and the cache entries
    dim: int
    spec: dict[str, Any] = field(default_factory=dict)  # get_embedder's arguments, to rebuild the model
    imported: bool = False  # vectors brought by the user: no model
    url: str | None = None  # a Qdrant server's URL without credentials; None: the embedded store
    collection: str = ""
    count: int = 0  # points in the collection
    # Its rows: the boxes of this Detections field (each cropped with ``margin`` around it), or None: samples.
    patches_field: str | None = None
    margin: float = 0.0

    @property
    def key(self) -> str:
        """Names the run's record, collection and files: the model key, and the boxes' field for a patch run
        (a patch run and the image run of one model live side by side)."""
        return self.key_of(self.model_key, self.patches_field)

    @staticmethod
    def key_of(model_key: str, patches: str | None) -> str:
        return model_key if patches is None else f"{model_key}@{patches}"

    @property
    def precision(self) -> str:
        """The model's arithmetic in this run (bf16 vectors carry their own key): kept for every later use."""
        return "bf16" if self.model_key.endswith("-bf16") else "fp32"

    @property
    def rows(self) -> str:
        """What a row is, in words: for messages."""
        return "samples" if self.patches_field is None else f"boxes of {self.patches_field!r}"

    @classmethod
    def get(cls, dataset: fo.Dataset, model: str | None = None, patches: str | None = None) -> EmbeddingRun:
        """The recorded run for ``model`` (a model name or key), else the latest one, over samples or (with
        ``patches``, a Detections field) over that field's boxes."""
        info = dict((dataset.info or {}).get(INFO_KEY, {}))
        runs = {key: run for key, run in info.get("runs", {}).items() if run.get("patches_field") == patches}
        what = "embeddings" if patches is None else f"patch embeddings of {patches!r}"
        how = f"lookalike embed {dataset.name}" + (f" --patches {patches}" if patches else "")
        if not runs:
            raise NotEmbeddedError(f"dataset {dataset.name!r} has no {what} yet; run `{how}` first")
        latest = info.get(_latest(patches))
        found = runs.get(latest or "", runs[list(runs)[-1]]) if model is None else next(
            (run for key, run in runs.items() if model in (key, run["model"], run["model_key"])), None)
        if found is None:
            raise NotEmbeddedError(
                f"dataset {dataset.name!r} has no {what} from {model!r}; it has: "
                f"{', '.join(r['model'] for r in runs.values())}. Run `{how} --model {model}`"
            )
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in found.items() if key in known})

    def save(self, dataset: fo.Dataset) -> None:
        """Record the run (replacing one of the same key) as the dataset's latest of its kind of rows."""
        info = dict((dataset.info or {}).get(INFO_KEY, {}))
        info.setdefault("runs", {})[self.key] = asdict(self)
        info[_latest(self.patches_field)] = self.key
        dataset.info[INFO_KEY] = info
        dataset.save()

    def open_index(self, config: Config) -> EdgeIndex | QdrantIndex:
        """The index holding the run's vectors (the server URL comes from config when it is set)."""
        return open_index(self.dataset, self.key, self.dim, url=config.index.url or self.url,
                          api_key=config.index.api_key, home=config.index.home_path(), settings=config.index)

    def embedder(self, config: Config) -> Embedder:
        """The model that produced the run, rebuilt (for image and text queries)."""
        if self.imported:
            raise ModelError(f"the run {self.model!r} holds imported vectors and has no model, so it cannot embed "
                             "an image or a text prompt; query it by sample (--sample, --like with sample ids)")
        return get_embedder(**self.spec, device=config.embed.device, precision=self.precision)


def _latest(patches: str | None) -> str:
    return "latest" if patches is None else f"latest@{patches}"


def index_payload(table: dict[str, list[Any]], row: int, content_hash: str | None,
                  vector_hash: str | None = None) -> dict[str, Any]:
    """What a point carries: the filter keys, the file, its content hash (which keys the kNN graph's rows;
    a box's: its image's and its crop's, :func:`lookalike.embedding.box_key`) and the sample id; a box also
    its label id, label tags, box and relative size; imported vectors also a digest of the vector (a
    changed vector, same image, is a changed point and a changed graph row). ``table``: a sample or box
    table (:mod:`lookalike.datasets`)."""
    boxes = "sample_id" in table  # a box table: its ids are label ids
    payload = {"label": table["label"][row], "split": table["split"][row], "tags": table["tags"][row],
               "filepath": table["filepath"][row], HASH_FIELD: content_hash,
               "sample_id": table["sample_id" if boxes else "id"][row]}
    if boxes:
        # Rounded: the store gives floats back a last digit off, which would make every box a changed point.
        box = [round(v, 6) for v in table["box"][row] or []]
        payload.update({"label_id": table["id"][row], "label_tags": table["label_tags"][row], "box": box,
                        "box_size": round(box[2] * box[3], 6) if len(box) == 4 else None})
    if vector_hash is not None:
        payload[VECTOR_HASH] = vector_hash
    return payload
