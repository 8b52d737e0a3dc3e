"""Where the heavy work runs: in this process (``local``, the default) or on a Ray cluster (``ray``; a local
one when no address is given), never on an engine of our own.

An engine does two things: :meth:`Engine.map` runs a function over parts of a problem that share one large
object (the kNN graph's row blocks over the vectors; the duplicate finder's candidate pairs over the
thumbnails), and :meth:`Engine.embed` turns image sources (whole images, or boxes cropped from them:
:mod:`lookalike.decoding`) into vectors batch by batch. The Ray engine does the
first with tasks that read the shared object from Ray's object store, the second with a Ray Data pipeline:
decoding in CPU tasks, the model in a pool of actors sized to the GPUs (or CPUs) present. Both hand results
back in the order asked, so what they compute equals the local engine's, and the caller commits each batch
as it comes (an interrupted run resumes from what finished, as a local one does).
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from .exceptions import ConfigError, LookalikeError

if TYPE_CHECKING:
    from .config import Config
    from .decoding import Source
    from .models import Embedder
    from .thumbnails import ImageFacts

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
# Parts per CPU of a distributed engine that a problem (the graph's rows or clusters) is split into: a few, so
# that a slow machine does not hold up the rest, and no more (each task reads all the vectors: at 2k x 1280 on
# 2 CPUs, 64 tasks took 13x the local time, benchmarks/ray_overhead.py).
TASKS_PER_WORKER = 2
S = TypeVar("S")
P = TypeVar("P")
T = TypeVar("T")
# One decoded, embedded row (an image or a box): its row, its vector, its image facts, or its error.
Embedded = tuple[int, np.ndarray | None, "ImageFacts | None", str | None]


class Engine(Protocol):
    name: str
    parallelism: int  # how many parts it runs at once: what a problem is split for

    def map(self, fn: Callable[[S, P], T], shared: S, parts: Sequence[P]) -> list[T]:
        """``[fn(shared, part) for part in parts]``, in order."""
        ...

    def embed(self, sources: Sequence[Source], embedder: Embedder, batch_size: int, num_workers: int
              ) -> Iterator[list[Embedded]]:
        """The sources' rows embedded, a batch of sources at a time (in any order; each item says its row)."""
        ...


class LocalEngine:
    """Everything in this process (decoding in ``num_workers`` worker processes)."""

    name = "local"
    parallelism = 1

    def map(self, fn: Callable[[S, P], T], shared: S, parts: Sequence[P]) -> list[T]:
        return [fn(shared, part) for part in parts]

    def embed(self, sources: Sequence[Source], embedder: Embedder, batch_size: int, num_workers: int
              ) -> Iterator[list[Embedded]]:
        from .decoding import decode_batches

        for batch in decode_batches(sources, embedder.preprocess, batch_size, num_workers,
                                    pin_memory=embedder.device.startswith("cuda")):
            by_row = _embedded(embedder, [(j, x) for j, x, _, err in batch if err is None], batch_size)
            yield [(j, by_row.get(j), facts, err) for j, _, facts, err in batch]


def _embedded(embedder: Embedder, inputs: list[tuple[int, Any]], batch_size: int) -> dict[int, np.ndarray]:
    """Model inputs by row, embedded ``batch_size`` at a time (the boxes of a batch of images may be many)."""
    import torch

    out: dict[int, np.ndarray] = {}
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        vectors = embedder.embed_images(torch.stack([torch.as_tensor(x) for _, x in chunk]))
        out.update({j: v for (j, _), v in zip(chunk, vectors, strict=True)})
    return out


