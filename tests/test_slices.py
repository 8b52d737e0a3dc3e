"""Failure slices and whose mistake, on planted vectors: a sub-population of class a that the model calls b (a
slice of model errors), labels flipped where the model is right (label errors), diffuse errors elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import MODEL
from lookalike import embed, import_vectors, slices
from lookalike.cli import main
from lookalike.exceptions import ConfigError

CLASSES = ("a", "b", "c")


def _clusters() -> tuple[list[tuple[int, int]], np.ndarray]:
    """120 rows in three classes (three clusters) and 24 more of class a near a centre of their own: (class,
    centre) per row, and unit vectors."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 32))  # a, b, c, and the slice's part of a
    rows = [(c, c) for c in range(3) for _ in range(32)] + [(0, 3)] * 24
    vectors = np.array([centres[where] + 0.35 * rng.normal(size=32) for _, where in rows], dtype=np.float32)
    return rows, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _planted(tmp_path: Path, name: str) -> dict[str, list[str]]:
    """120 samples (:func:`_clusters`), half train, half test, predictions on all. Planted: the 24 samples of a
    near their own centre (``slice``) predicted b; 4 of c labelled a or b, predicted c (``flipped``); 3 diffuse
    errors among the rest of b. Returns the planted sample ids."""
    import fiftyone as fo

    rows, vectors = _clusters()
    folder = tmp_path / "images"
    folder.mkdir()
    samples, kinds = [], []
    for i, (label, where) in enumerate(rows):
        path = folder / f"{i:03d}.png"
        Image.new("RGB", (8, 8), (i, 0, 0)).save(path)
        kind, given, predicted = "", CLASSES[label], CLASSES[label]
        if where == 3:
            kind, predicted = "slice", "b"
        elif label == 2 and i % 8 == 1:  # four, two labelled a and two b: no pattern among them
            kind, given = "flipped", "a" if i % 16 == 1 else "b"
        elif label == 1 and i % 11 == 3:
            kind, predicted = "diffuse", "c"
        samples.append(fo.Sample(filepath=str(path), ground_truth=fo.Classification(label=given),
                                 predictions=fo.Classification(label=predicted), split=("train", "test")[i % 2]))
        kinds.append(kind)
    ds = fo.Dataset(name, persistent=True)
    ids = ds.add_samples(samples, progress=False)
    import_vectors(name, vectors, ids)
    planted: dict[str, list[str]] = {"slice": [], "flipped": [], "diffuse": []}
    for sid, kind in zip(ids, kinds, strict=True):
        if kind:
            planted[kind].append(sid)
    return planted


def test_the_planted_slice_is_found_and_each_error_knows_whose_it_is(tmp_path: Path, dataset_name: str) -> None:
    import fiftyone as fo

    planted = _planted(tmp_path, dataset_name)
    found = slices(dataset_name, prediction_field="predictions")
    assert len(found) == 1  # the flipped labels and the diffuse errors are no region of errors
    (s,) = found
    members = [m["id"] for m in s.members]
    assert set(members) == set(planted["slice"])
    assert (s.size, s.errors, s.label, s.prediction) == (24, 24, "a", "b")
    assert s.error_kinds == {"label": 0, "model": 24, "ambiguous": 0}  # its neighbours say a: the model's mistake
    assert s.description == ""  # imported vectors: no text tower to describe it by
    ds = fo.load_dataset(dataset_name)
    kind = dict(zip(*ds.values(["id", "error_kind"]), strict=True))
    assert all(kind[i] == "label" for i in planted["flipped"])  # the model and the neighbours say c
    assert all(kind[i] is None for i in ds.values("id") if i not in {*planted["slice"], *planted["flipped"],
                                                                        *planted["diffuse"]})
    in_slice = dict(zip(*ds.values(["id", "in_slice"]), strict=True))
    assert {i for i, f in in_slice.items() if f} == set(planted["slice"])
    assert set(ds.values("slice")) == {0, -1}
    assert ds.has_saved_view("lookalike-slice-0") and ds.load_saved_view("lookalike-slice-0").values("id") == members
    frame = found.to_pandas()
    assert list(frame["slice"]) == [0] and int(frame["model_errors"][0]) == 24  # a table of slices
    assert "slice 0" in found._repr_html_()
    assert "lookalike_run_slices" in ds.list_brain_runs()


