"""The bad-input corpus (tests/data/make_bad_inputs.py) through load, embed and every finder: no crash, each
bad file recorded with its reason, every good file embedded, and unusual good files seen as a person sees
them (upright, first frame, 16-bit scaled, not clipped)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from conftest import MODEL

if TYPE_CHECKING:
    from lookalike.models import Embedder

_spec = importlib.util.spec_from_file_location("make_bad_inputs", Path(__file__).parent / "data" / "make_bad_inputs.py")
assert _spec and _spec.loader
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)


def test_bad_files_are_recorded_and_good_ones_all_embedded(tmp_path: Path, dataset_name: str, tiny: Embedder) -> None:
    import fiftyone as fo

    import lookalike
    from lookalike.api import ERROR_FIELD
    from lookalike.finders import FINDERS

    root = tmp_path / "corpus"
    expected = corpus.write_corpus(root)
    lookalike.load(root, name=dataset_name)
    (root / "good" / "photo-7.png").unlink()  # gone between load and embed
    expected["good/photo-7.png"] = "cannot read file: No such file"

    summary = lookalike.embed(dataset_name, MODEL)

    failed = {str(Path(p).relative_to(root)): reason for p, reason in summary.failed.items()}
    assert set(failed) == {p for p, outcome in expected.items() if outcome != "ok"}
    for path, reason in failed.items():
        assert reason.startswith(expected[path]), (path, reason)
    good = [p for p, outcome in expected.items() if outcome == "ok"]
    assert summary.embedded == len(good) and summary.samples == len(expected)
    ds = fo.load_dataset(dataset_name)
    errors = dict(zip(ds.values("filepath"), ds.values(ERROR_FIELD), strict=True))
    assert {str(Path(p).relative_to(root)) for p, e in errors.items() if e} == set(failed)

    ds.clone_sample_field("ground_truth", "predictions")  # a model's predictions, for the slices finder
    options: dict[str, dict[str, Any]] = {"slices": {"prediction_field": "predictions"}}
    for name in FINDERS:
        if name == "tag":
            continue  # words by CLIP's text tower: covered in test_finders
        found = lookalike.find(name, dataset_name, **options.get(name, {}))
        assert len(found.ids) == len(good), name  # the good files, all of them

    ids, vectors = lookalike.embeddings(dataset_name)
    row = {path: ids.index(sid) for sid, path in zip(ds.values("id"), ds.values("filepath"), strict=True)
           if sid in ids}

    def vector(name: str) -> np.ndarray:
        return vectors[row[str(root / "good" / name)]]

    # An EXIF-rotated photo is embedded upright: its vector is the upright copy's (0.999998 here), not that
    # of its stored pixels (0.995 with this model).
    assert float(vector("exif-rotated.jpg") @ vector("upright.jpg")) >= 0.9999
    sideways = tiny.embed_pil([Image.open(root / "good" / "exif-rotated.jpg").convert("RGB")])[0]
    assert float(sideways @ vector("upright.jpg")) < 0.999
    # An animated GIF is its first frame (GIF's palette: close, not equal).
    assert float(vector("animated.gif") @ vector("animated-first-frame.png")) >= 0.99
    # A 16-bit image is scaled to 8 bits, not clipped to white.
    grey = np.asarray(Image.open(root / "good" / "grey-16-bit.png"), dtype=np.uint32) // 257
    assert float(vector("grey-16-bit.png") @ tiny.embed_pil([Image.fromarray(grey.astype(np.uint8))])[0]) >= 0.999
    groups = {frozenset(Path(m.filepath).name for m in g.members) for g in lookalike.duplicates(dataset_name)}
    assert frozenset({"exif-rotated.jpg", "upright.jpg"}) in groups  # the same picture, however stored
