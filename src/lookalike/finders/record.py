"""A finder's run as a FiftyOne brain run: what it wrote (fields, tags, views) with which settings, so that
``dataset.list_brain_runs()`` lists it and ``dataset.delete_brain_run(key)`` removes what it wrote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fiftyone.core.brain import BrainMethod, BrainMethodConfig


class FinderRunConfig(BrainMethodConfig):
    """The record of a finder's run: which finder, with which settings, on which embedding run, and what it
    wrote (fields, tags, views), so that deleting the run removes them."""

    def __init__(self, finder: str = "", settings: dict[str, Any] | None = None, model: str | None = None,
                 fields: Sequence[str] = (), tags: Sequence[str] = (), views: Sequence[str] = (),
                 summary: dict[str, Any] | None = None, patches_field: str | None = None, **kwargs: Any) -> None:
        self.finder = finder
        self.settings = settings or {}
        self.model = model
        self.fields = list(fields)
        self.tags = list(tags)
        self.views = list(views)
        self.summary = summary or {}
        self.patches_field = patches_field  # the run was over these boxes: its fields and tags are theirs
        super().__init__(**kwargs)

    @property
    def type(self) -> str:
        return "lookalike"

    @property
    def method(self) -> str:
        return self.finder


class FinderRun(BrainMethod):
    """A finder's run as FiftyOne sees it: its fields, and their cleanup."""

    def get_fields(self, samples: Any, brain_key: str) -> list[str]:
        return list(self.config.fields)

    def cleanup(self, samples: Any, brain_key: str) -> None:
        dataset = samples._dataset
        for name in self.config.fields:
            if dataset.has_field(name):
                dataset.delete_sample_field(name)
        boxes = getattr(self.config, "patches_field", None)
        for tag in self.config.tags:
            if boxes:  # on the boxes, and on a detector's boxes the run tagged (missing labels)
                dataset.untag_labels(tag)
            else:
                dataset.untag_samples(tag)
        for view in self.config.views:
            if dataset.has_saved_view(view):
                dataset.delete_saved_view(view)
