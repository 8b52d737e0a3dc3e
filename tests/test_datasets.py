from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_blobs
from lookalike.datasets import find_label_field, get_dataset, load, sample_table
from lookalike.exceptions import ConfigError, DatasetNotFoundError, SourceError


def test_split_tree_loads_labels_and_splits_and_reloads_without_duplicates(tree: Path, dataset_name: str) -> None:
    ds = load(tree, name=dataset_name)
    assert len(ds) == 17
    assert sorted(set(ds.values("split"))) == ["test", "train"]
    assert ds.count_values("ground_truth.label") == {"red": 9, "blue": 8}
    red_test = ds.match({"split": "test", "ground_truth.label": "red"})
    assert all("/test/red/" in p for p in red_test.values("filepath"))

    write_blobs(tree / "test" / "blue", "blue", 1, seed=99)
    again = load(tree, name=dataset_name)
    assert len(again) == 18
    assert len(set(again.values("filepath"))) == 18


def test_flat_folder_loads_unlabeled(tmp_path: Path, dataset_name: str) -> None:
    write_blobs(tmp_path / "flat", "green", 3, seed=1)
    ds = load(tmp_path / "flat", name=dataset_name)
    assert len(ds) == 3
    assert find_label_field(ds) is None
    table = sample_table(ds, None)
    assert table["label"] == [None] * 3 and table["split"] == [None] * 3


def test_formats_go_through_fiftyone_importers(tree: Path, tmp_path: Path, dataset_name: str) -> None:
    import fiftyone as fo

    src = load(tree / "train", name=dataset_name)
    export = tmp_path / "exported"
    src.export(export_dir=str(export), dataset_type=fo.types.FiftyOneImageClassificationDataset,
               label_field="ground_truth")
    copy = load(export, name=dataset_name + "-copy", format="fiftyone-classification")
    try:
        assert len(copy) == len(src)
        assert copy.count_values("ground_truth.label") == src.count_values("ground_truth.label")
    finally:
        fo.delete_dataset(copy.name)
    with pytest.raises(ConfigError, match="coco"):
        load(export, name=dataset_name + "-x", format="no-such-format")


def test_existing_dataset_by_name_and_unknown_names(tree: Path, dataset_name: str) -> None:
    import fiftyone as fo

    load(tree, name=dataset_name)
    assert load(dataset_name).name == dataset_name
    clone = load(dataset_name, name=dataset_name + "-clone")
    try:
        assert len(clone) == 17
    finally:
        fo.delete_dataset(clone.name)
    with pytest.raises(DatasetNotFoundError, match=dataset_name):
        get_dataset("no-such-dataset")
    with pytest.raises(SourceError, match="neither a file"):
        load("no-such-folder-or-dataset")


def test_empty_folder_is_refused(tmp_path: Path, dataset_name: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        load(tmp_path / "empty", name=dataset_name)
