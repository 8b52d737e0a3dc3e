"""Results render in Jupyter: HTML thumbnail grids (capped) and pandas DataFrames."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lookalike import Match, Results
from lookalike.display import MAX_THUMBNAILS
from lookalike.finders.duplicates import Duplicate, DuplicateSet
from lookalike.finders.mislabels import Suspect


def _image(path: Path, colour: tuple[int, int, int]) -> str:
    Image.new("RGB", (300, 200), colour).save(path)
    return str(path)


def test_matches_render_as_capped_thumbnails_and_a_frame(tmp_path: Path) -> None:
    path = _image(tmp_path / "a.png", (255, 0, 0))
    matches = Results(Match(id=f"id{i}", filepath=path, label="cat", split="train", tags=[], score=1 - i / 100)
                      for i in range(MAX_THUMBNAILS + 12))
    html = matches._repr_html_()
    assert html.count("data:image/png;base64") == MAX_THUMBNAILS and "and 12 more" in html
    assert "cat" in html and "0.990" in html
    frame = matches.to_pandas()
    assert list(frame.columns) == ["id", "filepath", "label", "split", "tags", "score"] and len(frame) == 60


def test_an_unreadable_file_still_gets_its_caption(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    html = Results([Suspect(id="x", filepath=str(tmp_path / "bad.jpg"), label="cat", suggested_label="dog",
                            score=0.9, flagged=True)])._repr_html_()
    assert "no image" in html and "&rarr; dog" in html


def test_duplicate_groups_render_side_by_side_and_one_row_per_member(tmp_path: Path) -> None:
    a, b = _image(tmp_path / "a.png", (0, 255, 0)), _image(tmp_path / "b.png", (0, 250, 0))
    group = DuplicateSet(group=3, kind="near", leak=True, splits=["test", "train"], members=[
        Duplicate(id="a", filepath=a, label="x", split="train", keep=True),
        Duplicate(id="b", filepath=b, label="x", split="test", keep=False)])
    html = Results([group])._repr_html_()
    assert "group 3: near, leak across test / train" in html and html.count("base64") == 2 and "kept" in html
    frame = Results([group]).to_pandas()
    assert frame[["group", "id", "keep", "leak"]].values.tolist() == [[3, "a", True, True], [3, "b", False, True]]
