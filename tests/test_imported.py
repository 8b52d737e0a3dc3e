"""Bring your own vectors: `lookalike embed NAME --vectors FILE.npy [--ids FILE.ids.json]` and `--from-field`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_blobs
from lookalike import duplicates, import_vectors, knn_graph, load, mislabels, similar
from lookalike.api import ERROR_FIELD
from lookalike.cli import main
from lookalike.config import load_config
from lookalike.exceptions import ConfigError, IndexMismatchError, ModelError
from lookalike.runs import EmbeddingRun


@pytest.fixture
def planted(tmp_path: Path, dataset_name: str) -> tuple[str, list[str], np.ndarray, Path]:
    """12 images with random 16-d vectors, one of which (row 7) is planted next to row 2; written as the pair
    of files `lookalike embeddings --out` writes, rows in a shuffled order."""
    import fiftyone as fo

    write_blobs(tmp_path / "set" / "red", "red", 6, seed=1)
    write_blobs(tmp_path / "set" / "blue", "blue", 6, seed=2)
    load(tmp_path / "set", name=dataset_name)
    ids = fo.load_dataset(dataset_name).values("id")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12, 16)).astype(np.float32) * 3  # not normalised: the import does it
    vectors[7] = vectors[2] * 0.5 + 0.01 * rng.normal(size=16).astype(np.float32)
    order = rng.permutation(12)
    path = tmp_path / "mine.npy"
    np.save(path, vectors[order])
    path.with_suffix(".ids.json").write_text(json.dumps([ids[i] for i in order]))
    return dataset_name, ids, vectors, path


def test_imported_vectors_serve_similar_and_every_analysis(planted: tuple[str, list[str], np.ndarray, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    name, ids, vectors, path = planted
    assert main(["embed", name, "--vectors", str(path), "--ids", str(path.with_suffix(".ids.json"))]) == 0
    assert "12/12 samples embedded" in capsys.readouterr().out
    import fiftyone as fo

    run = EmbeddingRun.get(fo.load_dataset(name))
    assert run.model == "vectors:mine" and run.imported and run.dim == 16
    assert [m.id for m in similar(name, sample=ids[2], k=1)] == [ids[7]]  # the planted neighbour
    graph_ids, graph = knn_graph(name, 3)
    row = {sid: r for r, sid in enumerate(graph_ids)}
    assert graph_ids[graph.indices[row[ids[7]], 0]] == ids[2]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert graph.sims[row[ids[7]], 0] == pytest.approx(float(unit[7] @ unit[2]), abs=1e-5)
    assert len(mislabels(name)) == 12
    duplicates(name)  # thumbnails were made from the files, no model involved
    assert fo.load_dataset(name).values("content_hash")[0] is not None
    with pytest.raises(ModelError, match="imported vectors and has no model"):
        similar(name, text="a red square")


def test_vectors_in_dataset_order_and_from_a_field(planted: tuple[str, list[str], np.ndarray, Path]) -> None:
    import fiftyone as fo

    name, ids, vectors, _ = planted
    summary = import_vectors(name, vectors, model_name="mine")  # no ids: rows in dataset order
    assert summary.embedded == 12 and summary.model == "mine"
    assert [m.id for m in similar(name, sample=ids[7], k=1)] == [ids[2]]
    dataset = fo.load_dataset(name)
    dataset.set_values("emb", [v if i != 4 else None for i, v in enumerate(vectors)])
    summary = import_vectors(name, from_field="emb")
    assert summary.model == "field:emb" and summary.embedded == 11  # the sample without a vector is left out
    assert [m.id for m in similar(name, sample=ids[2], k=1, model="field:emb")] == [ids[7]]


def test_an_unreadable_file_keeps_its_vector_and_leaves_the_pixel_stage(
        planted: tuple[str, list[str], np.ndarray, Path]) -> None:
    import fiftyone as fo

    name, ids, vectors, _ = planted
    broken = fo.load_dataset(name)[ids[5]].filepath
    Path(broken).write_bytes(b"not an image")
    summary = import_vectors(name, vectors)
    assert summary.embedded == 12 and list(summary.failed) == [broken]
    assert "cannot decode" in fo.load_dataset(name).values(ERROR_FIELD)[5]
    assert all(ids[5] not in [m.id for m in g.members] for g in duplicates(name))
    assert ids[5] in knn_graph(name, 3)[0]


@pytest.mark.parametrize(("change", "message"), [
    (lambda v, ids: (v[:-1], ids), "11 rows but 12 sample ids"),
    (lambda v, ids: (np.where(np.arange(12)[:, None] == 3, np.nan, v), ids), "row 3 .* NaN"),
    (lambda v, ids: (v, [*ids[:-1], "5f0000000000000000000000"]), "1 ids are not samples of the dataset"),
    (lambda v, ids: (v[:, 0], ids), "expected a 2-D array"),
    (lambda v, ids: (v, ids[:-1] + ids[:1]), "listed more than once"),
    (lambda v, ids: (np.where(np.arange(12)[:, None] == 0, 0.0, v), ids), "row 0 .* all zeros"),
])
def test_bad_vectors_are_refused_in_one_line_and_nothing_is_written(
        planted: tuple[str, list[str], np.ndarray, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        change: object, message: str) -> None:
    import fiftyone as fo

    name, ids, vectors, _ = planted
    bad, bad_ids = change(vectors, list(ids))  # type: ignore[operator]
    np.save(tmp_path / "bad.npy", bad)
    (tmp_path / "bad.ids.json").write_text(json.dumps(bad_ids))
    assert main(["embed", name, "--vectors", str(tmp_path / "bad.npy"), "--ids", str(tmp_path / "bad.ids.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")
    import re

    assert re.search(message, err), err
    assert "lookalike" not in (fo.load_dataset(name).info or {})
    assert not fo.load_dataset(name).has_field("content_hash")


def test_a_run_of_another_dimension_is_refused(planted: tuple[str, list[str], np.ndarray, Path]) -> None:
    name, _, vectors, _ = planted
    import_vectors(name, vectors, model_name="mine")
    with pytest.raises(IndexMismatchError, match=r"8-d vectors, but the run 'mine' holds 16-d"):
        import_vectors(name, vectors[:, :8], model_name="mine")
    with pytest.raises(ConfigError, match=r"either vectors .* or from_field"):
        import_vectors(name)


def test_reimporting_upserts_only_new_and_changed_vectors(planted: tuple[str, list[str], np.ndarray, Path]) -> None:
    name, ids, vectors, _ = planted
    assert import_vectors(name, vectors).upserted == 12
    assert import_vectors(name, vectors).upserted == 0  # unchanged: nothing rewritten
    moved = vectors.copy()
    moved[9] = vectors[2] * 2.0 + 1e-3  # row 9 now sits beside row 2; same image file
    assert import_vectors(name, moved).upserted == 1
    graph_ids, graph = knn_graph(name, 2)
    row = {sid: r for r, sid in enumerate(graph_ids)}
    assert graph_ids[graph.indices[row[ids[9]], 0]] == ids[2]  # the stored graph followed the changed vector


def test_reimporting_after_tags_changed_sets_them_and_keeps_the_vectors(
        planted: tuple[str, list[str], np.ndarray, Path]) -> None:
    import fiftyone as fo


    name, ids, vectors, _ = planted
    import_vectors(name, vectors)
    fo.load_dataset(name).select(ids[:3]).tag_samples("checked")  # what an analysis or a reviewer does
    again = import_vectors(name, vectors)
    assert (again.upserted, again.relabelled) == (0, 3)
    index = EmbeddingRun.get(fo.load_dataset(name)).open_index(load_config())
    payloads = index.payloads()
    assert sorted(sid for sid, p in payloads.items() if "checked" in p["tags"]) == sorted(ids[:3])
    rows = [sid for sid in ids if "checked" not in payloads[sid]["tags"]]
    assert all(payloads[sid]["tags"] == [] for sid in rows)
    expected = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(index.vectors(ids), expected, atol=1e-6)  # vectors untouched
    found = similar(name, sample=ids[5], k=5, tag="checked")
    assert sorted(m.id for m in found) == sorted(ids[:3])  # the filter inside Qdrant sees the new tags
