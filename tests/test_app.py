"""The real FiftyOne App in headless Chromium (Playwright), on real Fashion-MNIST images and the random
test model: what the App shows must equal what the Python API and the CLI return for the same query.

Screenshots land in ``tests/artifacts/`` (or ``$LOOKALIKE_TEST_ARTIFACTS``); the README shows two.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lookalike import embed, load, similar
from lookalike.demo import FASHION_MNIST_DIR, write_fashion_mnist

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("LOOKALIKE_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
MODEL = "random-tiny-clip"
BRAIN_KEY = "lookalike_random_tiny_clip"
K = 25  # the App's default number of matches

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (scripts/setup.sh installs it)"),
    pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, str]]:
    """A small real dataset, embedded, served by the App with the lookalike plugin: (name, session, url)."""
    import fiftyone as fo

    from lookalike.app import launch

    root = write_fashion_mnist(tmp_path_factory.mktemp("shop"), {"train": 48, "test": 16})
    source = sorted((root / "train").rglob("*.png"))[0]
    brighter = Image.open(source).point(lambda v: min(255, round(v * 1.05)))
    brighter.save(root / "test" / source.parent.name / "near-copy.png")  # a planted leak
    noise = np.random.default_rng(0).integers(0, 24, (28, 28), dtype=np.uint8)
    Image.fromarray(noise).save(root / "test" / source.parent.name / "dark.png")  # a planted quality issue
    name = "t-app-shop"
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    load(root, name=name)
    embed(name, MODEL)
    port = _free_port()
    session = launch(name, port=port)
    yield name, session, f"http://localhost:{port}/datasets/{name}"
    fo.delete_dataset(name)


@pytest.fixture
def page(app: tuple[str, Any, str]) -> Iterator[Any]:
    """A fresh browser page on the App, with the session's layout and view reset between tests."""
    _, session, url = app
    session.spaces = None  # only the Samples grid
    session.view = None
    yield from browser_page(url)


def browser_page(url: str) -> Iterator[Any]:
    """Headless Chromium on the App at ``url``, its grid loaded and the cards that cover the panels closed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector('[data-cy="looker"]')
        _dismiss_cards(page)
        yield page
        browser.close()


def _dismiss_cards(page: Any) -> None:
    """Close the App's "Explore Enterprise" cards, which cover the panels (they appear a little late)."""
    from playwright.sync_api import Error as PlaywrightError

    time.sleep(3)
    for button in page.get_by_text("Dismiss", exact=True).all():
        try:
            if button.is_visible():
                button.click(force=True, timeout=5_000)
        except PlaywrightError:  # gone meanwhile (closed with another card, or drawn again): nothing to close
            pass


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _grid_ids(page: Any) -> list[str]:
    """Sample ids in grid order, read from the tiles (the id field is switched on to label them)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    tags = page.locator('[data-cy="looker"] [data-cy="tag-id"]')
    for _ in range(3):
        if tags.count():
            break
        page.click('[data-cy="checkbox-id"]')
        try:
            tags.first.wait_for(timeout=20_000)
        except PlaywrightTimeout:
            continue  # on a loaded machine a click before the sidebar is ready may toggle nothing: click again
    tags.first.wait_for()
    # Tiles render one by one, slowly on a loaded machine: read once every tile is labelled and the grid holds.
    shown: list[str] = []
    for _ in range(30):
        now = [str(t) for t in tags.all_inner_texts()]
        if now and now == shown and len(now) == page.locator('[data-cy="looker"]').count():  # none: re-rendering
            break
        shown = now
        time.sleep(1)
    return shown


def _show_latest_search(page: Any) -> None:
    """In the Similarity Search panel, apply the newest search to the grid."""
    page.locator('[aria-label="Show results"]').first.click(force=True)  # shown on hover only
    page.wait_for_function("document.querySelectorAll('[data-cy=\"looker\"]').length <= 25")
    time.sleep(2)


def test_sort_by_similarity_from_a_selected_sample(app: tuple[str, Any, str], page: Any) -> None:
    import fiftyone as fo

    name, _, _ = app
    query = _grid_ids(page)[0]
    page.locator('[data-cy="looker"]').first.hover()
    page.locator('[data-cy="looker"]').first.locator('[data-cy="looker-checkbox-"]').click(force=True)
    page.click('[data-cy="action-sort-by-similarity"]')
    page.get_by_text("Show similar samples").click()
    page.get_by_text(BRAIN_KEY).first.wait_for()  # the search ran on our backend
    _show_latest_search(page)
    shown = _grid_ids(page)
    _shot(page, "app-sort-by-similarity")
    expected = fo.load_dataset(name).sort_by_similarity(query, k=K, brain_key=BRAIN_KEY).values("id")
    assert shown == expected
    assert shown[0] == query  # FiftyOne lists the query first; lookalike.similar leaves it out
    assert shown[1:] == [m.id for m in similar(name, sample=query, k=K - 1, save_view=False)]


def test_sort_by_similarity_from_a_text_prompt(app: tuple[str, Any, str], page: Any) -> None:
    name, _, _ = app
    page.click('[data-cy="new-panel-btn"]')
    page.get_by_text("Similarity Search", exact=True).last.click()
    page.get_by_text("New Search").click()
    page.get_by_text("Text Search").click()
    page.get_by_placeholder("Enter a text prompt...").fill("a sandal")
    page.get_by_role("button", name="Search", exact=True).click()
    page.get_by_text("Run this operation synchronously").click()  # rather than schedule it
    page.get_by_text("a sandal").first.wait_for()
    time.sleep(2)
    _show_latest_search(page)
    shown = _grid_ids(page)
    _shot(page, "app-text-prompt")
    assert shown == [m.id for m in similar(name, text="a sandal", k=K, save_view=False)]


def _field(page: Any, label: str) -> Any:
    """An operator form's input by its label (the App does not link the two)."""
    return page.get_by_text(label, exact=True).locator("xpath=ancestor::*[.//input][1]//input").first


