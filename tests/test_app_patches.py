"""Boxes in the real App (headless Chromium): a patches view sorted by similarity through lookalike's backend,
and a suspected box label accepted (and undone) in the review panel, on planted COCO scenes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import MODEL, write_coco_scenes
from lookalike import embed, embeddings, load, mislabels, similar
from test_app import CHROMIUM, K, _free_port, _grid_ids, _shot, _show_latest_search, browser_page

FIELD = "ground_truth_detections"
BRAIN_KEY = f"lookalike_random_tiny_clip__{FIELD}"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, str, str]]:
    """30 one-object scenes (balls, cups, boxes) with one ball labelled box, its boxes embedded and scored, in the
    App: (name, session, url, the planted label id)."""
    import fiftyone as fo

    from lookalike.app import launch

    kinds = ("ball", "cup", "box")
    scenes = [[(kinds[n % 3], (10 + n, 12 + n % 7, 30, 30))] for n in range(30)]
    root = write_coco_scenes(tmp_path_factory.mktemp("coco"), scenes)
    name = "t-app-boxes"
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = load(root, name=name, format="coco")
    sample = ds.match({"filepath": str(root / "data" / "scene-006.png")}).first()  # a ball
    sample[FIELD].detections[0].label = "box"
    planted = sample[FIELD].detections[0].id
    sample.save()
    embed(name, MODEL, patches=FIELD)
    mislabels(name, patches=FIELD)
    port = _free_port()
    session = launch(name, port=port)
    yield name, session, f"http://localhost:{port}/datasets/{name}", planted
    fo.delete_dataset(name)


@pytest.fixture
def page(app: tuple[str, Any, str, str]) -> Iterator[Any]:
    import fiftyone as fo

    name, session, url, _ = app
    session.spaces = None
    session.view = fo.load_dataset(name).to_patches(FIELD)  # the grid shows the boxes
    yield from browser_page(url)


def test_a_patches_view_sorted_by_similarity_from_a_selected_box(app: tuple[str, Any, str, str], page: Any) -> None:
    import fiftyone as fo

    name, _, _, _ = app
    query = _grid_ids(page)[0]  # a patch's id is its label's
    page.locator('[data-cy="looker"]').first.hover()
    page.locator('[data-cy="looker"]').first.locator('[data-cy="looker-checkbox-"]').click(force=True)
    page.click('[data-cy="action-sort-by-similarity"]')
    page.get_by_text("Show similar samples").click()
    page.get_by_text(BRAIN_KEY).first.wait_for()  # the search ran on our patch index
    _show_latest_search(page)
    shown = _grid_ids(page)
    _shot(page, "app-patches-sort-by-similarity")
    expected = fo.load_dataset(name).to_patches(FIELD).sort_by_similarity(query, k=K, brain_key=BRAIN_KEY)
    assert shown == expected.values("id")
    assert shown[0] == query  # FiftyOne lists the query first
    # The rest are the K - 1 boxes nearest the query, nearest first (ties among these near-identical crops may
    # come in either order, so compared by score, from the exported vectors).
    ids, vectors = embeddings(name, patches=FIELD)
    cosine = dict(zip(ids, (vectors @ vectors[ids.index(query)]).tolist(), strict=True))
    ranked = [cosine[i] for i in shown[1:]]
    assert all(a >= b - 1e-5 for a, b in itertools.pairwise(ranked))
    assert max(c for i, c in cosine.items() if i not in shown) <= ranked[-1] + 1e-5
    assert len(similar(name, sample=query, patches=FIELD, k=K - 1, save_view=False)) == K - 1


def test_a_box_suspect_is_accepted_in_the_review_panel(app: tuple[str, Any, str, str], page: Any) -> None:
    import fiftyone as fo

    name, _, _, planted = app
    ds = fo.load_dataset(name)
    flagged = ds.filter_labels(FIELD, fo.ViewField("suspect_label") == True)  # noqa: E712 (a query)
    open_boxes = flagged.count(f"{FIELD}.detections")
    assert open_boxes >= 1
    page.click('[data-cy="new-panel-btn"]')
    page.get_by_text("lookalike review", exact=True).click()
    page.get_by_text(f"Suspected box labels ({FIELD}): {open_boxes} open").wait_for()
    page.get_by_role("button", name="Accept").first.click()
    page.get_by_text("Reviewed: 1").wait_for()
    page.get_by_text(f"Suspected box labels ({FIELD}): {open_boxes - 1} open").wait_for()
    _shot(page, "app-review-panel-boxes")
    ds.reload()
    reviewed = ds.filter_labels(FIELD, fo.ViewField("review") == "accepted")
    (accepted,) = reviewed.values(f"{FIELD}.detections", unwind=True)
    assert accepted.label == accepted["suggested_label"] and accepted["label_before_review"] != accepted.label
    if accepted.id == planted:  # the planted one is the most suspect on any seed that finds it
        assert accepted.label == "ball"

    page.get_by_role("button", name="Undo").first.click()  # and it can be taken back
    page.get_by_text(f"Suspected box labels ({FIELD}): {open_boxes} open").wait_for()
    ds.reload()
    assert not len(ds.filter_labels(FIELD, fo.ViewField("review") == "accepted"))
