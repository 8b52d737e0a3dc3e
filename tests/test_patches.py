"""Boxes as rows: a patch run over a COCO import's ``ground_truth_detections`` (FiftyOne's real importer, a real
embedded Qdrant store), with a rare object, bad boxes and an unreadable image planted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MODEL, write_coco_scenes
from lookalike import embed, import_vectors, load, similar
from lookalike.api import ERROR_FIELD, BoxMatch, Match, similar_view
from lookalike.cli import main
from lookalike.config import load_config
from lookalike.exceptions import ConfigError
from lookalike.runs import EmbeddingRun

FIELD = "ground_truth_detections"
CUP_SCENES = (0, 4, 8, 12)  # the rare object: one cup in each


def _scenes() -> list[list[tuple[str, tuple[int, int, int, int]]]]:
    rng = np.random.default_rng(7)
    scenes = []
    for n in range(16):
        bx, by = (int(v) for v in rng.integers(0, 30, 2))
        objects = [("ball", (bx, by, 24, 24))]
        if n in CUP_SCENES:
            objects.append(("cup", (int(rng.integers(50, 70)), int(rng.integers(50, 70)), 20, 20)))
        scenes.append(objects)
    return [*scenes, []]  # and a scene with nothing labelled in it


@pytest.fixture
def scenes(tmp_path: Path, dataset_name: str) -> tuple[str, Path]:
    """The COCO export loaded (its last scene without boxes); scene 1 given four boxes that cannot be embedded,
    scene 2's file then broken."""
    import fiftyone as fo

    root = write_coco_scenes(tmp_path / "coco", _scenes())
    ds = load(root, name=dataset_name, format="coco")
    sample = ds.match({"filepath": str(root / "data" / "scene-001.png")}).first()
    for label, box in (("nan", [math.nan, 0.1, 0.2, 0.2]), ("zero", [0.1, 0.1, 0.0, 0.2]),
                       ("outside", [1.2, 0.1, 0.1, 0.1]), ("tiny", [0.5, 0.5, 0.03, 0.03])):
        sample[FIELD].detections.append(fo.Detection(label=label, bounding_box=box))
    sample.save()
    (root / "data" / "scene-002.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    return dataset_name, root


def _labels(name: str) -> dict[str, str]:
    """Label id -> label of every box."""
    import fiftyone as fo

    ids, labels = fo.load_dataset(name).values([f"{FIELD}.detections.id", f"{FIELD}.detections.label"], unwind=True)
    return dict(zip(ids, labels, strict=True))


def test_a_patch_run_embeds_each_box_once_records_the_bad_ones_and_keeps_the_image_run(
        scenes: tuple[str, Path]) -> None:
    import fiftyone as fo

    name, root = scenes
    images = embed(name, MODEL)
    boxes = embed(name, MODEL, patches=FIELD)
    assert (boxes.samples, boxes.patches) == (16 + 4 + 4, FIELD)  # 16 balls, 4 cups, 4 bad boxes
    assert boxes.embedded == boxes.samples - 4 - 1  # the bad four and the unreadable scene's ball
    assert boxes.computed == boxes.embedded
    ds = fo.load_dataset(name)
    errors = dict(zip(*ds.values([f"{FIELD}.detections.label", f"{FIELD}.detections.{ERROR_FIELD}"], unwind=True),
                      strict=False))
    reasons = {label: errors[label] for label in ("nan", "zero", "outside", "tiny")}
    assert "not finite" in reasons["nan"] and "zero or negative" in reasons["zero"]
    assert "outside the image" in reasons["outside"] and "too small" in reasons["tiny"]
    broken = ds.match({"filepath": str(root / "data" / "scene-002.png")}).first()
    assert all("cannot decode" in d[ERROR_FIELD] for d in broken[FIELD].detections)
    assert len(boxes.failed) == 5
    # The image run is still what every command without patches uses.
    assert EmbeddingRun.get(ds).key == images.model_key
    assert EmbeddingRun.get(ds, patches=FIELD).key == f"{images.model_key}@{FIELD}"
    first = ds.first().id
    assert all(isinstance(m, Match) and m.id in set(ds.values("id")) for m in similar(name, sample=first, k=3))

    again = embed(name, MODEL, patches=FIELD)
    assert (again.computed, again.cached, again.upserted, again.relabelled) == (0, boxes.embedded, 0, 0)
    sample = ds.match({"filepath": str(root / "data" / "scene-005.png")}).first()
    sample[FIELD].detections[0].bounding_box = [0.05, 0.05, 0.3, 0.3]  # a moved box is a new crop
    sample[FIELD].detections[0].tags = ["checked"]
    sample.save()
    moved = embed(name, MODEL, patches=FIELD)
    assert (moved.computed, moved.upserted) == (1, 1)


def test_an_interrupted_patch_run_resumes_with_the_boxes_it_lacks(scenes: tuple[str, Path],
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    name, _ = scenes
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))  # an empty cache
    config = load_config(overrides={"embed": {"batch_size": 3, "num_workers": 0}})  # 3 images a batch

    def interrupt(done: int, total: int) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed(name, MODEL, patches=FIELD, config=config, progress=interrupt)
    resumed = embed(name, MODEL, patches=FIELD, config=config)
    assert 0 < resumed.cached < resumed.embedded == 19
    assert resumed.computed == resumed.embedded - resumed.cached


