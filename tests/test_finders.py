"""The finder contract and the new finders: the registry, runs on a view, planted answers for image quality,
outliers, retrieval evaluation and zero-shot tags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

import lookalike
from conftest import MODEL, write_blobs
from lookalike import embed, import_vectors, load
from lookalike.cli import build_parser, main
from lookalike.exceptions import ConfigError, ModelError
from lookalike.finders import FINDERS
from lookalike.graph import KnnGraph
from lookalike.retrieval import label_retrieval


def _verbs() -> dict[str, Any]:
    """The CLI's subcommands, by name."""
    import argparse

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_registered_finder_has_a_cli_verb_an_app_operator_and_a_documented_score() -> None:
    import yaml

    from lookalike import app_plugin

    verbs = _verbs()
    registered: list[Any] = []

    class Plugin:
        def register(self, cls: Any) -> None:
            registered.append(cls)

    app_plugin.register(Plugin())
    operators = {cls().config.name for cls in registered if hasattr(cls, "operator_name")}
    assert {"quality", "outliers", "evaluate", "tag", "mislabels", "duplicates", "map"} <= set(FINDERS)
    for finder in FINDERS.values():
        assert finder.name in verbs, finder.name
        assert verbs[finder.name].format_help().startswith(f"usage: lookalike {finder.name}")  # its help formats
        assert finder.operator in operators, finder.operator
        assert finder.score_doc and finder.help
    # FiftyOne lists a plugin's operators from its fiftyone.yml: a finder missing there has no operator in the App.
    declared = yaml.safe_load((Path(app_plugin.__file__).parent / "fiftyone.yml").read_text())
    assert set(declared["operators"]) == {"find_similar", *(f.operator for f in FINDERS.values())}


def test_a_finder_on_a_view_writes_only_that_views_samples(embedded: tuple[str, Path, Path]) -> None:
    import fiftyone as fo
    from fiftyone import ViewField as F

    name = embedded[0]
    dataset = fo.load_dataset(name)
    view = dataset.match(F("split") == "train")
    assert 0 < len(view) < len(dataset)
    found = lookalike.find("outliers", view, k=3)
    dataset.reload()
    inside = set(view.values("id"))
    assert set(found.ids) <= inside and found.ids
    written = {sid for sid, s in zip(*dataset.values(["id", "outlier_score"]), strict=True) if s is not None}
    assert written and written <= inside
    # the run is recorded with what it wrote, and deleting it removes that
    with pytest.raises(ConfigError, match="k must be at least 1, got 0"):  # options checked before any work
        lookalike.find("outliers", view, k=0)
    with pytest.raises(ConfigError, match="keep must be one of largest, train, first"):
        lookalike.duplicates(view, keep="biggest")
    assert "lookalike_run_outliers" in dataset.list_brain_runs()
    dataset.delete_brain_run("lookalike_run_outliers")
    assert not dataset.has_field("outlier_score")


def test_similar_on_a_view_returns_only_its_samples(embedded: tuple[str, Path, Path]) -> None:
    import fiftyone as fo
    from fiftyone import ViewField as F

    name = embedded[0]
    view = fo.load_dataset(name).match(F("split") == "test")
    query = fo.load_dataset(name).match(F("split") == "train").first().id
    matches = lookalike.similar(view, sample=query, k=50)
    assert matches and {m.id for m in matches} <= set(view.values("id"))