def test_the_cli_aims_at_a_split_and_prints_every_member(tmp_path: Path, dataset_name: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    planted = _planted(tmp_path, dataset_name)
    assert main(["slices", dataset_name, "--prediction-field", "predictions", "--split", "test",
                 "--min-size", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"slices", "error_kinds", "error_kinds_per_class"}  # no detector figures for a classifier
    assert out["error_kinds_per_class"]["a"]["model"] == len(out["slices"][0]["members"])  # the slice's class
    (s,) = out["slices"]
    test_ids = set(fo.load_dataset(dataset_name).match({"split": "test"}).values("id"))
    assert {m["id"] for m in s["members"]} == set(planted["slice"]) & test_ids  # the test split's part only
    assert set(s["members"][0]) == {"id", "filepath", "label", "prediction", "error_kind", "score"}
    assert out["error_kinds"]["label"] == len(set(planted["flipped"]) & test_ids)
    train = fo.load_dataset(dataset_name).match({"split": "train"})
    assert set(train.values("slice")) == {None}  # the train split untouched

    # A rerun that finds no slice (min size above it) removes the view it no longer makes.
    assert main(["slices", dataset_name, "--prediction-field", "predictions", "--min-size", "40"]) == 0
    assert "0 failure slices" in capsys.readouterr().out
    assert not fo.load_dataset(dataset_name).has_saved_view("lookalike-slice-0")
    assert main(["slices", dataset_name, "--prediction-field", "predictions", "--split", "val"]) != 0
    assert "has no split 'val'; its splits: test, train" in capsys.readouterr().err


def test_bad_predictions_get_one_line_and_nothing_is_written(tmp_path: Path, dataset_name: str) -> None:
    import fiftyone as fo

    _planted(tmp_path, dataset_name)
    ds = fo.load_dataset(dataset_name)
    with pytest.raises(ConfigError, match=r"'nope'.*no such field"):
        slices(dataset_name, prediction_field="nope")
    with pytest.raises(ConfigError, match=r"'split'.*Classification field"):
        slices(dataset_name, prediction_field="split")
    ds.clone_sample_field("predictions", "elsewhere")
    ds.set_values("elsewhere.label", ["x"] * len(ds))
    with pytest.raises(ConfigError, match="share no class"):
        slices(dataset_name, prediction_field="elsewhere")
    assert not ds.has_field("slice") and "lookalike_run_slices" not in ds.list_brain_runs()
    with pytest.raises(ConfigError, match="--prediction-field"):
        slices(dataset_name, prediction_field="")
    one_class = slices(ds.match({"ground_truth.label": "a"}), prediction_field="predictions")  # a view of one class
    assert [(s.label, s.prediction, s.size) for s in one_class] == [("a", "b", 24)]  # the slice, as in the whole
    ds.clone_sample_field("ground_truth", "perfect")
    empty = slices(dataset_name, prediction_field="perfect")
    assert len(empty) == 0
    assert fo.load_dataset(dataset_name).get_brain_info("lookalike_run_slices").config.summary["reason"] \
        .startswith("no errors")


def test_a_clip_run_describes_each_slice_by_phrases(tmp_path: Path, dataset_name: str) -> None:
    """With a text tower (the test model's random weights: plumbing, not quality), the description is the
    vocabulary's phrases nearest the slice's direction."""
    import fiftyone as fo

    _planted(tmp_path, dataset_name)
    embed(dataset_name, MODEL)  # the latest run now: the images' random-tower vectors
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("# phrases\nred things\nblue things\ngreen things\ndark things\n")
    ds = fo.load_dataset(dataset_name)
    order = ds.sort_by("filepath")  # image i is red i/255: the first 30 are the darkest
    wrong = {"a": "b", "b": "c", "c": "a"}
    order.set_values("predictions.label", [wrong[lab] if i < 30 else lab
                                           for i, lab in enumerate(order.values("ground_truth.label"))])
    found = slices(dataset_name, prediction_field="predictions", min_size=2, vocab=str(vocab))
    assert found, "the model fails on the darkest images: a region of errors"
    phrases = {"red things", "blue things", "green things", "dark things"}
    for s in found:
        assert len(s.description.split("; ")) == 3 and set(s.description.split("; ")) <= phrases


def test_a_detectors_failures_over_boxes(tmp_path: Path, dataset_name: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The rows are labelled boxes (:func:`_clusters`, two to an image); a detector's boxes matched to them by
    IoU. Planted: the 24 boxes of a near their own centre missed (``slice``), 3 boxes of b detected as c, and 5
    detected boxes where nothing is labelled (false positives)."""
    import fiftyone as fo

    field = "ground_truth_detections"
    rows, vectors = _clusters()
    folder = tmp_path / "images"
    folder.mkdir()
    places = ([0.05, 0.05, 0.3, 0.3], [0.55, 0.55, 0.3, 0.3])
    samples: list[Any] = []
    planted: dict[str, list[str]] = {"slice": [], "wrong": [], "false": []}
    for n in range(len(rows) // 2):
        path = folder / f"{n:03d}.png"
        Image.new("RGB", (32, 32), (n, 0, 0)).save(path)
        truth, predicted = [], []
        for (label, where), box in zip(rows[2 * n:2 * n + 2], places, strict=True):
            d = fo.Detection(label=CLASSES[label], bounding_box=box)
            truth.append(d)
            guess = CLASSES[label]
            if where == 3:
                planted["slice"].append(d.id)
                continue
            if label == 1 and len(planted["wrong"]) < 3 and n % 4 == 0:
                planted["wrong"].append(d.id)
                guess = "c"
            predicted.append(fo.Detection(label=guess, confidence=0.9, bounding_box=[box[0] + 0.02, *box[1:]]))
        if n % 12 == 5:
            fp = fo.Detection(label="b", confidence=0.3 + 0.1 * len(planted["false"]),
                              bounding_box=[0.6, 0.05, 0.3, 0.2])
            predicted.append(fp)
            planted["false"].append(fp.id)
        samples.append(fo.Sample(filepath=str(path), ground_truth_detections=fo.Detections(detections=truth),
                                 predictions=fo.Detections(detections=predicted)))
    ds = fo.Dataset(dataset_name, persistent=True)
    ds.add_samples(samples, progress=False)
    ids = [d.id for s in ds for d in s[field].detections]
    import_vectors(dataset_name, vectors, ids, patches=field)
    assert len(planted["wrong"]) == 3 and len(planted["false"]) == 5

    found = slices(dataset_name, patches=field, prediction_field="predictions")
    (s,) = found
    assert {m["id"] for m in s.members} == set(planted["slice"])
    assert (s.label, s.prediction, s.errors) == ("a", "(missed)", 24)
    assert s.error_kinds["label"] == 0  # a box the detector missed has no prediction to back against its label
    assert {"sample_id", "filepath"} <= set(s.members[0])
    ds.reload()
    in_slice = dict(zip(*ds.values([f"{field}.detections.id", f"{field}.detections.in_slice"], unwind=True),
                        strict=True))
    assert {i for i, f in in_slice.items() if f} == set(planted["slice"])  # written on the boxes
    assert not ds.has_field("slice")  # not on the samples
    view = ds.load_saved_view(f"lookalike-slice-0-{field}")
    assert view.values("id") == [m["id"] for m in s.members]  # a patches view, most typical first
    false = ds.load_saved_view(f"lookalike-false-positives-{field}")
    assert false.values("id") == planted["false"][::-1]  # most confident first

    assert main(["slices", dataset_name, "--patches", field, "--prediction-field", "predictions", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["missed"], out["wrong_class"], out["false_positives"]) == (24, 3, 5)
    assert main(["slices", dataset_name, "--patches", field, "--prediction-field", "predictions"]) == 0
    assert "detector: 24 labelled boxes missed, 3 of another class, 5 of its boxes match no labelled one" \
        in capsys.readouterr().out
    from lookalike.app_plugin import _slice_sections
    from lookalike.finders import FINDERS

    (section,) = _slice_sections(fo.load_dataset(dataset_name), FINDERS["slices"])  # the App's review panel
    assert section["items"][0]["patches"] == field and "24 boxes" in section["items"][0]["text"]
    with pytest.raises(ConfigError, match=r"'nope'.*no such field; over boxes it must be a Detections field"):
        slices(dataset_name, patches=field, prediction_field="nope")
    ds.delete_brain_run(f"lookalike_run_slices__{field}")  # its cleanup takes the views and box fields
    ds.reload()
    assert not ds.has_saved_view(f"lookalike-slice-0-{field}") and not ds.has_field(f"{field}.detections.slice")