def _run_operator(page: Any, label: str, finished: re.Pattern[str], form: dict[str, str] | None = None) -> None:
    """Run an operator from the operator browser, its ``form`` filled in (input label: value), and wait for its
    last progress ``finished``."""
    page.keyboard.press("`")  # the operator browser
    page.keyboard.type(label)
    page.keyboard.press("Enter")
    for field, value in (form or {}).items():
        _field(page, field).fill(value)
    page.get_by_role("button", name="Execute", exact=True).click()
    page.get_by_text(finished).wait_for(timeout=180_000)
    page.get_by_role("button", name="Done", exact=True).click()


def test_mislabels_operator_matches_the_cli_and_a_suggestion_is_accepted(app: tuple[str, Any, str],
                                                                         page: Any) -> None:
    import fiftyone as fo

    from lookalike.finders.mislabels import Mislabels

    SUSPECT_VIEW = Mislabels.view

    name, _, _ = app
    _run_operator(page, "lookalike: find mislabels", re.compile(r"^\d+ suspected mislabels of \d+$"))
    ds = fo.load_dataset(name)
    ds.reload()  # the App server wrote to it
    from_app = ds.load_saved_view(SUSPECT_VIEW).values("id")
    assert from_app, "the operator flagged nothing on a random-weight model; the test needs at least one"
    counts = page.locator('[data-cy="entry-counts"]')
    counts.get_by_text(re.compile(f"^{len(from_app)} samples?$")).wait_for()  # the grid shows the suspects

    cli = subprocess.run([sys.executable, "-m", "lookalike.cli", "mislabels", name, "--json"],
                         capture_output=True, text=True, check=True)
    assert {s["id"] for s in json.loads(cli.stdout)} == set(from_app)  # the same samples
    ds.reload()  # the CLI rewrote the results
    scores = ds.load_saved_view(SUSPECT_VIEW).values("mislabel_score")
    assert scores == sorted(scores, reverse=True)  # most suspect first

    page.click('[data-cy="new-panel-btn"]')
    page.get_by_text("lookalike review", exact=True).click()
    page.get_by_text(f"Suspected mislabels: {len(from_app)} open").wait_for()
    top = ds[from_app[0]]
    suggested = top["suggested_label"]
    page.get_by_role("button", name="Accept").first.click()
    page.get_by_text("Reviewed: 1").wait_for()
    page.get_by_text(f"Suspected mislabels: {len(from_app) - 1} open").wait_for()
    page.locator('[data-cy="looker"]').first.locator('[data-cy="tag-ground_truth"]').get_by_text(
        suggested, exact=True).wait_for()  # the grid shows the new label
    _shot(page, "app-review-panel")
    ds.reload()  # the panel added fields
    top = ds[from_app[0]]
    assert top.ground_truth.label == suggested and top["review"] == "accepted"

    page.get_by_role("button", name="Undo").first.click()  # and it can be taken back
    page.get_by_text(f"Suspected mislabels: {len(from_app)} open").wait_for()
    top.reload()
    assert top["review"] is None and top.ground_truth.label != suggested


