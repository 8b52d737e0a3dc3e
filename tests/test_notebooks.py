"""Every notebook in notebooks/ runs top to bottom (nbclient, a real kernel) on real Fashion-MNIST images, and
what it prints shows the planted answers found and the results rendered as thumbnails."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from lookalike.demo import FASHION_MNIST_DIR

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def _run(name: str) -> tuple[str, list[str]]:
    """Execute a notebook (its App on a free port): its printed text and the HTML it rendered."""
    import nbformat
    from nbclient import NotebookClient

    Path.home().mkdir(parents=True, exist_ok=True)  # IPython keeps its profile there
    book: Any = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    for cell in book.cells:
        assert cell.cell_type != "code" or not cell.outputs, f"{name} is stored with outputs"
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = re.sub(r"PORT = \d+", f"PORT = {_free_port()}", cell.source)
    # FiftyOne records the context it found in this process's environment (here: not a notebook), which the
    # kernel would inherit: the kernel must find out for itself.
    context = os.environ.pop("FIFTYONE_CONTEXT", None)
    try:
        NotebookClient(book, timeout=600, kernel_name="python3").execute()
    finally:
        if context is not None:
            os.environ["FIFTYONE_CONTEXT"] = context
    text, html = [], []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
            html.append(out.get("data", {}).get("text/html", ""))
    return "\n".join(text), [h for h in html if h]


def _figure(pattern: str, text: str) -> tuple[int, ...]:
    found = re.search(pattern, text)
    assert found, f"no {pattern!r} in the notebook's output"
    return tuple(int(g) for g in found.groups())


def test_every_notebook_is_tested() -> None:
    assert {p.stem for p in NOTEBOOKS.glob("*.ipynb")} == {
        "01-quickstart", "02-error-analysis", "03-deduplicate", "04-explore-clusters", "05-rare-object", "06-objects",
        "07-model-errors"}


def test_quickstart() -> None:
    text, html = _run("01-quickstart")
    assert "500 of 500 embedded" in text
    assert _figure(r"share of ankle boots: (\d)", text) == (1,)  # 1.0: three boots, away from a sandal
    assert sum("data:image/png;base64" in h for h in html) >= 2  # similar results render as thumbnails
    assert any("<iframe" in h for h in html)  # the App, inline


def test_error_analysis() -> None:
    text, html = _run("02-error-analysis")
    caught, planted = _figure(r"(\d+) of (\d+) planted labels among them", text)
    assert planted == 12 and caught >= 8
    restored, _ = _figure(r"(\d+) of (\d+) planted labels restored", text)
    assert restored >= 4
    assert "precision_at_k" in text and any("&rarr;" in h for h in html)  # suggested labels shown


def test_deduplicate() -> None:
    text, html = _run("03-deduplicate")
    (planted,) = _figure(r"(\d+) copies planted", text)
    groups, leaks = _figure(r"(\d+) groups, (\d+) leak across splits", text)
    assert groups >= leaks
    assert leaks >= planted  # every copy planted in test leaks a train image
    total, kept = _figure(r"(\d+) samples, (\d+) kept", text)
    exported, all_kept = _figure(r"(\d+) images exported to .* the dataset keeps all (\d+)", text)
    assert kept < total and exported == kept and all_kept == total  # nothing deleted in place
    assert any("group " in h and "data:image/png;base64" in h for h in html)


def test_explore_clusters() -> None:
    text, html = _run("04-explore-clusters")
    assert re.search(r"cluster \d+: \d+ samples", text)
    assert any("image/png" in h for h in html)  # the map plot, inline
    assert any("<iframe" in h for h in html)


def test_rare_object() -> None:
    text, _ = _run("05-rare-object")
    found, total = _figure(r"(\d+) of (\d+) Bag images found", text)
    assert found >= 15 and total > found
    assert "to-label-bag" in text


def test_objects() -> None:
    text, html = _run("06-objects")
    boxes, embedded = _figure(r"(\d+) of (\d+) boxes embedded", text)
    assert boxes == embedded  # every box
    found, bags = _figure(r"(\d+) of (\d+) Bag boxes found from one", text)
    assert bags >= 6 and found >= 2  # mined beyond the one example
    caught, planted = _figure(r"(\d+) of (\d+) planted box labels among them", text)
    assert planted == 6 and caught >= 3
    restored, _ = _figure(r"(\d+) of (\d+) planted box labels restored", text)
    assert restored >= 3
    groups, double_found, double_planted = _figure(r"(\d+) groups of double annotations; (\d+) of (\d+) planted", text)
    assert double_found == double_planted == 4 and groups >= 4
    (removed,) = _figure(r"(\d+) boxes removed", text)
    assert removed >= 4
    assert sum("data:image/png;base64" in h for h in html) >= 1  # the search's boxes render as thumbnails
    assert any("<iframe" in h for h in html)  # the App, inline


def test_model_errors() -> None:
    text, html = _run("07-model-errors")
    size, errors = _figure(r"slice 0: (\d+) samples, (\d+) errors: Sneaker -> Sandal", text)
    assert errors >= size // 2  # the slice is the planted failure
    model, label = _figure(r"errors: (\d+) model, (\d+) label", text)
    assert model > label  # the test labels are right: the model's mistake
    changed, planted = _figure(r"(\d+) training labels changed to Sneaker; (\d+) of them were the mislabelled", text)
    assert planted >= changed * 0.8  # the data behind it: the mislabelled sneakers
    before, after = _figure(r"slice accuracy (\d+)% -> (\d+)%", text)
    assert after >= before + 40
    assert any("slice 0" in h and "data:image/png;base64" in h for h in html)  # slices render with thumbnails
