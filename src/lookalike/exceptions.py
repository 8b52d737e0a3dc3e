"""Every error lookalike raises on purpose.

    LookalikeError
    ├── ConfigError            a setting or argument is wrong
    ├── DatasetNotFoundError   no FiftyOne dataset of that name
    ├── SourceError            a dataset source could not be loaded
    ├── ModelError             a model could not be built or used
    │   ├── UnknownModelError     the name is not in the registry
    │   └── TextNotSupportedError the model has no text tower
    ├── NotEmbeddedError       the dataset has no embeddings for that model yet
    ├── BusyError              another process is running the same job on that dataset
    └── IndexError_            the vector index refused or failed
        ├── IndexMismatchError    an existing collection holds other vectors
        └── IndexUnreachableError the Qdrant server could not be reached

Messages say what was wrong, what was expected and what to do.
"""

from __future__ import annotations


class LookalikeError(Exception):
    """Base class of all lookalike errors."""


class ConfigError(LookalikeError, ValueError):
    """A setting or argument is wrong."""


class DatasetNotFoundError(LookalikeError, KeyError):
    """No FiftyOne dataset has the given name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SourceError(LookalikeError):
    """A dataset source could not be loaded."""


class ModelError(LookalikeError):
    """A model could not be built or used."""


class UnknownModelError(ModelError, KeyError):
    """The model name is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TextNotSupportedError(ModelError):
    """The model has no text tower, so it cannot embed a text prompt."""


class NotEmbeddedError(LookalikeError):
    """The dataset has not been embedded with the requested model."""


class IndexError_(LookalikeError):
    """The vector index refused or failed an operation."""


class IndexMismatchError(IndexError_):
    """An existing collection holds vectors of another size or model."""


class IndexUnreachableError(IndexError_):
    """The Qdrant server could not be reached."""


__all__ = [
    "ConfigError",
    "DatasetNotFoundError",
    "IndexError_",
    "IndexMismatchError",
    "IndexUnreachableError",
    "LookalikeError",
    "ModelError",
    "NotEmbeddedError",
    "SourceError",
    "TextNotSupportedError",
    "UnknownModelError",
]


class BusyError(LookalikeError):
    """Another process holds what this run needs exclusively (an embedding of the same dataset)."""
