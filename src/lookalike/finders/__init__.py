"""The finders, by name: each one a module here, registered below. The CLI's verbs, the App's operators and
the review panel's lists are made from this registry, so a new finder is one module plus one line here.
"""

from __future__ import annotations

from .base import Finder, Findings, Option, run

FINDERS: dict[str, Finder] = {}


def register(finder: Finder) -> Finder:
    """Add a finder to the registry (its name must be new)."""
    if finder.name in FINDERS:
        raise ValueError(f"a finder named {finder.name!r} is registered already")
    FINDERS[finder.name] = finder
    return finder


def get(name: str) -> Finder:
    from ..exceptions import ConfigError

    if name not in FINDERS:
        raise ConfigError(f"no finder {name!r}; there are: {', '.join(FINDERS)}")
    return FINDERS[name]


def _register_builtins() -> None:
    from .duplicates import Duplicates
    from .evaluate import Evaluate
    from .map import Map
    from .mislabels import Mislabels
    from .outliers import Outliers
    from .quality import Quality
    from .slices import Slices
    from .tags import Tags

    for cls in (Mislabels, Duplicates, Map, Quality, Outliers, Evaluate, Tags, Slices):
        register(cls())


_register_builtins()

__all__ = ["FINDERS", "Finder", "Findings", "Option", "get", "register", "run"]
