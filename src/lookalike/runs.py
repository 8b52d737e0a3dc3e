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

    @classmethod
    def get(cls, dataset: fo.Dataset, model: str | None = None) -> EmbeddingRun:
        """The recorded run for ``model`` (a model name or key), else the latest one."""
        info = dict((dataset.info or {}).get(INFO_KEY, {}))
        runs: dict[str, Any] = info.get("runs", {})
        if not runs:
            raise NotEmbeddedError(
                f"dataset {dataset.name!r} has no embeddings yet; run `lookalike embed {dataset.name}` first"
            )
        found = runs[info["latest"]] if model is None else next(
            (run for key, run in runs.items() if model in (key, run["model"])), None)
        if found is None:
            raise NotEmbeddedError(
                f"dataset {dataset.name!r} has no embeddings from {model!r}; it has: "
                f"{', '.join(r['model'] for r in runs.values())}. Run `lookalike embed {dataset.name} --model {model}`"
            )
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in found.items() if key in known})

    def save(self, dataset: fo.Dataset) -> None:
        """Record the run (replacing one of the same key) as the dataset's latest."""
        info = dict((dataset.info or {}).get(INFO_KEY, {}))
        info.setdefault("runs", {})[self.model_key] = asdict(self)
        info["latest"] = self.model_key
        dataset.info[INFO_KEY] = info
        dataset.save()

    def open_index(self, config: Config) -> EdgeIndex | QdrantIndex:
        """The index holding the run's vectors (the server URL comes from config when it is set)."""
        return open_index(self.dataset, self.model_key, self.dim, url=config.index.url or self.url,
                          api_key=config.index.api_key, home=config.index.home_path(), settings=config.index)

    def embedder(self, config: Config) -> Embedder:
        """The model that produced the run, rebuilt (for image and text queries)."""
        if self.imported:
            raise ModelError(f"the run {self.model!r} holds imported vectors and has no model, so it cannot embed "
                             "an image or a text prompt; query it by sample (--sample, --like with sample ids)")
        return get_embedder(**self.spec, device=config.embed.device, precision=config.embed.precision)


def index_payload(table: dict[str, list[Any]], row: int, content_hash: str | None,
                  vector_hash: str | None = None) -> dict[str, Any]:
    """What a point carries: the filter keys, the file, its content hash (which keys the kNN graph's rows)
    and the sample id; for imported vectors also a digest of the vector (a changed vector, same image, is
    a changed point and a changed graph row)."""
    payload = {"label": table["label"][row], "split": table["split"][row], "tags": table["tags"][row],
               "filepath": table["filepath"][row], HASH_FIELD: content_hash, "sample_id": table["id"][row]}
    if vector_hash is not None:
        payload[VECTOR_HASH] = vector_hash
    return payload
