"""Settings, resolved in one direction: defaults, then a YAML file, then the environment, then arguments.

A YAML file has up to four sections, each optional::

    dataset: {name, source, format, label_field, demo_train, demo_test}
    embed:   {model, pretrained, fallback, image_size, batch_size, num_workers, device, precision}
    index:   {url, api_key, home, exact_graph_max, graph_precision, hnsw_above}
    queries: {k, texts, examples}
    engine:  {name, address}            local (default) or ray, and the Ray cluster's address

Environment variables: ``LOOKALIKE_HOME`` (stores and caches), ``LOOKALIKE_MODEL``, ``LOOKALIKE_DEVICE``,
``LOOKALIKE_BATCH_SIZE``, ``LOOKALIKE_NUM_WORKERS``, ``LOOKALIKE_PRECISION``, ``LOOKALIKE_QDRANT_URL``,
``LOOKALIKE_QDRANT_API_KEY``, ``LOOKALIKE_ENGINE``, ``LOOKALIKE_RAY_ADDRESS``.
The API key is read from the environment or an argument only; it is never written anywhere.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import ConfigError


def default_home() -> Path:
    """Folder for the embedded Qdrant stores and the embedding cache."""
    return Path(os.environ.get("LOOKALIKE_HOME", Path.home() / ".lookalike")).expanduser()


@dataclass
class DatasetConfig:
    name: str | None = None
    source: str | None = None
    format: str | None = None
    label_field: str | None = None
    demo_train: int = 4000
    demo_test: int = 1000


@dataclass
class EmbedConfig:
    model: str = "clip:ViT-B-32"
    pretrained: str | None = None
    fallback: str | None = None
    image_size: int | None = None
    batch_size: int = 32
    num_workers: int = 2
    device: str | None = None
    # fp32, bf16 or auto (bf16 where the device runs it fast: AMX CPUs, GPUs). fp32 by default: bf16 vectors
    # are faithful (cosine >= 0.99) but not equal, and get their own cache and collection.
    precision: str = "fp32"
    # The input normalisation of a user's own model (torchscript:PATH, python:MODULE:FUNCTION): imagenet (their
    # default), clip, half (0.5 / 0.5) or none. Other models bring their own preprocessing.
    normalize: str | None = None
    # A Detections field whose boxes are the rows (each box cropped and embedded; None: whole images), and the
    # context kept around each box: a share of its width and height on every side.
    patches: str | None = None
    margin: float = 0.0


@dataclass
class IndexConfig:
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    home: str | None = None
    # Above this many samples the kNN graph (and the duplicate finder's pixel search) is approximate
    # (searched cluster by cluster, graph.PROBES): exact costs N^2 x dim. benchmarks/speed.py on 2 cores: the
    # exact bf16 graph took 33.9 s at 60k x 1280 and 36.2 s at 100k x 512.
    exact_graph_max: int = 100_000
    # The exact graph's products: auto (bf16 candidates re-scored in fp32 where bf16 is fast), bf16 or fp32.
    # The graph is the fp32 one either way (benchmarks/speed.py checks recall@50 against fp32).
    graph_precision: str = "auto"
    # Points from which `embed` builds the embedded store's HNSW graph (below it exact scans take under
    # 10 ms); 0: never (queries scan). benchmarks/store_scale.py: 31 min to build at 1M on 2 cores.
    hnsw_above: int = 20_000
    # A Qdrant server or cluster's collection (configs/qdrant-cluster.yaml; None: the server's default).
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None  # replicas that must acknowledge a write
    on_disk: bool = False  # vectors on disk (memory-mapped) instead of in RAM
    on_disk_payload: bool = False
    quantization: str = "none"  # none, scalar (int8: 4x less memory) or binary (32x); originals kept for rescoring
    rescore: bool = True  # quantized search re-scores its candidates with the original vectors
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None
    search_ef: int | None = None  # HNSW beam width at query time
    read_consistency: str | None = None  # replicas a read asks: all, majority, quorum or a number (default 1)
    write_ordering: str = "weak"  # weak, medium or strong: how writes are ordered across replicas
    request_mb: int = 16  # an upsert request's size at most (Qdrant's default limit: 32 MB)
    retries: int = 5  # times a failed request is sent again (with exponential backoff)

    def home_path(self) -> Path:
        return Path(self.home).expanduser() if self.home else default_home()


@dataclass
class QueriesConfig:
    k: int = 5
    texts: list[str] = field(default_factory=list)
    examples: int = 3


@dataclass
class EngineConfig:
    # Where embedding, the kNN graph and duplicate verification run: local, or ray (lookalike.engines).
    name: str = "local"
    address: str | None = None  # the Ray cluster (None: a local one started by the run)


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    queries: QueriesConfig = field(default_factory=QueriesConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)


_ENV: dict[str, tuple[str, str, type]] = {
    "LOOKALIKE_HOME": ("index", "home", str),
    "LOOKALIKE_MODEL": ("embed", "model", str),
    "LOOKALIKE_DEVICE": ("embed", "device", str),
    "LOOKALIKE_BATCH_SIZE": ("embed", "batch_size", int),
    "LOOKALIKE_NUM_WORKERS": ("embed", "num_workers", int),
    "LOOKALIKE_PRECISION": ("embed", "precision", str),
    "LOOKALIKE_QDRANT_URL": ("index", "url", str),
    "LOOKALIKE_QDRANT_API_KEY": ("index", "api_key", str),
    "LOOKALIKE_ENGINE": ("engine", "name", str),
    "LOOKALIKE_RAY_ADDRESS": ("engine", "address", str),
}


SECTIONS = ("dataset", "embed", "index", "queries", "engine")
# The least value of each numeric setting that works, and the values of each setting with choices.
MINIMUM = {"demo_train": 0, "demo_test": 0, "image_size": 16, "batch_size": 1, "num_workers": 0,
           "exact_graph_max": 0, "hnsw_above": 0, "k": 1, "examples": 0, "shard_number": 1, "replication_factor": 1,
           "write_consistency_factor": 1, "hnsw_m": 0, "hnsw_ef_construct": 4, "search_ef": 1, "request_mb": 1,
           "retries": 0, "margin": 0}
MAXIMUM = {"margin": 2}  # the most of a numeric setting that makes sense (a box's margin: twice its sides)
CHOICES = {("embed", "precision"): ("fp32", "bf16", "auto"), ("index", "graph_precision"): ("auto", "bf16", "fp32"),
           ("engine", "name"): ("local", "ray"), ("index", "quantization"): ("none", "scalar", "binary"),
           ("index", "write_ordering"): ("weak", "medium", "strong")}
_KINDS = {"str": str, "int": int, "float": float, "bool": bool, "list[str]": list}


def _of_type(value: Any, python_type: type) -> bool:
    if python_type is bool:
        return isinstance(value, bool)
    return isinstance(value, python_type) and not isinstance(value, bool)  # YAML's yes is not 1


def _checked(section: str, key: str, value: Any, kind: str, origin: str) -> Any:
    """``value`` if it fits the setting's type (``kind``: its annotation), bounds and choices, else a
    ConfigError naming where it came from and the setting."""
    name = f"--{key.replace('_', '-')}" if origin == "arguments" else f"{origin}: {section}.{key}"
    allowed = [k.strip() for k in kind.split("|")]
    if value is None:
        if "None" in allowed:
            return None
        raise ConfigError(f"{name} needs a value")
    wanted = next(k for k in allowed if k != "None")
    python_type = _KINDS[wanted]
    if wanted == "float" and _of_type(value, int):  # YAML's 0 for 0.0
        value = float(value)
    if not _of_type(value, python_type):
        shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
        raise ConfigError(f"{name} must be {'a list of strings' if wanted == 'list[str]' else 'a ' + wanted}, "
                          f"got {shown}")
    if wanted == "list[str]" and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of strings")
    if wanted == "float" and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    if key in MINIMUM and value < MINIMUM[key]:
        raise ConfigError(f"{name} must be at least {MINIMUM[key]}, got {value}")
    if key in MAXIMUM and value > MAXIMUM[key]:
        raise ConfigError(f"{name} must be at most {MAXIMUM[key]}, got {value}")
    choices = CHOICES.get((section, key))
    if choices and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    if wanted == "str" and not value.strip():
        raise ConfigError(f"{name} must not be empty")
    if key == "read_consistency" and value not in ("all", "majority", "quorum") and not value.isdigit():
        raise ConfigError(f"{name} must be all, majority, quorum or a number of replicas, got {value!r}")
    return value


def _apply(config: Config, section: str, values: Mapping[str, Any], origin: str) -> None:
    target = getattr(config, section) if section in SECTIONS else None
    if target is None:
        raise ConfigError(
            f"{origin}: unknown section {section!r}; expected one of {', '.join(SECTIONS)}"
        )
    kinds = {f.name: str(f.type) for f in dataclasses.fields(target)}
    for key, value in values.items():
        if key not in kinds:
            raise ConfigError(
                f"{origin}: unknown setting {section}.{key}; expected one of {', '.join(sorted(kinds))}"
            )
        setattr(target, key, _checked(section, key, value, kinds[key], origin))


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build a :class:`Config` from defaults, ``path`` (YAML), the environment and ``overrides``.

    ``overrides`` maps section to settings, e.g. ``{"embed": {"model": "efficientnet-lite0"}}``;
    ``None`` values in it are ignored so that unset CLI flags do not mask the file.
    """
    config = Config()
    if path is not None:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; see configs/ for examples")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            what = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"config file {p} is not valid YAML{where}: {what}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(data).__name__}")
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{p}: section {section!r} must be a mapping of settings")
            if any(not isinstance(key, str) for key in values):
                raise ConfigError(f"{p}: section {section!r} has a setting whose name is not a word")
            _apply(config, section, values, str(p))
    for var, (section, key, kind) in _ENV.items():
        raw = os.environ.get(var)
        if raw:
            try:
                value = kind(raw)
            except ValueError as e:
                raise ConfigError(f"${var}={raw!r} is not a valid {kind.__name__}") from e
            _apply(config, section, {key: value}, f"${var}")
    for section, values in (overrides or {}).items():
        _apply(config, section, {k: v for k, v in values.items() if v is not None}, "arguments")
    return config
