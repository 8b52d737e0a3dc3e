"""The record of each embedding run (dataset + model or imported vectors): kept in
``dataset.info["lookalike"]`` so later calls know which model, dimension and collection to use, and what a
point of its collection carries. The API key is never recorded. :mod:`lookalike.api` writes runs,
:mod:`lookalike.brain` and every verb read them; this module imports neither.
"""

from __future__ import annotations

import urllib.parse
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


def recorded_runs(dataset: fo.Dataset) -> dict[str, Any]:
    """Every run recorded on the dataset, and which is the latest."""
    return dict((dataset.info or {}).get(INFO_KEY, {}))


def get_run(dataset: fo.Dataset, model: str | None = None) -> dict[str, Any]:
    """The recorded embedding run for ``model`` (a model name or key), else the latest one."""
    info = recorded_runs(dataset)
    runs: dict[str, Any] = info.get("runs", {})
    if not runs:
        raise NotEmbeddedError(
            f"dataset {dataset.name!r} has no embeddings yet; run `lookalike embed {dataset.name}` first"
        )
    if model is None:
        return dict(runs[info["latest"]])
    for key, run in runs.items():
        if model in (key, run["model"]):
            return dict(run)
    raise NotEmbeddedError(
        f"dataset {dataset.name!r} has no embeddings from {model!r}; it has: "
        f"{', '.join(r['model'] for r in runs.values())}. Run `lookalike embed {dataset.name} --model {model}`"
    )


def open_run_index(run: dict[str, Any], config: Config) -> EdgeIndex | QdrantIndex:
    """The index holding a recorded run's vectors (the server URL comes from config when it is set)."""
    url = config.index.url or run.get("url")
    return open_index(run["dataset"], run["model_key"], run["dim"], url=url, api_key=config.index.api_key,
                      home=config.index.home_path())


def run_embedder(run: dict[str, Any], config: Config) -> Embedder:
    """Rebuild the model that produced a run (for image and text queries)."""
    if run.get("imported"):
        raise ModelError(f"the run {run['model']!r} holds imported vectors and has no model, so it cannot embed "
                         "an image or a text prompt; query it by sample (--sample, --like with sample ids)")
    return get_embedder(**run["spec"], device=config.embed.device, precision=config.embed.precision)


def save_run(dataset: fo.Dataset, run: dict[str, Any]) -> None:
    """Record a run (replacing one of the same key) as the dataset's latest."""
    info = recorded_runs(dataset)
    info.setdefault("runs", {})[run["model_key"]] = run
    info["latest"] = run["model_key"]
    dataset.info[INFO_KEY] = info
    dataset.save()


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
