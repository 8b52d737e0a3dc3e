"""The similarity backend FiftyOne loads for the App's sort-by-similarity, on the real database and store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import MODEL
from lookalike import embed, similar
from lookalike.brain import brain_key
from lookalike.datasets import get_dataset


@pytest.fixture
def embedded_ids(embedded: tuple[str, Path, Path]) -> tuple[str, str, str]:
    """The embedded tree's name, and the sample ids of its planted original and copy."""
    from fiftyone import ViewField as F

    name, original, copy = embedded
    ds = get_dataset(name)
    return name, ds.match(F("filepath") == str(original)).first().id, ds.match(F("filepath") == str(copy)).first().id


def test_embed_registers_a_similarity_index_that_sort_by_similarity_uses(embedded_ids: tuple[str, str, str]) -> None:
    import fiftyone as fo

    name, original, copy = embedded_ids
    ds = fo.load_dataset(name)
    key = brain_key(MODEL)
    assert key in ds.list_brain_runs(type="similarity")
    assert ds.get_brain_info(key).config.supports_prompts  # a CLIP-shaped model: text prompts in the App
    view = ds.sort_by_similarity(original, k=4, brain_key=key, dist_field="distance")
    ids = view.values("id")
    assert ids[:2] == [original, copy]  # itself first, as FiftyOne's own backends do, then the planted copy
    assert ids[1:] == [m.id for m in similar(name, sample=original, k=3, save_view=False)]
    assert view.values("distance")[0] == pytest.approx(0.0, abs=1e-4)  # cosine distance, as sklearn's
    assert view.values("distance") == sorted(view.values("distance"))


def test_text_prompts_and_views_match_the_python_api(embedded_ids: tuple[str, str, str]) -> None:
    import fiftyone as fo

    name, original, _ = embedded_ids
    ds = fo.load_dataset(name)
    key = brain_key(MODEL)
    by_text = ds.sort_by_similarity("a red square", k=5, brain_key=key).values("id")
    assert by_text == [m.id for m in similar(name, text="a red square", k=5, save_view=False)]
    blue = ds.match({"filepath": {"$regex": "/blue/"}})
    in_view = blue.sort_by_similarity(original, k=3, brain_key=key).values("id")
    assert in_view == [m.id for m in similar(name, sample=original, label="blue", k=3, save_view=False)]


def test_the_index_reads_and_writes_the_runs_collection(embedded_ids: tuple[str, str, str]) -> None:
    import fiftyone as fo

    name, original, copy = embedded_ids
    ds = fo.load_dataset(name)
    index = ds.load_brain_results(brain_key(MODEL))
    assert index.total_index_size == len(ds) - 1  # the corrupt file has no vector
    vectors, ids, _ = index.get_embeddings([original, copy])
    assert list(ids) == [original, copy] and float(vectors[0] @ vectors[1]) > 0.95
    index.remove_from_index([copy])
    assert copy not in ds.sort_by_similarity(original, k=3, brain_key=brain_key(MODEL)).values("id")
    index.add_to_index(vectors[1:], [copy])
    assert ds.sort_by_similarity(original, k=2, brain_key=brain_key(MODEL)).values("id") == [original, copy]
    assert np.allclose(index.get_embeddings([copy])[0], vectors[1:], atol=1e-6)


def test_a_rerun_replaces_the_brain_run(embedded_ids: tuple[str, str, str]) -> None:
    import fiftyone as fo

    name, original, _ = embedded_ids
    assert embed(name, MODEL).brain_key == brain_key(MODEL) == "lookalike_random_tiny_clip"  # predictable
    ds = fo.load_dataset(name)
    assert ds.list_brain_runs(type="similarity") == [brain_key(MODEL)]
    assert len(ds.sort_by_similarity(original, k=3, brain_key=brain_key(MODEL))) == 3


