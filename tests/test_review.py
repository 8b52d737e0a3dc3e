"""Review decisions on a real FiftyOne dataset, and the plugin FiftyOne finds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lookalike import review
from lookalike.exceptions import ConfigError

if TYPE_CHECKING:
    import fiftyone as fo


@pytest.fixture
def reviewed(dataset_name: str) -> fo.Dataset:
    """Four samples: 0 and 1 suspects with suggestions, 2 and 3 a duplicate group keeping 2."""
    import fiftyone as fo

    ds = fo.Dataset(dataset_name)
    ds.add_samples([
        fo.Sample(filepath=f"/data/{i}.png", ground_truth=fo.Classification(label=label),
                  suggested_label=suggestion, duplicate_group=group, duplicate_keep=keep)
        for i, (label, suggestion, group, keep) in enumerate(
            [("cat", "dog", None, None), ("dog", "cat", None, None), ("cat", "cat", 0, True), ("cat", "cat", 0, False)])
    ])
    return ds


def test_accept_dismiss_and_undo_are_recorded(reviewed: fo.Dataset) -> None:
    ds = reviewed
    first, second = ds.values("id")[:2]
    assert review.accept_label(ds, first) == "dog"
    assert review.accept_label(ds, first) == "dog"  # twice: the label before review is still the first one
    sample = ds[first]
    assert sample.ground_truth.label == "dog" and sample[review.REVIEW_FIELD] == "accepted"
    assert sample[review.BEFORE_FIELD] == "cat" and review.REVIEWED_TAG in sample.tags
    review.dismiss_label(ds, second)
    assert ds[second].ground_truth.label == "dog" and ds[second][review.REVIEW_FIELD] == "dismissed"

    review.undo(ds, first)
    sample = ds[first]
    assert sample.ground_truth.label == "cat" and sample[review.REVIEW_FIELD] is None
    assert review.REVIEWED_TAG not in sample.tags
    review.accept_label(ds, first)
    review.dismiss_label(ds, first)  # dismissing an accepted suggestion puts the label back
    assert ds[first].ground_truth.label == "cat" and ds[first][review.REVIEW_FIELD] == "dismissed"


def test_keep_plan_tags_and_deletes_nothing(reviewed: fo.Dataset) -> None:
    ds = reviewed
    ids = ds.values("id")
    kept, removed = review.apply_keep_plan(ds, 0)
    assert (kept, removed) == ([ids[2]], [ids[3]])
    assert len(ds) == 4 and ds[ids[3]].tags == [review.REMOVE_TAG] and ds[ids[2]].tags == [review.KEEP_TAG]
    assert ds.load_saved_view(review.KEPT_VIEW).values("id") == ids[:3]
    review.undo(ds, ids[3])
    assert ds[ids[3]].tags == []
    with pytest.raises(ConfigError, match="no duplicate group 7"):
        review.apply_keep_plan(ds, 7)


def test_a_flagged_sample_is_kept_or_removed_and_undone(reviewed: fo.Dataset) -> None:
    ds = reviewed
    ids = ds.values("id")
    review.decide(ds, ids[0], keep=False)
    assert ds[ids[0]].tags == [review.REMOVE_TAG] and ids[0] not in ds.load_saved_view(review.KEPT_VIEW).values("id")
    review.decide(ds, ids[0], keep=True)  # a second thought replaces the first
    assert ds[ids[0]].tags == [review.KEEP_TAG] and ds.load_saved_view(review.KEPT_VIEW).values("id") == ids
    review.undo(ds, ids[0])
    assert ds[ids[0]].tags == [] and len(ds) == 4


def test_the_review_panel_lists_what_each_registered_finder_flagged(reviewed: fo.Dataset) -> None:
    """A list per finder with a decision, from the registry: open findings only, most severe first."""
    from lookalike.app_plugin import _section, _slice_sections
    from lookalike.finders import FINDERS

    ds = reviewed
    ids = ds.values("id")
    for sample, (worst, issues, outlier, suspect) in zip(ds, [
            (0.9, ["dark"], 0.1, True), (0.2, None, 0.8, True), (0.7, ["blurry", "grayscale"], 0.2, False),
            (0.1, None, 0.3, False)], strict=True):
        sample["quality_score"], sample["quality_flag"], sample["quality_issues"] = worst, worst >= 0.5, issues
        sample["outlier_score"], sample["outlier_flag"] = outlier, outlier >= 0.5
        sample["suspect_label"], sample["mislabel_score"] = suspect, 1 - worst
        sample.save()
    reviewable = {f.name: f for f in FINDERS.values() if f.review}
    assert set(reviewable) == {"mislabels", "duplicates", "quality", "outliers", "slices"}
    assert _slice_sections(ds, reviewable.pop("slices")) == []  # not run on this dataset (App-tested where it is)
    sections = {name: _section(ds, f) for name, f in reviewable.items()}
    quality = sections["quality"]
    assert quality and [i["id"] for i in quality["items"]] == [ids[0], ids[2]] and quality["open"] == 2
    assert "blurry, grayscale" in quality["items"][1]["text"] and quality["title"] == "Image quality issues"
    assert [i["id"] for i in sections["outliers"]["items"]] == [ids[1]]  # type: ignore[index]
    assert [i["id"] for i in sections["mislabels"]["items"]] == [ids[1], ids[0]]  # type: ignore[index]
    assert "**dog** → **cat**" in sections["mislabels"]["items"][0]["text"]  # type: ignore[index]
    assert sections["duplicates"]["items"] == [{"group": 0, "text": "group 0: 2 images"}]  # type: ignore[index]

    review.decide(ds, ids[0], keep=True)  # decided: no longer open
    review.dismiss_label(ds, ids[1])
    assert [i["id"] for i in _section(ds, reviewable["quality"])["items"]] == [ids[2]]  # type: ignore[index]
    assert [i["id"] for i in _section(ds, reviewable["mislabels"])["items"]] == [ids[0]]  # type: ignore[index]
    ds.delete_sample_field("outlier_flag")
    assert _section(ds, reviewable["outliers"]) is None  # not run on this dataset: no list


def test_the_plugin_is_linked_and_found_by_fiftyone() -> None:
    import fiftyone.plugins as fop

    from lookalike.app import PLUGIN_DIR, install_plugin

    link = install_plugin()
    assert link.resolve() == PLUGIN_DIR.resolve() and install_plugin() == link  # idempotent
    plugin = fop.get_plugin("@lookalike/lookalike")
    assert Path(plugin.directory).resolve() == PLUGIN_DIR.resolve()
    from lookalike.finders import FINDERS

    # every registered finder's operator is declared (FiftyOne lists panels among the operators)
    assert set(plugin.operators) == {"find_similar", *(f.operator for f in FINDERS.values()), "lookalike_review"}
    assert plugin.to_dict()["panels"] == ["lookalike_review"] and plugin.has_py


def test_a_delegated_run_records_progress_and_its_results(dataset_name: str, tree: Path) -> None:
    """What `fiftyone delegated launch` does with a queued lookalike operator, run here in-process."""
    import fiftyone as fo
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    from lookalike import embed, load
    from lookalike.app import install_plugin
    from lookalike.finders.mislabels import Mislabels

    SUSPECT_VIEW = Mislabels.view

    install_plugin()
    load(tree, name=dataset_name)
    embed(dataset_name, "random-tiny-clip")
    queued = foo.execute_operator("@lookalike/lookalike/find_mislabels",
                                  {"dataset": dataset_name, "params": {"delegate": True}})
    assert queued.delegated  # not run yet: queued for a worker
    service = DelegatedOperationService()
    service.execute_queued_operations(dataset_name=dataset_name)
    done = service.list_operations(dataset_name=dataset_name)[0]
    assert done.run_state == "completed", done.run_state
    assert re.fullmatch(r"\d+ suspected mislabels of \d+", done.status.label)  # its last progress
    assert done.status.progress == 1.0
    ds = fo.load_dataset(dataset_name)
    ds.reload()
    assert SUSPECT_VIEW in ds.list_saved_views() and ds.has_field("mislabel_score")
