"""lookalike: find similar images, mislabels, duplicates, quality issues and outliers, evaluate retrieval,
tag images by words, and map the embedding space of labeled image datasets.

FiftyOne holds the dataset, CLIP (open_clip) or another registered model embeds it, Qdrant indexes it.
"""

from . import notices
from .api import (
    DuplicateSet,
    EmbeddingMap,
    EmbedSummary,
    FailureSlice,
    Match,
    Outlier,
    QualityIssue,
    Suspect,
    Tagged,
    compute_map,
    duplicates,
    embed,
    embeddings,
    evaluate,
    find,
    import_vectors,
    knn_graph,
    mislabels,
    outliers,
    quality,
    similar,
    slices,
    tag,
)
from .config import Config, load_config
from .datasets import load
from .demo import run
from .display import Results, show
from .exceptions import (
    BusyError,
    ConfigError,
    DatasetNotFoundError,
    IndexMismatchError,
    IndexUnreachableError,
    LookalikeError,
    ModelError,
    NotEmbeddedError,
    SourceError,
    TextNotSupportedError,
    UnknownModelError,
)
from .finders import Findings
from .index import EdgeIndex, ExactIndex, Hit, QdrantIndex, VectorIndex
from .models import Embedder, get_embedder, list_models, register_model

__version__ = "0.1.0"

notices.install()

__all__ = [
    "BusyError",
    "Config",
    "ConfigError",
    "DatasetNotFoundError",
    "DuplicateSet",
    "EdgeIndex",
    "EmbedSummary",
    "Embedder",
    "EmbeddingMap",
    "ExactIndex",
    "FailureSlice",
    "Findings",
    "Hit",
    "IndexMismatchError",
    "IndexUnreachableError",
    "LookalikeError",
    "Match",
    "ModelError",
    "NotEmbeddedError",
    "Outlier",
    "QdrantIndex",
    "QualityIssue",
    "Results",
    "SourceError",
    "Suspect",
    "Tagged",
    "TextNotSupportedError",
    "UnknownModelError",
    "VectorIndex",
    "compute_map",
    "duplicates",
    "embed",
    "embeddings",
    "evaluate",
    "find",
    "get_embedder",
    "import_vectors",
    "knn_graph",
    "list_models",
    "load",
    "load_config",
    "mislabels",
    "outliers",
    "quality",
    "register_model",
    "run",
    "show",
    "similar",
    "slices",
    "tag",
]
