"""End to end on a real FiftyOne database and a real embedded Qdrant store, with planted answers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import MODEL, heavy_crop
from lookalike import embed, load, similar
from lookalike.api import ERROR_FIELD, SIMILAR_VIEW
from lookalike.config import load_config
from lookalike.exceptions import ConfigError, NotEmbeddedError, TextNotSupportedError
from lookalike.runs import HASH_FIELD, EmbeddingRun


def _id_of(name: str, path: Path) -> str:
    from fiftyone import ViewField as F

    from lookalike.datasets import get_dataset

    return get_dataset(name).match(F("filepath") == str(path)).first().id


def test_embed_records_failures_and_reruns_do_no_model_work(tree: Path, dataset_name: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from lookalike.datasets import get_dataset

    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))  # an empty embedding cache

    load(tree, name=dataset_name)
    first = embed(dataset_name, MODEL)
    assert (first.samples, first.embedded, first.computed, first.upserted) == (17, 16, 16, 16)
    assert list(first.failed) == [str(tree / "train" / "red" / "corrupt.png")]
    ds = get_dataset(dataset_name)
    bad = ds.match({ERROR_FIELD: {"$ne": None}})
    assert bad.values("filepath") == list(first.failed)
    assert all(h and len(h) == 64 for h in ds.exists(ERROR_FIELD, False).values(HASH_FIELD))

    again = embed(dataset_name, MODEL)
    assert (again.computed, again.cached, again.upserted, again.deleted) == (0, 16, 0, 0)


def test_added_tagged_and_deleted_samples_sync_the_index(embedded: tuple[str, Path, Path], tree: Path) -> None:
    from conftest import write_blobs
    from lookalike.datasets import get_dataset

    name, original, _ = embedded
    write_blobs(tree / "train" / "blue", "blue", 2, seed=42)
    load(tree, name=name)
    ds = get_dataset(name)
    ds.select(ds.values("id")[:3]).tag_samples("rare")
    victim = ds.match({"ground_truth.label": "blue"}).first()
    ds.delete_samples([victim.id])
    summary = embed(name, MODEL)
    assert summary.computed == 2  # only the new images reach the model
    assert summary.deleted == 1
    index = EmbeddingRun.get(ds).open_index(load_config())
    assert index.count() == 18 + 2 - 1 - 1  # 18 (with the planted copy) + 2 new - 1 corrupt - 1 deleted
    rare = similar(name, sample=_id_of(name, original), tag="rare", k=10)
    assert {m.id for m in rare} <= set(ds.select(ds.values("id")[:3]).values("id"))
    assert all("rare" in m.tags for m in rare) and rare


def test_similar_by_sample_finds_the_planted_copy(embedded: tuple[str, Path, Path]) -> None:
    from lookalike.datasets import get_dataset

    name, original, copy = embedded
    matches = similar(name, sample=_id_of(name, original), k=5)
    assert matches[0].filepath == str(copy)
    assert matches[0].score > 0.95
    assert str(original) not in [m.filepath for m in matches]  # the query is left out
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    view = get_dataset(name).load_saved_view(SIMILAR_VIEW)
    assert view.values("id") == [m.id for m in matches]


def test_similar_by_image_and_by_examples(embedded: tuple[str, Path, Path]) -> None:
    name, original, copy = embedded
    by_image = similar(name, image=str(original), k=3)
    assert by_image[0].filepath == str(original) and by_image[0].score == pytest.approx(1.0, abs=1e-4)
    assert by_image[1].filepath == str(copy)
    unlike = _id_of(name, next((original.parents[1] / "blue").glob("*.png")))
    liked = similar(name, like=[_id_of(name, original)], unlike=[unlike], k=3)
    assert liked[0].filepath == str(copy)
    assert unlike not in [m.id for m in liked]
    by_file = similar(name, like=[str(original)], k=2)
    assert by_file[0].filepath in (str(original), str(copy))


def test_filters_run_inside_qdrant(embedded: tuple[str, Path, Path]) -> None:
    name, original, copy = embedded
    query = _id_of(name, original)
    blue = similar(name, sample=query, label="blue", k=20)
    assert blue and {m.label for m in blue} == {"blue"}
    train = similar(name, sample=query, split="train", k=20)
    assert {m.split for m in train} == {"train"} and str(copy) not in [m.filepath for m in train]
    assert len(similar(name, sample=query, split="test", label="red", k=20)) == 5  # 4 + the copy
    high = similar(name, sample=query, min_score=0.95, k=20)
    assert high and all(m.score >= 0.95 for m in high)


def test_text_queries_need_a_text_tower(embedded: tuple[str, Path, Path]) -> None:
    name, _, _ = embedded
    assert len(similar(name, text="a red square", k=4)) == 4
    embed(name, "efficientnet-lite0", image_size=64)
    with pytest.raises(TextNotSupportedError, match="no text tower"):
        similar(name, text="a red square")
    assert len(similar(name, text="a red square", model=MODEL, k=2)) == 2


def test_clear_errors(embedded: tuple[str, Path, Path], tree: Path) -> None:
    name, _, _ = embedded
    with pytest.raises(ConfigError, match="exactly one"):
        similar(name, text="x", sample="y")
    with pytest.raises(ConfigError, match="neither an image file nor a sample id"):
        similar(name, sample="nope")
    with pytest.raises(NotEmbeddedError, match="clip:ViT-B-16"):
        similar(name, text="x", model="clip:ViT-B-16")
    load(tree / "test", name=name + "-other")
    try:
        with pytest.raises(NotEmbeddedError, match="lookalike embed"):
            similar(name + "-other", text="x")
    finally:
        import fiftyone as fo

        fo.delete_dataset(name + "-other")


def test_index_matches_an_exact_search_over_the_same_vectors(embedded: tuple[str, Path, Path]) -> None:
    from lookalike.datasets import get_dataset
    from lookalike.index import ExactIndex

    name, _, _ = embedded
    index = EmbeddingRun.get(get_dataset(name)).open_index(load_config())
    payloads = index.payloads()
    ids = list(payloads)
    exact = ExactIndex(index.dim)
    exact.upsert(ids, index.vectors(ids), [payloads[i] for i in ids])
    q = index.vectors(ids[:4])
    assert [[h.id for h in r] for r in index.query(q, 6)] == [[h.id for h in r] for r in exact.query(q, 6)]
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-5)


def test_mislabels_finds_the_planted_one_and_reruns_replace_results(tmp_path: Path, dataset_name: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from conftest import write_blobs
    from lookalike import knn_graph, mislabels
    from lookalike.cli import main
    from lookalike.datasets import get_dataset

    for colour, seed in (("red", 1), ("green", 2), ("blue", 3)):
        write_blobs(tmp_path / "colours" / colour, colour, 12, seed=seed)
    load(tmp_path / "colours", name=dataset_name)
    embed(dataset_name, "efficientnet-lite0", image_size=64)
    ds = get_dataset(dataset_name)
    planted = ds.match({"ground_truth.label": "red"}).first()
    planted.ground_truth.label = "blue"
    planted.save()

    suspects = mislabels(dataset_name, k=10)
    assert suspects[0].id == planted.id
    assert (suspects[0].label, suspects[0].suggested_label, suspects[0].flagged) == ("blue", "red", True)
    assert [s.score for s in suspects] == sorted((s.score for s in suspects), reverse=True)
    ds.reload()
    assert ds.match_tags("suspect-label").values("id")[0] == planted.id
    assert ds.load_saved_view("lookalike-suspect-labels").first().id == planted.id
    assert ds[planted.id]["suggested_label"] == "red" and ds[planted.id]["mislabel_score"] > 0.8

    planted.ground_truth.label = "red"  # fixed: a rerun clears the tag and flag
    planted.save()
    capsys.readouterr()
    assert main(["mislabels", dataset_name, "-k", "10", "--json"]) == 0
    flagged = json.loads(capsys.readouterr().out)
    assert planted.id not in [s["id"] for s in flagged]
    assert planted.id not in get_dataset(dataset_name).match_tags("suspect-label").values("id")
    ids, graph = knn_graph(dataset_name, 10)
    assert len(ids) == 36 and graph.k == 10
    def stored_files() -> list[str]:
        return sorted(p.name for p in (Path(os.environ["LOOKALIKE_HOME"]) / "graphs").glob(f"*{dataset_name}*"))

    stored = stored_files()  # one version of the rows: its graph and its vectors
    assert [n.split(".", 1)[1] for n in stored] == ["npz", "vectors.npy"]
    assert len({n.split(".", 1)[0] for n in stored}) == 1
    # A changed image is a new graph: its sample's neighbours come from its new vector.
    path = Path(ds[planted.id].filepath)
    Image.open(tmp_path / "colours" / "green" / "green-2-0.png").save(path)
    embed(dataset_name, "efficientnet-lite0", image_size=64)
    ids, graph = knn_graph(dataset_name, 10)
    assert len(stored_files()) == 2 and not set(stored_files()) & set(stored)
    assert graph.sims[ids.index(planted.id), 0] == pytest.approx(1.0, abs=1e-4)  # now a copy of green-2-0


def test_duplicates_find_planted_copies_and_leaks(embedded: tuple[str, Path, Path], tree: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lookalike.api import duplicates
    from lookalike.cli import main
    from lookalike.datasets import get_dataset

    name, original, near_copy = embedded
    # Same pixels, other bytes: an exact duplicate inside train.
    blue = tree / "train" / "blue" / "blue-21-0.png"
    reencoded = tree / "train" / "blue" / "blue-21-0-again.png"
    Image.open(blue).save(reencoded, compress_level=0)
    load(tree, name=name)
    embed(name, MODEL)

    groups = duplicates(name)
    by_files = {frozenset(Path(m.filepath).name for m in g.members): g for g in groups}
    assert set(by_files) == {frozenset({original.name, near_copy.name}), frozenset({blue.name, reencoded.name})}
    near = by_files[frozenset({original.name, near_copy.name})]
    exact = by_files[frozenset({blue.name, reencoded.name})]
    assert near.kind == "near" and near.leak and near.splits == ["test", "train"]
    assert exact.kind == "exact" and not exact.leak
    assert sum(m.keep for m in near.members) == 1

    ds = get_dataset(name)
    assert sorted(Path(p).name for p in ds.match_tags("leak").values("filepath")) == sorted(
        [original.name, near_copy.name])
    assert len(ds.load_saved_view("lookalike-duplicates")) == 4
    kept = [m.id for g in groups for m in g.members if m.keep]
    assert sorted(ds.match({"duplicate_keep": True}).values("id")) == sorted(kept)

    # The train copy is kept under --keep train; the JSON lists groups and leaks.
    capsys.readouterr()
    assert main(["duplicates", name, "--keep", "train", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["groups"]) == 2 and len(out["leaks"]) == 1
    kept_leak = [m for m in out["leaks"][0]["members"] if m["keep"]]
    assert [(m["split"], Path(m["filepath"]).name) for m in kept_leak] == [("train", original.name)]

    # Removing the near copy and rerunning clears its tags: results are replaced, never stacked.
    ds.delete_samples(ds.match({"filepath": str(near_copy)}))
    embed(name, MODEL)
    assert [len(g.members) for g in duplicates(name)] == [2]
    assert len(get_dataset(name).match_tags("leak")) == 0


def test_map_is_seeded_finds_the_planted_clusters_and_lands_in_the_app(tmp_path: Path, dataset_name: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from conftest import write_blobs
    from lookalike.api import compute_map
    from lookalike.cli import main
    from lookalike.datasets import get_dataset

    for colour, seed in (("red", 1), ("green", 2), ("blue", 3)):
        write_blobs(tmp_path / "colours" / colour, colour, 15, seed=seed)
    # One outlier: a grey image unlike every colour class.
    Image.fromarray(np.full((48, 48, 3), 128, np.uint8)).save(tmp_path / "colours" / "red" / "grey.png")
    load(tmp_path / "colours", name=dataset_name)
    embed(dataset_name, "efficientnet-lite0", image_size=64)

    first = compute_map(dataset_name, plot_path=tmp_path / "map.png", min_cluster_size=5)
    ds = get_dataset(dataset_name)
    points = ds.load_brain_results(first.brain_key).points
    assert points.shape == (46, 2) and (tmp_path / "map.png").stat().st_size > 10_000
    grey = ds.match({"filepath": str(tmp_path / "colours" / "red" / "grey.png")}).first()
    assert first.most_unique[0] == (grey.id, 1.0) and grey["uniqueness"] == 1.0
    # Each colour class is one cluster of its own.
    blobs = ds.match({"filepath": {"$not": {"$regex": "grey"}}})
    by_class: dict[str, set[int]] = {}
    for label, cluster in zip(blobs.values("ground_truth.label"), blobs.values("cluster"), strict=True):
        by_class.setdefault(label, set()).add(cluster)
    assert all(len(c) == 1 and -1 not in c for c in by_class.values())
    assert len(set().union(*by_class.values())) == 3

    capsys.readouterr()
    assert main(["map", dataset_name, "--min-cluster-size", "5", "--json", "--out", str(tmp_path / "again.png"),
                 "--colour-by", "uniqueness"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert np.array_equal(get_dataset(dataset_name).load_brain_results(first.brain_key).points, points)  # seeded
    assert again["clusters"] == {str(c): n for c, n in first.clusters.items()}
    assert get_dataset(dataset_name).list_brain_runs(type="visualization") == [first.brain_key]  # replaced, not stacked


def test_a_map_after_a_few_added_samples_places_only_them(tmp_path: Path, dataset_name: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import lookalike.maps
    from conftest import write_blobs
    from lookalike.api import compute_map
    from lookalike.datasets import get_dataset

    for colour, seed in (("red", 1), ("green", 2), ("blue", 3)):
        write_blobs(tmp_path / "colours" / colour, colour, 15, seed=seed)
    load(tmp_path / "colours", name=dataset_name)
    embed(dataset_name, "efficientnet-lite0", image_size=64)
    first = compute_map(dataset_name, plot_path=tmp_path / "map.png", min_cluster_size=5)
    ds = get_dataset(dataset_name)
    before = dict(zip(ds.values("id"), ds.load_brain_results(first.brain_key).points.tolist(), strict=True))
    clusters_before = dict(zip(ds.values("id"), ds.values("cluster"), strict=True))
    write_blobs(tmp_path / "colours" / "red", "red", 1, seed=7)  # 2 new of 47: placed, not fitted
    write_blobs(tmp_path / "colours" / "blue", "blue", 1, seed=8)
    load(tmp_path / "colours", name=dataset_name)
    embed(dataset_name, "efficientnet-lite0", image_size=64)

    def no_refit(*args: object) -> None:
        raise AssertionError("the map should have been updated, not fitted anew")

    monkeypatch.setattr(lookalike.maps, "_umap", no_refit)
    compute_map(dataset_name, plot_path=tmp_path / "map.png", min_cluster_size=5)
    ds = get_dataset(dataset_name)
    after = dict(zip(ds.values("id"), ds.load_brain_results(first.brain_key).points.tolist(), strict=True))
    assert len(after) == 47 and all(after[sid] == point for sid, point in before.items())  # kept as they were
    cluster_of = dict(zip(ds.values("id"), ds.values("cluster"), strict=True))
    assert all(cluster_of[sid] == c for sid, c in clusters_before.items())
    label_of = dict(zip(ds.values("id"), ds.values("ground_truth.label"), strict=True))
    for sid in set(after) - set(before):  # each new one joins its own colour's cluster
        own = {clusters_before[o] for o in before if label_of[o] == label_of[sid]}
        assert own == {cluster_of[sid]}


def test_added_samples_update_the_stored_graph(tmp_path: Path, dataset_name: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import lookalike.context
    from conftest import write_blobs
    from lookalike import embeddings, knn_graph
    from lookalike.graph import exact_knn

    write_blobs(tmp_path / "set" / "red", "red", 60, seed=1)  # more than GRAPH_K: a full graph
    load(tmp_path / "set", name=dataset_name)
    embed(dataset_name, MODEL)
    knn_graph(dataset_name, 5)
    write_blobs(tmp_path / "set" / "blue", "blue", 6, seed=2)  # new samples arrive
    load(tmp_path / "set", name=dataset_name)
    embed(dataset_name, MODEL)

    def no_full_rebuild(*args: object) -> None:
        raise AssertionError("the stored graph should have been updated, not rebuilt")

    monkeypatch.setattr(lookalike.context, "knn", no_full_rebuild)
    ids, updated = knn_graph(dataset_name, 5)
    ids2, vectors = embeddings(dataset_name)
    assert ids == ids2 and len(ids) == 66
    np.testing.assert_allclose(updated.sims, exact_knn(vectors, 5).sims, atol=1e-5)
    folder = Path(os.environ["LOOKALIKE_HOME"]) / "graphs"
    assert len(list(folder.glob(f"*{dataset_name}*.npz"))) == len(list(folder.glob(f"*{dataset_name}*.npy"))) == 1
    rows = lookalike.context.Context.of(dataset_name).rows  # the copy analyses read = the store
    np.testing.assert_array_equal(vectors, rows.index.vectors(ids))


def test_a_duplicates_update_with_more_new_rows_than_the_exact_search_serves_starts_afresh(
        embedded: tuple[str, Path, Path], tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lookalike.api
    import lookalike.finders.duplicates
    from conftest import write_blobs

    name = embedded[0]
    seen: list[object] = []
    find = lookalike.finders.duplicates.find_duplicates

    def recorded(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["earlier"])
        return find(*args, **kwargs)

    monkeypatch.setattr(lookalike.finders.duplicates, "find_duplicates", recorded)
    lookalike.api.duplicates(name)
    for seed in (5, 6):  # two rounds of two new images
        write_blobs(tree / "train" / f"green{seed}", "green", 2, seed=seed)
        load(tree, name=name)
        embed(name, MODEL)
        exact_max = 1 if seed == 5 else 100_000
        lookalike.api.duplicates(name, config=load_config(overrides={"index": {"exact_graph_max": exact_max}}))
    assert seen[0] is None and seen[1] is None  # the first run; 2 new rows > exact_graph_max 1
    assert seen[2] is not None  # 2 new rows of 22, an exact search serves them: an update


def test_duplicates_open_the_files_to_match_keypoints(tmp_path: Path, dataset_name: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A heavy crop of a JPEG photo, in another split: found only by matching keypoints in the files."""
    import json

    from skimage import data

    from lookalike.api import duplicates
    from lookalike.cli import main

    root = tmp_path / "photos"
    for split, label, name, image in (("train", "people", "astronaut", data.astronaut()),
                                      ("train", "drinks", "coffee", data.coffee()),
                                      ("train", "space", "rocket", data.rocket()),
                                      ("test", "people", "crop", heavy_crop(Image.fromarray(data.astronaut())))):
        (root / split / label).mkdir(parents=True, exist_ok=True)
        (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(root / split / label / f"{name}.jpg")
    load(root, name=dataset_name)
    embed(dataset_name, MODEL)

    groups = duplicates(dataset_name)
    assert [sorted(Path(m.filepath).stem for m in g.members) for g in groups] == [["astronaut", "crop"]]
    assert groups[0].leak and groups[0].splits == ["test", "train"]
    assert duplicates(dataset_name, keypoints=False) == []
    capsys.readouterr()
    assert main(["duplicates", dataset_name, "--no-keypoints", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"] == []


def test_an_approximate_graph_logs_its_recall(tmp_path: Path, dataset_name: str,
                                              lookalike_log: pytest.LogCaptureFixture) -> None:
    import re

    from conftest import write_blobs
    from lookalike import knn_graph

    write_blobs(tmp_path / "set" / "red", "red", 60, seed=1)
    load(tmp_path / "set", name=dataset_name)
    embed(dataset_name, MODEL)
    knn_graph(dataset_name, 5, config=load_config(overrides={"index": {"exact_graph_max": 10}}))
    found = re.search(r"approximate kNN graph of 60 samples: recall@(\d+) ([\d.]+) against exact search on 60 rows",
                      lookalike_log.text)
    assert found and int(found.group(1)) == 50 and float(found.group(2)) > 0.9


def test_precision_auto_is_decided_once_per_run(tree: Path, dataset_name: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The timed probe said bf16 is fast when the dataset was first embedded; later, on a busier machine, it says
    not: the run keeps its bf16 vectors and collection (nothing embedded again), and queries use bf16 too."""
    import fiftyone as fo

    import lookalike.hardware as hardware

    config = load_config(overrides={"embed": {"precision": "auto"}})
    load(tree, name=dataset_name)
    monkeypatch.setattr(hardware, "fast_bf16", lambda device="cpu": True)
    first = embed(dataset_name, MODEL, config=config)
    assert first.collection.endswith("-bf16") or "bf16" in first.collection
    monkeypatch.setattr(hardware, "fast_bf16", lambda device="cpu": False)
    again = embed(dataset_name, MODEL, config=config)
    assert again.collection == first.collection and again.computed == 0
    run = EmbeddingRun.get(fo.load_dataset(dataset_name))
    assert run.precision == "bf16" and run.embedder(config).precision == "bf16"
    assert len(fo.load_dataset(dataset_name).info["lookalike"]["runs"]) == 1