def test_patch_search_finds_the_rare_object_from_one_box(scenes: tuple[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    name, root = scenes
    embed(name, MODEL, patches=FIELD)
    labels = _labels(name)
    cups = [i for i, label in labels.items() if label == "cup"]
    found = similar(name, sample=cups[0], patches=FIELD, k=3)
    assert all(isinstance(m, BoxMatch) for m in found)
    assert sorted(m.id for m in found) == sorted(cups[1:])  # every other cup, and nothing else, first
    assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)

    view = fo.load_dataset(name).load_saved_view(similar_view(FIELD))
    assert view.values("id") == [m.id for m in found]  # a patches view: a patch's id is its label's

    balls = similar(name, sample=cups[0], patches=FIELD, k=5, label="ball")
    assert {labels[m.id] for m in balls} == {"ball"}
    liked = similar(name, like=cups[:2], unlike=[balls[0].id], patches=FIELD, k=2)
    assert sorted(m.id for m in liked) == sorted(cups[2:])

    query = tmp_path / "cup.png"  # a crop of a cup from its scene, as a user would cut it out
    Image.open(root / "data" / "scene-004.png").crop((48, 48, 92, 92)).save(query)
    assert labels[similar(name, image=str(query), patches=FIELD, k=1)[0].id] == "cup"

    assert main(["similar", name, "--patches", FIELD, "--sample", cups[0], "-k", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [set(r) for r in rows] == [{"id", "sample_id", "filepath", "label", "bbox", "split", "tags",
                                       "label_tags", "score"}] * 3
    assert {r["label"] for r in rows} == {"cup"} and all(len(r["bbox"]) == 4 for r in rows)


def test_a_field_that_is_not_detections_is_named_in_one_line(scenes: tuple[str, Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    name, _ = scenes
    ds = fo.load_dataset(name)
    sample = ds.first()
    sample["whole"] = fo.Classification(label="x")
    sample.save()
    with pytest.raises(ConfigError, match=r"'whole' is a Classification field.*Detections"):
        embed(name, MODEL, patches="whole")
    assert main(["embed", name, "--model", MODEL, "--patches", "nothing"]) == 2
    err = capsys.readouterr().err
    assert "no field of that name" in err and FIELD in err and len(err.strip().splitlines()) == 1
    assert main(["similar", name, "--patches", FIELD, "--sample", ds.first().id]) == 2
    assert "no patch embeddings" in capsys.readouterr().err


def test_box_vectors_export_with_their_label_ids(scenes: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = scenes
    embed(name, MODEL, patches=FIELD)
    out = tmp_path / "boxes.npy"
    assert main(["embeddings", name, "--patches", FIELD, "--out", str(out)]) == 0
    vectors, ids = np.load(out), json.loads(out.with_suffix(".ids.json").read_text())
    assert vectors.shape[0] == len(ids) == 19
    assert set(ids) <= set(_labels(name))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


@pytest.fixture
def crowded(tmp_path: Path, dataset_name: str) -> tuple[str, dict[str, str]]:
    """30 scenes of one object each (10 balls, 10 cups, 10 boxes), two of them given a wrong label, and two
    objects annotated twice: a ball with a second box 1 px off (same label), a cup whose second box says
    ball. Returns the name and the planted label ids by role."""
    import fiftyone as fo

    kinds = ("ball", "cup", "box")
    scenes = [[(kinds[n % 3], (10 + n, 12 + n % 7, 30, 30))] for n in range(30)]
    scenes[0].append(("ball", (70, 70, 20, 20)))  # a second, distinct ball: not a double
    root = write_coco_scenes(tmp_path / "coco", scenes)
    ds = load(root, name=dataset_name, format="coco")
    by_file = {Path(s.filepath).name: s for s in ds}
    planted = {}
    for n, wrong, role in ((6, "box", "ball->box"), (5, "ball", "box->ball")):  # 6 is a ball, 5 a box
        sample = by_file[f"scene-{n:03d}.png"]
        sample[FIELD].detections[0].label = wrong
        planted[role] = sample[FIELD].detections[0].id
        sample.save()
    for n, label, role in ((3, "ball", "double"), (7, "ball", "conflict")):  # 3 is a ball, 7 a cup
        sample = by_file[f"scene-{n:03d}.png"]
        x, y, w, h = sample[FIELD].detections[0].bounding_box
        sample[FIELD].detections.append(fo.Detection(label=label, bounding_box=[x + 0.01, y, w, h]))
        planted[role] = sample[FIELD].detections[0].id
        planted[role + "-copy"] = sample[FIELD].detections[1].id
        sample.save()
    embed(dataset_name, MODEL, patches=FIELD)
    return dataset_name, planted


def test_box_mislabels_are_found_written_on_the_labels_and_kept_apart_from_the_image_run(
        crowded: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    from lookalike import mislabels, outliers

    name, planted = crowded
    suspects = mislabels(name, patches=FIELD)
    flagged = {s.id: s for s in suspects if s.flagged}
    assert {planted["ball->box"], planted["box->ball"]} <= set(flagged)
    assert flagged[planted["ball->box"]].suggested_label == "ball"
    assert flagged[planted["box->ball"]].suggested_label == "box"
    assert len(flagged) <= 4  # the two planted, and at most the two conflicting doubles
    ds = fo.load_dataset(name)
    scores = dict(zip(*ds.values([f"{FIELD}.detections.id", f"{FIELD}.detections.mislabel_score"], unwind=True),
                      strict=True))
    assert scores[planted["ball->box"]] >= 0.5 and len(scores) == 33
    tagged = ds.select_labels(tags="suspect-label", fields=FIELD).values(f"{FIELD}.detections.id", unwind=True)
    assert set(tagged) == set(flagged)
    view = ds.load_saved_view(f"lookalike-suspect-labels-{FIELD}")
    assert set(view.values("id")) == set(flagged)

    assert main(["mislabels", name, "--patches", FIELD, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in rows} == set(flagged)
    assert set(rows[0]) == {"id", "sample_id", "filepath", "label", "suggested_label", "score", "flagged", "split",
                            "tags"}

    # One run per (finder, rows): the image run and the box run of a finder live side by side.
    embed(name, MODEL)
    outliers(name)
    outliers(name, patches=FIELD)
    runs = ds.list_brain_runs()
    assert {"lookalike_run_outliers", f"lookalike_run_outliers__{FIELD}"} <= set(runs)
    assert ds.has_field("outlier_score") and ds.count(f"{FIELD}.detections.outlier_score") == 33
    ds.delete_brain_run(f"lookalike_run_mislabels__{FIELD}")  # its cleanup: its label attributes and tags go
    assert not ds.has_field(f"{FIELD}.detections.mislabel_score")
    assert ds.count_label_tags().get("suspect-label", 0) == 0
    assert ds.has_field("outlier_score")


def test_double_annotations_are_grouped_by_overlap(crowded: tuple[str, dict[str, str]],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    from lookalike import duplicates, find

    name, planted = crowded
    groups = duplicates(name, patches=FIELD)
    found = {frozenset(m.id for m in g.members): g for g in groups}
    double = frozenset((planted["double"], planted["double-copy"]))
    conflict = frozenset((planted["conflict"], planted["conflict-copy"]))
    assert set(found) == {double, conflict}  # the distinct second ball of scene 0 is not one
    assert found[double].kind == "same-label" and found[conflict].kind == "conflicting-labels"
    assert all(sum(m.keep for m in g.members) == 1 for g in groups)
    ds = fo.load_dataset(name)
    tagged = ds.select_labels(tags="duplicate", fields=FIELD).values(f"{FIELD}.detections.id", unwind=True)
    assert set(tagged) == double | conflict
    assert set(ds.load_saved_view(f"lookalike-duplicates-{FIELD}").values("id")) == double | conflict

    assert main(["duplicates", name, "--patches", FIELD, "--iou", "0.99", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"groups": [], "leaks": []}  # 1 px off: IoU < 0.99
    with pytest.raises(ConfigError, match="runs on whole images only"):
        find("tag", name, patches=FIELD, vocab=["ball"])


def test_the_brain_index_over_boxes_keeps_fiftyone_brains_contract(scenes: tuple[str, Path]) -> None:
    """fiftyone-brain's own patch-similarity checks (tests/intensive/test_similarity.py: sizes, ids, get / add /
    remove by label id, use_view, reload, sort_by_similarity on a patches view), on the planted scenes."""
    import fiftyone as fo
    from fiftyone import ViewField as F

    from lookalike.brain import brain_key

    name, _ = scenes
    summary = embed(name, MODEL, patches=FIELD)
    assert summary.brain_key == brain_key(MODEL, FIELD) == f"lookalike_random_tiny_clip__{FIELD}"
    ds = fo.load_dataset(name)
    info = ds.get_brain_info(summary.brain_key)
    assert info.config.patches_field == FIELD and info.config.supports_prompts
    index = ds.load_brain_results(summary.brain_key)
    embedded, vectors = lookalike_embeddings(name)
    assert index.total_index_size == index.index_size == len(embedded) == 19
    assert set(index.label_ids) == set(embedded) and index.sample_ids.shape == (19,)

    all_vectors, sample_ids, label_ids = index.get_embeddings()
    assert all_vectors.shape == (19, 64) and sample_ids.shape == label_ids.shape == (19,)
    some = list(label_ids[:5])
    got, got_samples, got_labels = index.get_embeddings(label_ids=some)
    assert list(got_labels) == some and np.allclose(got, vectors[[embedded.index(i) for i in some]])
    sample_of = dict(zip(*ds.values(["id", f"{FIELD}.detections.id"]), strict=True))
    assert all(lid in sample_of[sid] for sid, lid in zip(got_samples, got_labels, strict=True))

    labels = _labels(name)
    cups = [i for i in embedded if labels[i] == "cup"]
    patches = ds.to_patches(FIELD)
    by_brain = patches.sort_by_similarity(cups[0], k=4, brain_key=summary.brain_key)
    assert by_brain.values("id")[0] == cups[0]  # the query first, as FiftyOne's own backends do
    assert by_brain.values("id")[1:] == [m.id for m in similar(name, sample=cups[0], patches=FIELD, k=3,
                                                                save_view=False)]
    least = patches.sort_by_similarity(cups[0], k=3, reverse=True, brain_key=summary.brain_key,
                                       dist_field="distance")
    exact = vectors @ vectors[embedded.index(cups[0])]
    assert set(least.values("id")) == {embedded[i] for i in np.argsort(exact)[:3]}  # least similar first
    assert least.values("distance") == sorted(least.values("distance"), reverse=True)  # farthest first
    assert len(patches.sort_by_similarity("a red cup", k=5, brain_key=summary.brain_key)) == 5

    index.use_view(ds.filter_labels(FIELD, F("label") == "cup"))
    assert index.index_size == len(cups) and set(index.current_label_ids) == set(cups)
    index.clear_view()
    index.remove_from_index(label_ids=some[:2])
    assert index.total_index_size == 17
    index.add_to_index(got[:2], got_samples[:2], label_ids=some[:2])
    ds.clear_cache()
    reloaded = ds.load_brain_results(summary.brain_key)
    assert reloaded.total_index_size == 19
    assert np.allclose(reloaded.get_embeddings(label_ids=some[:2])[0], got[:2], atol=1e-6)


def test_fiftyone_brains_near_duplicates_run_on_the_box_index(scenes: tuple[str, Path]) -> None:
    """compute_near_duplicates(similarity_index=<the box index>): the closest two boxes are the duplicate, by
    label id, at their cosine distance, as the vectors say."""
    import fiftyone as fo
    import fiftyone.brain as fob

    name, _ = scenes
    key = embed(name, MODEL, patches=FIELD).brain_key
    embedded, vectors = lookalike_embeddings(name)
    dists = 1.0 - vectors @ vectors.T
    np.fill_diagonal(dists, np.inf)
    a, b = np.unravel_index(np.argmin(dists), dists.shape)
    rest = np.delete(np.delete(dists, [a, b], 0), [a, b], 1)
    threshold = (dists[a, b] + min(rest.min(), np.delete(dists[[a, b]], [a, b], 1).min())) / 2
    index = fob.compute_near_duplicates(fo.load_dataset(name), threshold=threshold, similarity_index=key)
    assert index.config.patches_field == FIELD
    assert len(index.duplicate_ids) == 1 and {*index.duplicate_ids, *index.neighbors_map} == {embedded[a], embedded[b]}
    assert next(iter(index.neighbors_map.values()))[0][1] == pytest.approx(dists[a, b], abs=1e-4)


def lookalike_embeddings(name: str) -> tuple[list[str], np.ndarray]:
    import lookalike

    ids, vectors = lookalike.embeddings(name, patches=FIELD)
    return list(ids), vectors


def test_a_box_suspect_is_accepted_dismissed_and_undone_on_the_box(crowded: tuple[str, dict[str, str]]) -> None:
    import fiftyone as fo

    from lookalike import mislabels, review

    name, planted = crowded
    mislabels(name, patches=FIELD)
    ds = fo.load_dataset(name)
    wrong = planted["ball->box"]

    def box() -> fo.Detection:
        sample = ds.select_labels(ids=[wrong], fields=FIELD).first()
        return next(d for d in sample[FIELD].detections if d.id == wrong)

    assert review.accept_label(ds, wrong, patches=FIELD) == "ball"
    assert (box().label, box()["label_before_review"], box()["review"]) == ("ball", "box", "accepted")
    assert review.REVIEWED_TAG in box().tags
    review.accept_label(ds, wrong, patches=FIELD)  # twice: the first old label is kept
    assert box()["label_before_review"] == "box"
    review.dismiss_label(ds, wrong, patches=FIELD)
    assert (box().label, box()["review"]) == ("box", "dismissed")
    review.undo(ds, wrong, patches=FIELD)
    after = box()
    assert (after.label, after.get_field("review") if after.has_field("review") else None, after.tags) == (
        "box", None, ["suspect-label"])  # the finder's tag stays: only the review is taken back
    with pytest.raises(ConfigError, match="no box"):
        review.accept_label(ds, ds.first().id, patches=FIELD)  # a sample id is no box


def test_a_map_and_retrieval_figures_of_the_boxes(crowded: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    import fiftyone as fo

    from lookalike import compute_map, evaluate
    from lookalike.finders.map import map_key

    name, _ = crowded
    found = compute_map(name, patches=FIELD, plot_path=tmp_path / "boxes.png", colour_by="label")
    assert found.samples == 33 and found.brain_key == map_key(FIELD) and (tmp_path / "boxes.png").is_file()
    ds = fo.load_dataset(name)
    info = ds.get_brain_info(map_key(FIELD))
    assert info.config.patches_field == FIELD  # the Embeddings panel on a patches view
    assert len(ds.load_brain_results(map_key(FIELD)).points) == 33
    assert ds.count(f"{FIELD}.detections.uniqueness") == 33 and ds.count(f"{FIELD}.detections.cluster") == 33
    figures = evaluate(name, patches=FIELD, k=5)
    assert set(figures["per_class"]) == {"ball", "cup", "box"}
    assert figures["overall"]["precision_at_k"] > 0.5  # the colours are what the boxes' labels say, mostly
    assert figures["index_recall_at_k"] == 1.0


def test_box_vectors_made_elsewhere_are_imported_as_a_patch_run(crowded: tuple[str, dict[str, str]],
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The exported box vectors imported back under another name (what a user with a detector's own box
    features does): the same search results, no image decoded, bad rows named."""
    name, planted = crowded
    out = tmp_path / "boxes.npy"
    assert main(["embeddings", name, "--patches", FIELD, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["embed", name, "--patches", FIELD, "--vectors", str(out), "--ids", str(out.with_suffix(".ids.json")),
                 "--model-name", "detector-features"]) == 0
    assert "33/33 boxes of 'ground_truth_detections' embedded" in capsys.readouterr().out
    query = planted["double"]
    imported = similar(name, sample=query, patches=FIELD, model="detector-features", k=5, save_view=False)
    computed = similar(name, sample=query, patches=FIELD, model=MODEL, k=5, save_view=False)
    assert [m.id for m in imported] == [m.id for m in computed]
    bad = np.load(out)
    bad[3] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    ids = json.loads(out.with_suffix(".ids.json").read_text())
    with pytest.raises(ConfigError, match=f"row 3 \\(box {ids[3]}\\) holds NaN"):
        import_vectors(name, tmp_path / "bad.npy", ids, patches=FIELD, model_name="broken")


def test_a_detectors_boxes_dispute_labels_and_find_objects_nobody_labelled(
        crowded: tuple[str, dict[str, str]]) -> None:
    """Predictions synthesised from the true boxes: each shifted a little and labelled with the truth (0.9),
    one object not detected, a confident box where nothing is labelled, and an unsure one."""
    import fiftyone as fo

    from lookalike import mislabels

    name, planted = crowded
    ds = fo.load_dataset(name)
    truth = {planted["ball->box"]: "ball", planted["box->ball"]: "box"}
    for n, sample in enumerate(ds):
        predictions = [fo.Detection(label=truth.get(d.id, d.label), confidence=0.9,
                                    bounding_box=[d.bounding_box[0] + 0.02, *d.bounding_box[1:]])
                       for d in sample[FIELD].detections[:1] if n != 9]  # scene 9's object goes undetected
        if n == 2:
            predictions += [fo.Detection(label="cup", confidence=0.8, bounding_box=[0.7, 0.7, 0.2, 0.2]),
                            fo.Detection(label="cup", confidence=0.2, bounding_box=[0.05, 0.7, 0.2, 0.2])]
        sample["predictions"] = fo.Detections(detections=predictions)
        sample.save()
    suspects = mislabels(name, patches=FIELD, prediction_field="predictions")
    flagged = {s.id: s for s in suspects if s.flagged}
    assert {planted["ball->box"], planted["box->ball"]} <= set(flagged)
    assert flagged[planted["ball->box"]].suggested_label == "ball"
    ds.reload()
    missing = ds.select_labels(tags="missing-label", fields="predictions").values("predictions.detections",
                                                                                 unwind=True)
    assert [(d.label, d.confidence) for d in missing] == [("cup", 0.8)]  # the unsure one is left alone
    view = ds.load_saved_view(f"lookalike-missing-labels-{FIELD}")
    assert view.values("id") == [missing[0].id]
    with pytest.raises(ConfigError, match="must be a Detections field"):
        mislabels(name, patches=FIELD, prediction_field="ground_truth_detections_missing")
    ds.delete_brain_run(f"lookalike_run_mislabels__{FIELD}")  # its cleanup takes the detector's tags too
    assert ds.count_label_tags().get("missing-label", 0) == 0


def test_box_quality_flags_boxes_that_are_no_crops_and_dark_crops(scenes: tuple[str, Path]) -> None:
    import fiftyone as fo

    from lookalike import quality

    name, root = scenes
    ds = fo.load_dataset(name)
    dark = ds.match({"filepath": str(root / "data" / "scene-010.png")}).first()
    x, y, w, h = dark[FIELD].detections[0].bounding_box
    image = Image.open(dark.filepath)
    image.paste((0, 0, 0), (round(x * 96), round(y * 96), round((x + w) * 96), round((y + h) * 96)))
    image.save(dark.filepath)  # the ball in scene 10, painted black
    found = {q.id: q for q in quality(name, patches=FIELD)}
    labels = _labels(name)
    by_label = {labels[i]: q.issues for i, q in found.items() if labels[i] in ("nan", "zero", "outside", "tiny")}
    assert by_label == {"nan": ["degenerate"], "zero": ["degenerate"], "outside": ["outside_image"],
                        "tiny": ["tiny"]}
    assert "dark" in found[dark[FIELD].detections[0].id].issues
    assert len(found) == 24 - 1  # every box but the one of the unreadable image
    ds.reload()
    tagged = ds.select_labels(tags="quality-issue", fields=FIELD).values(f"{FIELD}.detections.id", unwind=True)
    assert set(tagged) == {i for i, q in found.items() if q.issues}
    assert ds.count(f"{FIELD}.detections.quality_score") == 23