class RayEngine:
    """Tasks and a Ray Data pipeline on the Ray cluster at ``address`` (None: a local one, started here)."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as e:
            raise ConfigError("the ray engine needs Ray: pip install 'ray[data]'") from e
        self.address = address
        if address and address != "auto":
            _probe(address)  # Ray itself retries an unreachable address for minutes
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": _passed_on()}, num_cpus=None if address else os.cpu_count())
            except Exception as e:  # ConnectionError, TimeoutError, ...: Ray's own are several
                raise LookalikeError(f"cannot reach the Ray cluster at {address}: {str(e).splitlines()[0]}; "
                                     "check the address (ray://HOST:10001 or HOST:6379) and that it runs") from e
        self.parallelism = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def map(self, fn: Callable[[S, P], T], shared: S, parts: Sequence[P]) -> list[T]:
        """Tasks that read ``shared`` once from the object store; a progress bar (on a terminal) counts them."""
        import ray
        from tqdm import tqdm

        ref = ray.put(shared)
        task = ray.remote(fn)
        results = [task.remote(ref, part) for part in parts]
        with tqdm(total=len(results), desc=f"ray: {fn.__name__.strip('_').replace('_', ' ')}", unit="task",
                  disable=None, leave=False) as bar:
            pending = results
            while pending:
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
                bar.update(len(done))
        return list(ray.get(results))

    def embed(self, sources: Sequence[Source], embedder: Embedder, batch_size: int, num_workers: int
              ) -> Iterator[list[Embedded]]:
        import ray

        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        actors = gpus or max(1, int(resources.get("CPU", 1)) // 2)
        data = ray.data.from_items([{"source": pickle.dumps(s)} for s in sources],
                                   override_num_blocks=max(1, min(len(sources) // batch_size, 4 * actors)))
        decoded = data.map_batches(  # tasks, on the CPUs
            _decode, fn_kwargs={"preprocess": embedder.preprocess},  # type: ignore[arg-type]
            batch_size=batch_size, batch_format="numpy")
        # Ray starts a worker with one thread (OMP_NUM_THREADS=1); a CPU model gets the share of CPUs it was sized for.
        threads = 1 if gpus else max(1, int(resources.get("CPU", 1)) // actors)
        embedded = decoded.map_batches(_Embed, fn_constructor_args=(dict(embedder.spec), embedder.precision,
                                                                    embedder.key, threads),
                                       batch_size=batch_size, batch_format="numpy",
                                       compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if gpus else 0)
        for batch in embedded.iter_batches(batch_size=batch_size, batch_format="numpy"):
            yield [_unpacked(batch, i) for i in range(len(batch["row"]))]


def _probe(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to the cluster's head (``HOST:PORT`` or ``ray://HOST:PORT``), or a LookalikeError
    naming the address, within ``timeout`` seconds."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise LookalikeError(f"cannot reach the Ray cluster at {address}: {e}; check the address "
                             "(ray://HOST:10001 or HOST:6379) and that the cluster runs") from e


def _passed_on() -> dict[str, str]:
    """What the workers need of this process's environment: where models and data are."""
    keys = ("HOME", "LOOKALIKE_HOME", "FIFTYONE_DATABASE_URI", "HF_HUB_OFFLINE", "FASHION_MNIST_DIR")
    return {k: os.environ[k] for k in keys if k in os.environ}


def _decode(batch: dict[str, np.ndarray], preprocess: Callable[[Any], Any]) -> dict[str, np.ndarray]:
    """Ray Data stage: sources to model inputs (the model's own preprocessing) and image facts, in CPU tasks, a
    row out per image or box. Each travels as one pickled ``(input, facts, error)``: Arrow holds bytes of any
    shape, not arrays beside None."""
    from .decoding import decode_source

    rows, items = [], []
    for source in batch["source"]:
        for row, x, facts, err in decode_source(pickle.loads(source), preprocess):
            rows.append(row)
            items.append(pickle.dumps((None if x is None else x.numpy(), facts, err)))
    return {"row": np.array(rows, dtype=np.int64), "item": np.array(items, dtype=object)}


class _Embed:
    """Ray Data stage: model inputs to vectors, one model per actor (built once, on its GPU if it has one)."""

    def __init__(self, spec: dict[str, Any], precision: str, key: str, threads: int) -> None:
        import torch

        from .models import get_embedder

        torch.set_num_threads(threads)

        self.embedder = get_embedder(**spec, precision=precision)
        if self.embedder.key != key:
            raise LookalikeError(f"a Ray worker built model {self.embedder.key}, not {key}: its weights differ")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        items = [pickle.loads(b) for b in batch["item"]]
        good = [i for i, (x, _, _) in enumerate(items) if x is not None]
        vectors: list[np.ndarray | None] = [None] * len(items)
        if good:
            out = self.embedder.embed_images(torch.stack([torch.from_numpy(items[i][0]) for i in good]))
            for i, v in zip(good, out, strict=True):
                vectors[i] = v
        embedded = [pickle.dumps((v, facts, err)) for v, (_, facts, err) in zip(vectors, items, strict=True)]
        return {"row": batch["row"], "item": np.array(embedded, dtype=object)}


def _unpacked(batch: dict[str, np.ndarray], i: int) -> Embedded:
    vector, facts, err = pickle.loads(batch["item"][i])
    return int(batch["row"][i]), None if vector is None else np.asarray(vector, np.float32), facts, err


def is_distributed(engine: Engine | None) -> bool:
    """Whether ``engine`` runs parts elsewhere (their inputs must then travel: arrays, not tensors)."""
    return engine is not None and engine.name != "local"


def spans(count: int, engine: Engine | None) -> list[tuple[int, int]]:
    """``range(count)`` as (start, stop) parts for ``engine``: whole here, ``TASKS_PER_WORKER`` per CPU of a
    distributed one."""
    parts = TASKS_PER_WORKER * engine.parallelism if engine is not None and is_distributed(engine) else 1
    step = max(1, -(-count // parts))
    return [(a, min(a + step, count)) for a in range(0, count, step)]


def get_engine(name: str = "local", address: str | None = None) -> Engine:
    """The engine called ``name`` (``local`` or ``ray``); ``address``: the Ray cluster's."""
    if name == "local":
        return LocalEngine()
    if name == "ray":
        return RayEngine(address)
    raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")


def engine_of(config: Config) -> Engine:
    """The engine a run's settings (``config.engine``) name."""
    return get_engine(config.engine.name, config.engine.address)