def test_the_backend_serves_a_qdrant_client_collection_alike(embedded_ids: tuple[str, str, str], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A server collection goes through qdrant-client; its local mode stands in for the server here."""
    from lookalike.config import load_config
    from lookalike.index import QdrantIndex
    from lookalike.runs import EmbeddingRun

    name, original, _ = embedded_ids
    ds = get_dataset(name)
    edge = EmbeddingRun.get(ds).open_index(load_config())
    payloads = edge.payloads()
    ids = sorted(payloads)
    client_side = QdrantIndex.connect("served", edge.dim, path=str(tmp_path / "qdrant"))
    client_side.upsert(ids, edge.vectors(ids), [payloads[i] for i in ids])
    monkeypatch.setattr(EmbeddingRun, "open_index", lambda run, config: client_side)
    index = ds.load_brain_results(brain_key(MODEL), cache=False)
    assert index.total_index_size == len(ids)
    view = index.sort_by_similarity(original, k=4)
    assert view.values("id") == [original] + [m.id for m in similar(name, sample=original, k=3, save_view=False)]
    by_text = index.sort_by_similarity("a red square", k=20)
    assert by_text.values("id") == [m.id for m in similar(name, text="a red square", k=20, save_view=False)]


def test_fiftyone_brains_own_methods_run_on_our_index(embedded_ids: tuple[str, str, str]) -> None:
    """compute_uniqueness, compute_near_duplicates and compute_leaky_splits with ``similarity_index=<our key>``:
    the planted copy (test/) of a train image is the near duplicate and the leak, and uniqueness is
    fiftyone-brain's formula on the cosine distances of the run's vectors."""
    import fiftyone as fo
    import fiftyone.brain as fob

    import lookalike

    name, original, copy = embedded_ids
    ds = fo.load_dataset(name)
    key = brain_key(MODEL)
    ids, vectors = lookalike.embeddings(name)
    dists = 1.0 - vectors @ vectors.T
    np.fill_diagonal(dists, np.inf)
    pair = float(dists[ids.index(original), ids.index(copy)])
    others = np.delete(np.delete(dists, [ids.index(original), ids.index(copy)], 0), ids.index(copy), 1)
    threshold = (pair + float(others.min())) / 2  # between the planted pair and every other pair
    assert pair < threshold < others.min()

    index = fob.compute_near_duplicates(ds, threshold=threshold, similarity_index=key)
    assert index.key == key  # our index, loaded by its brain key
    assert len(index.duplicate_ids) == 1 and {index.duplicate_ids[0], *index.neighbors_map} == {original, copy}
    (_kept, [(dropped, d)]), = index.neighbors_map.items()
    assert dropped == index.duplicate_ids[0] and d == pytest.approx(pair, abs=1e-4)

    leaks = fob.compute_leaky_splits(ds, splits="split", threshold=threshold, similarity_index=key)
    assert set(leaks.leaks_view().values("id")) == {original, copy}

    fob.compute_uniqueness(ds, uniqueness_field="brain_uniqueness", similarity_index=key)
    nearest = np.sort(dists, axis=1)[:, :3]
    expected = (nearest * [0.6, 0.3, 0.1]).mean(axis=1)
    expected /= expected.max()
    got = dict(zip(*ds.values(["id", "brain_uniqueness"]), strict=True))
    assert np.allclose([got[i] for i in ids], expected, atol=1e-3)


def test_full_index_neighbours_come_from_the_graph_and_follow_the_view(embedded_ids: tuple[str, str, str]) -> None:
    """Full-index answers (``query=None``) are positions in the current rows, itself excluded, nearest first;
    on a view, the view's rows among themselves."""
    import fiftyone as fo

    import lookalike

    name, original, copy = embedded_ids
    ds = fo.load_dataset(name)
    index = ds.load_brain_results(brain_key(MODEL))
    ids, vectors = lookalike.embeddings(name)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    inds, dists = index._kneighbors(k=3, return_dists=True)
    current = list(index.current_sample_ids)
    for n, sid in enumerate(current):
        row = ids.index(sid)
        assert [current[i] for i in inds[n]] == [ids[j] for j in np.argsort(-sims[row])[:3]]
        assert np.allclose(dists[n], 1.0 - np.sort(sims[row])[::-1][:3], atol=1e-4)
    test = ds.match({"split": "test"})
    with index.use_view(test):
        inds = index._kneighbors(k=2)
        assert len(inds) == index.index_size == len(test)
        assert all(set(row) <= set(range(len(test))) for row in inds)
    radius = index._radius_neighbors(thresh=1.0 - float(vectors[ids.index(original)] @ vectors[ids.index(copy)]) + 1e-4)
    assert current.index(copy) in radius[current.index(original)]
    with pytest.raises(ValueError, match="no reverse"):
        index._kneighbors(k=2, reverse=True)