def _lasso(page: Any, outline: list[tuple[float, float]]) -> None:
    """Draw a lasso on the Embeddings panel's plot (outline in fractions of the plot) until it selects.

    On a loaded machine the plot may still be drawing when the first lasso lands, and that lasso selects
    nothing; so the lasso is drawn again, up to three times, and the last failure is raised.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    selected = page.get_by_text(re.compile(r"^\d+ selected · \d+ points$"))
    for attempt in range(3):
        page.get_by_text("Select", exact=True).click()
        time.sleep(2)
        box = page.locator("canvas").last.bounding_box()  # the plot
        x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
        page.mouse.move(x0 + w * outline[0][0], y0 + h * outline[0][1])
        page.mouse.down()
        for fx, fy in outline[1:]:
            page.mouse.move(x0 + w * fx, y0 + h * fy, steps=10)
        page.mouse.up()
        try:
            selected.wait_for(timeout=30_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def test_the_map_in_the_embeddings_panel_and_a_lasso_filters_the_grid(app: tuple[str, Any, str], page: Any) -> None:
    import fiftyone as fo

    from lookalike.finders.map import MAP_BRAIN_KEY

    name, _, _ = app
    _run_operator(page, "lookalike: compute the map", re.compile(r"^\d+ clusters; brain key lookalike_map$"))
    _dismiss_cards(page)  # the operator opened the Embeddings panel
    page.get_by_text(MAP_BRAIN_KEY, exact=True).click()
    page.get_by_text("Color by").click()
    page.locator('[role="option"], li').get_by_text("cluster", exact=True).click()
    _lasso(page, [(0.01, 0.5), (0.01, 0.99), (0.45, 0.99), (0.45, 0.01), (0.01, 0.01), (0.01, 0.49)])  # left 45%
    time.sleep(2)
    _shot(page, "app-embeddings-map")
    shown = set(_grid_ids(page))
    ds = fo.load_dataset(name)
    ds.reload()
    layout = ds.load_brain_results(MAP_BRAIN_KEY)
    order = np.argsort(layout.points[:, 0])  # leftmost on the plot first
    top = {str(layout.sample_ids[i]) for i in order[:len(shown)]}
    assert 0 < len(shown) < len(ds)
    assert shown == top  # exactly the samples our layout puts in the lassoed band


def test_find_similar_operator_with_a_filter_matches_the_cli(app: tuple[str, Any, str], page: Any) -> None:
    import fiftyone as fo

    from lookalike.api import SIMILAR_VIEW

    name, _, _ = app
    _run_operator(page, "lookalike: find similar", re.compile(r"^\d+ found$"),
                  {"Text prompt (CLIP models)": "a sandal", "Only this split": "train"})
    page.locator('[data-cy="entry-counts"]').get_by_text("25 samples").wait_for()
    shown = _grid_ids(page)
    cli = subprocess.run([sys.executable, "-m", "lookalike.cli", "similar", name, "--text", "a sandal", "--split",
                          "train", "-k", "25", "--json"], capture_output=True, text=True, check=True)
    from_cli = [m["id"] for m in json.loads(cli.stdout)]
    assert shown == from_cli
    ds = fo.load_dataset(name)
    assert set(ds.select(shown).values("split")) == {"train"}  # the filter ran inside Qdrant
    ds.reload()
    assert ds.load_saved_view(SIMILAR_VIEW).values("id") == from_cli


def test_duplicates_operator_and_the_keep_plan_in_the_panel(app: tuple[str, Any, str], page: Any) -> None:
    import fiftyone as fo

    from lookalike import review

    name, _, _ = app
    _run_operator(page, "lookalike: find duplicates", re.compile(r"^\d+ duplicate groups, \d+ leaks$"))
    ds = fo.load_dataset(name)
    ds.reload()
    found = ds.exists("duplicate_group")
    page.locator('[data-cy="entry-counts"]').get_by_text(f"{len(found)} samples").wait_for()  # the groups' view
    copy = found.match({"filepath": {"$regex": "near-copy.png$"}}).first()
    pair = found.match({"duplicate_group": copy.duplicate_group})
    assert len(pair) == 2 and set(pair.values("split")) == {"train", "test"}  # the planted leak

    page.click('[data-cy="new-panel-btn"]')
    page.get_by_text("lookalike review", exact=True).click()
    page.get_by_text(f"group {copy.duplicate_group}: 2 images").locator("xpath=ancestor::*[.//button][1]").get_by_role(
        "button", name="Apply keep plan").click()
    page.get_by_text(re.compile("tagged 1 keep, 1 remove")).wait_for()
    _shot(page, "app-keep-plan")
    ds.reload()
    kept = ds.match_tags(review.KEEP_TAG).values("id")
    removed = ds.match_tags(review.REMOVE_TAG).values("id")
    assert len(kept) == len(removed) == 1 and kept[0] == pair.match({"duplicate_keep": True}).first().id
    assert len(ds) == len(found) + len(ds.exists("duplicate_group", False))  # nothing deleted


def test_quality_operator_and_a_flagged_image_removed_in_the_panel(app: tuple[str, Any, str], page: Any) -> None:
    import fiftyone as fo

    from lookalike import review

    name, _, _ = app
    _run_operator(page, "lookalike: find image quality issues", re.compile(r"^\d+ images with quality issues of \d+$"))
    ds = fo.load_dataset(name)
    ds.reload()
    dark = ds.match({"filepath": {"$regex": "/dark.png$"}}).first()
    assert "dark" in dark.quality_issues

    page.click('[data-cy="new-panel-btn"]')
    page.get_by_text("lookalike review", exact=True).click()
    flagged = len(ds.match_tags("quality-issue").match_tags([review.KEEP_TAG, review.REMOVE_TAG], bool=False))
    page.get_by_text(f"Image quality issues: {flagged} open").wait_for()
    page.get_by_text(re.compile(r"dark\.png.*dark")).locator("xpath=ancestor::*[.//button][1]").get_by_role(
        "button", name="Remove").click()
    page.get_by_text(f"Image quality issues: {flagged - 1} open").wait_for()
    ds.reload()
    assert ds[dark.id].tags.count(review.REMOVE_TAG) == 1 and dark.id not in ds.load_saved_view(
        review.KEPT_VIEW).values("id")
    page.get_by_text(re.compile(r"dark\.png\W*remove$")).locator("xpath=ancestor::*[.//button][1]").get_by_role(
        "button", name="Undo").click()  # the removal can be taken back
    page.get_by_text(f"Image quality issues: {flagged} open").wait_for()


def test_slices_operator_lists_a_failure_slice_in_the_panel_and_shows_it(app: tuple[str, Any, str],
                                                                       page: Any) -> None:
    """A model that calls every image of one class a bag: the operator finds that slice, the review panel lists
    it with its figures, and Show puts its members in the grid."""
    import fiftyone as fo

    name, _, _ = app
    ds = fo.load_dataset(name)
    truth = ds.values("ground_truth.label")
    failing = max(set(truth) - {"Bag"}, key=truth.count)  # the largest class but bags
    ds.set_values("predictions", [fo.Classification(label="Bag" if t == failing else t) for t in truth])
    _run_operator(page, "lookalike: find failure slices", re.compile(r"^\d+ failure slices among \d+ samples$"),
                  {"Prediction field": "predictions", "Min size": "3"})
    ds.reload()
    listed = ds.get_brain_info("lookalike_run_slices").config.summary["slice_list"]
    members = ds.load_saved_view("lookalike-slice-0").values("id")
    slices = [set(ds.load_saved_view(f"lookalike-slice-{s['slice']}").values("id")) for s in listed]
    assert slices and set().union(*slices) <= set(ds.match({"ground_truth.label": failing}).values("id"))  # planted
    page.get_by_text(f"Failure slices: {len(listed)} open").wait_for()  # the review panel opened itself
    panel = page.get_by_text(re.compile(rf"^slice 0: {len(members)} samples, 100% errors"))
    panel.locator("xpath=ancestor::*[.//button][1]").get_by_role("button", name="Show").click()
    page.locator('[data-cy="entry-counts"]').get_by_text(re.compile(f"^{len(members)} samples?$")).wait_for()
    _shot(page, "app-failure-slice")
    assert set(_grid_ids(page)) == set(members)

    # The Embeddings panel colours the slice's map by whose mistake each error is.
    from lookalike.finders.map import MAP_BRAIN_KEY

    _run_operator(page, "lookalike: compute the map", re.compile(r"^\d+ clusters; brain key lookalike_map$"))
    _dismiss_cards(page)
    page.get_by_text(MAP_BRAIN_KEY, exact=True).click()
    page.get_by_text("Color by").click()
    page.locator('[role="option"], li').get_by_text("error_kind", exact=True).click()
    kinds = ds.select(members).count_values("error_kind")
    for kind, n in kinds.items():  # the plot's legend: each kind among the slice's errors, with its count (of all
        # the map's points of that kind, where an earlier map of the whole dataset is shown: "8 / 15")
        page.locator(".emb-legend-row", has=page.get_by_text(kind, exact=True)).locator(
            ".emb-legend-count").get_by_text(re.compile(rf"^{n}( / \d+)?$")).wait_for()
    page.get_by_text(re.compile(rf"(^{len(members)} points$)|( {len(members)} in view$)")).wait_for()
    _shot(page, "app-failure-slice-map")