def test_quality_finds_planted_dark_blurry_and_odd_images(tmp_path: Path, dataset_name: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from skimage import data

    root = tmp_path / "photos"
    root.mkdir()
    photo = Image.fromarray(data.astronaut())
    rng = np.random.default_rng(0)
    for i in range(24):  # clean crops of a real photo
        x, y = rng.integers(0, 200, 2)
        photo.crop((int(x), int(y), int(x) + 256, int(y) + 256)).save(root / f"clean-{i}.png")
    source = photo.crop((100, 100, 356, 356))
    Image.fromarray((np.asarray(source) * 0.2).astype(np.uint8)).save(root / "dark.png")
    source.filter(ImageFilter.GaussianBlur(4)).save(root / "blurry.png")
    source.crop((0, 100, 256, 150)).save(root / "sliver.png")
    source.convert("L").convert("RGB").save(root / "grey.png")
    (root / "broken.png").write_bytes(b"not a png")
    load(root, name=dataset_name)

    found = lookalike.quality(dataset_name)  # no embedding needed
    issues = {Path(q.filepath).stem: q.issues for q in found}
    assert "dark" in issues["dark"] and "blurry" in issues["blurry"] and "grayscale" in issues["grey"]
    assert "odd_aspect_ratio" in issues["sliver"]
    assert sum(bool(issues[f"clean-{i}"]) for i in range(24)) <= 1
    assert "broken" not in issues  # unreadable: listed as such, not scored
    capsys.readouterr()
    assert main(["quality", dataset_name, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {Path(q["filepath"]).stem for q in listed} >= {"dark", "blurry", "sliver", "grey"}
    assert set(listed[0]) == {"id", "filepath", "issues", "scores"}
    assert all(0 <= s <= 1 for s in listed[0]["scores"].values())
    import fiftyone as fo

    ds = fo.load_dataset(dataset_name)
    assert "quality-issue" in ds.count_sample_tags() and ds.has_saved_view("lookalike-quality")


def _imported(tmp_path: Path, name: str, vectors: np.ndarray, labels: list[str]) -> None:
    """A dataset of one small image per vector, labeled, with the vectors imported as its run."""
    root = tmp_path / "imgs"
    for i, label in enumerate(labels):
        write_blobs(root / label, "red", 1, seed=100 + i)
    load(root, name=name)
    import fiftyone as fo

    ds = fo.load_dataset(name)
    ids, paths = ds.values(["id", "filepath"])
    order: dict[str, list[str]] = {Path(p).parent.name: [] for p in paths}
    for sid, p in sorted(zip(ids, paths, strict=True), key=lambda t: t[1]):
        order[Path(p).parent.name].append(sid)
    by_label = {lab: iter(order[lab]) for lab in order}
    row_ids = [next(by_label[lab]) for lab in labels]
    import_vectors(name, vectors, row_ids)


def test_a_very_dark_or_flat_image_is_flagged_however_varied_its_collection() -> None:
    """Brightness and contrast spread so widely that no image is far out of them: an image whose brightest
    pixels are under a fifth of white, or whose luminance hardly varies, is flagged all the same."""
    from lookalike.image_quality import STATS, score_issues

    rng = np.random.default_rng(0)
    n = 200
    stats = np.zeros((n, len(STATS)), np.float32)
    stats[:, STATS.index("p99")] = rng.uniform(0.05, 1.0, n)  # night skies to daylight
    stats[:, STATS.index("contrast")] = rng.uniform(0.01, 0.3, n)
    stats[:, STATS.index("p1")] = rng.uniform(0.0, 0.04, n)
    stats[:, STATS.index("chroma")] = rng.uniform(0.05, 0.3, n)
    stats[:, STATS.index("sharpness")] = 0.5
    sides = np.full(n, 256)
    scores = score_issues(stats, sides, sides)
    p99, contrast = stats[:, STATS.index("p99")], stats[:, STATS.index("contrast")]
    assert np.array_equal(scores["dark"] >= 0.5, p99 <= 0.2) and (p99 <= 0.2).any()
    assert np.array_equal(scores["low_information"] >= 0.5, contrast <= 0.02) and (contrast <= 0.02).any()


def test_outliers_flag_a_planted_far_vector(tmp_path: Path, dataset_name: str) -> None:
    rng = np.random.default_rng(0)
    centre = rng.normal(size=16)
    vectors = centre + 0.1 * rng.normal(size=(40, 16))
    vectors[17] = rng.normal(size=16) * 3  # far from the crowd
    _imported(tmp_path, dataset_name, vectors, ["a"] * 40)
    found = lookalike.outliers(dataset_name, k=5)
    assert found[0].flagged and sum(o.flagged for o in found) == 1
    assert all(0 <= o.score <= 1 for o in found)


def test_a_group_pointing_where_the_collection_does_not_is_found_though_it_has_neighbours() -> None:
    """8 vectors off the crowd's subspace, near each other: no neighbour distance sees them (they are each
    other's neighbours), the Mahalanobis measure does."""
    from sklearn.metrics import roc_auc_score

    from lookalike.graph import exact_knn
    from lookalike.outlier_scores import outlier_scores

    rng = np.random.default_rng(0)
    d = 32
    basis = rng.normal(size=(8, d))
    crowd = rng.normal(size=(600, 8)) @ basis + 0.1 * rng.normal(size=(600, d)) + 5 * np.eye(d)[0]
    group = rng.normal(size=(8, 8)) @ basis * 0.3 + 0.1 * rng.normal(size=(8, d)) + 5 * np.eye(d)[0]
    group[:, -1] += 2.5  # a direction the crowd never takes
    v = np.concatenate([crowd, group])
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    truth = np.r_[np.zeros(600, bool), np.ones(8, bool)]
    graph = exact_knn(v, 5)
    alone = outlier_scores(graph, 5)
    both = outlier_scores(graph, 5, vectors=v)
    assert roc_auc_score(truth, alone) < 0.9 and not (alone[600:] >= 0.5).any()
    assert roc_auc_score(truth, both) == 1.0 and (both[600:] >= 0.5).all()
    assert (both[:600] >= 0.5).mean() <= 0.02


def test_label_retrieval_metrics_on_a_hand_made_graph() -> None:
    labels = np.array([0, 0, 0, 1, 1, -1])
    graph = KnnGraph(indices=np.array([[1, 3], [3, 0], [1, 0], [0, 4], [0, 2], [0, 1]]),
                     sims=np.ones((6, 2), np.float32))
    r = label_retrieval(graph, labels, 2)
    np.testing.assert_allclose(r.precision[:5], [0.5, 0.5, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(r.recall[:5], [1, 1, 1, 1, 0])
    # row 1: its hit at rank 2 (P@2 0.5) over min(k, 2 others); row 3: at rank 2 over its 1 other
    np.testing.assert_allclose(r.ap[:5], [0.5, 0.25, 1.0, 0.5, 0.0])
    assert np.isnan(r.precision[5])  # unlabeled: no query


def test_evaluate_measures_separable_and_mixed_classes(tmp_path: Path, dataset_name: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    a = np.array([1.0] + [0.0] * 7) + 0.05 * rng.normal(size=(10, 8))  # class a: its own tight cluster
    mixed = np.array([0.0, 1.0] + [0.0] * 6) + 0.05 * rng.normal(size=(20, 8))  # b and c: one cluster
    _imported(tmp_path, dataset_name, np.concatenate([a, mixed]), ["a"] * 10 + ["b", "c"] * 10)
    result = lookalike.evaluate(dataset_name, k=5)
    assert result["per_class"]["a"]["precision_at_k"] == 1.0 and result["per_class"]["a"]["map_at_k"] == 1.0
    assert result["per_class"]["b"]["precision_at_k"] < 0.8
    assert result["index_recall_at_k"] == 1.0  # the embedded store searches exactly at this size
    capsys.readouterr()
    assert main(["evaluate", dataset_name, "-k", "5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) >= {"k", "overall", "per_class", "index_recall_at_k"} and printed["k"] == 5
    assert set(printed["overall"]) >= {"precision_at_k", "recall_at_k", "map_at_k"}


def test_zero_shot_tags_fill_a_classifications_field_and_refuse_runs_without_text(
        embedded: tuple[str, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    name = embedded[0]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("# colours\nred\nblue\ngreen\n")
    capsys.readouterr()
    assert main(["tag", name, "--vocab", str(vocab), "--top", "2", "--json"]) == 0
    tagged = json.loads(capsys.readouterr().out)
    ds = fo.load_dataset(name)
    ds.reload()
    first = ds[tagged[0]["id"]]
    assert len(first["zero_shot"].classifications) == 2
    probs = [c.confidence for c in first["zero_shot"].classifications]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert {c.label for c in first["zero_shot"].classifications} <= {"red", "blue", "green"}
    with pytest.raises(ConfigError):
        lookalike.tag(name, ["only-one"])
    ids, vectors = lookalike.embeddings(name)
    import_vectors(name, vectors, ids, model_name="mine")
    with pytest.raises(ModelError):  # imported vectors: no model, no text tower
        lookalike.tag(name, ["red", "blue"], model="mine")


def test_embedding_again_keeps_model_runs_and_the_cli_lists_finder_flags(embedded: tuple[str, Path, Path]) -> None:
    name = embedded[0]
    embed(name, MODEL)
    help_text = _verbs()["duplicates"].format_help()
    assert "--no-keypoints" in help_text and "--threshold" in help_text

