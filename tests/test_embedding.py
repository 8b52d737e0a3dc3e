from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from conftest import write_blobs
from lookalike.embedding import EmbeddingCache, cache_key, content_hash, embed_files
from lookalike.exceptions import TextNotSupportedError, UnknownModelError
from lookalike.models import get_embedder, list_models


def test_vectors_are_normalised_float32_and_cached(tmp_path: Path, tiny) -> None:
    paths = [str(p) for p in write_blobs(tmp_path / "a", "red", 5, seed=1)]
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    first = embed_files(paths, tiny, cache, batch_size=2, num_workers=0)
    assert (first.computed, first.cached, first.errors) == (5, 0, {})
    m = first.matrix(range(5))
    assert m.dtype == np.float32 and m.shape == (5, tiny.dim)
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-5)

    again = embed_files(paths, tiny, cache, batch_size=2, num_workers=0)
    assert (again.computed, again.cached) == (0, 5)
    np.testing.assert_array_equal(again.matrix(range(5)), m)

    more = paths + [str(p) for p in write_blobs(tmp_path / "b", "blue", 3, seed=2)]
    grown = embed_files(more, tiny, cache, batch_size=2, num_workers=0)
    assert (grown.computed, grown.cached) == (3, 5)


def test_a_decoding_version_bump_embeds_again(tmp_path: Path, tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """Vectors are cached under the decoding version: when what a file decodes to changes, they are not reused."""
    import lookalike.images as images

    paths = [str(p) for p in write_blobs(tmp_path / "a", "red", 3, seed=1)]
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    assert embed_files(paths, tiny, cache, batch_size=2, num_workers=0).computed == 3
    assert embed_files(paths, tiny, cache, batch_size=2, num_workers=0).cached == 3
    monkeypatch.setattr(images, "DECODING_VERSION", images.DECODING_VERSION + 1)
    bumped = embed_files(paths, tiny, cache, batch_size=2, num_workers=0)
    assert (bumped.computed, bumped.cached) == (3, 0)


def test_bad_files_are_recorded_and_skipped(tmp_path: Path, tiny) -> None:
    good = [str(p) for p in write_blobs(tmp_path, "green", 3, seed=3)]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(Path(good[0]).read_bytes()[:60])
    paths = [good[0], str(tmp_path / "missing.png"), str(corrupt), good[1], str(truncated), good[2]]
    result = embed_files(paths, tiny, None, batch_size=2, num_workers=2)
    assert sorted(result.vectors) == [0, 3, 5]
    assert "cannot read file" in result.errors[1]
    assert "cannot decode image" in result.errors[2]
    assert "cannot decode image" in result.errors[4]
    assert result.hashes[1] is None


def test_identical_bytes_are_embedded_once(tmp_path: Path, tiny) -> None:
    (src,) = write_blobs(tmp_path, "red", 1, seed=4)
    copy = tmp_path / "copy.png"
    copy.write_bytes(src.read_bytes())
    result = embed_files([str(src), str(copy)], tiny, None, num_workers=0)
    assert result.computed == 1
    np.testing.assert_array_equal(result.vectors[0], result.vectors[1])
    assert content_hash(src) == content_hash(copy)


def test_an_interrupted_run_resumes_from_the_cache(tmp_path: Path, tiny) -> None:
    paths = [str(p) for p in write_blobs(tmp_path, "blue", 6, seed=5)]
    cache = EmbeddingCache(tmp_path / "cache.sqlite")

    def interrupt(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_files(paths, tiny, cache, batch_size=2, num_workers=0, progress=interrupt)
    assert cache.count(cache_key(tiny)) == 2
    resumed = embed_files(paths, tiny, cache, batch_size=2, num_workers=0)
    assert (resumed.computed, resumed.cached) == (4, 2)


def test_text_tower(tiny) -> None:
    t = tiny.embed_text(["a red square", "a blue square"])
    assert t.shape == (2, tiny.dim) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, rtol=1e-5)


def test_random_weights_are_reproducible(tiny) -> None:
    again = get_embedder("random-tiny-clip")
    np.testing.assert_allclose(again.embed_text(["x"]), tiny.embed_text(["x"]), atol=1e-6)


def test_registry_errors_list_what_exists() -> None:
    assert {"clip", "efficientnet-lite0", "random-tiny-clip"} <= set(list_models())
    with pytest.raises(UnknownModelError, match="efficientnet-lite0"):
        get_embedder("resnet-9000")
    with pytest.raises(UnknownModelError, match="ViT-B-32"):
        get_embedder("clip:ViT-Z-99")


def test_efficientnet_has_real_weights(tmp_path: Path) -> None:
    """Real ImageNet weights: a rescaled, re-encoded photo sits nearer its original than other photos do."""
    from PIL import Image
    from skimage import data

    model = get_embedder("efficientnet-lite0", image_size=160)
    photos = {"cat": data.chelsea(), "coffee": data.coffee(), "rocket": data.rocket(), "astronaut": data.astronaut()}
    images = [Image.fromarray(a) for a in photos.values()]
    cat = images[0]
    variant = cat.resize((cat.width // 2, cat.height // 2)).rotate(5)
    path = tmp_path / "cat.jpg"
    variant.save(path, quality=40)
    v = model.embed_pil([*images, Image.open(path)])
    sims = v[:4] @ v[4]
    assert int(np.argmax(sims)) == 0
    assert sims[0] > 0.75
    with pytest.raises(TextNotSupportedError, match="clip"):
        model.embed_text(["a cat"])


def test_clip_loads_a_local_checkpoint(tmp_path: Path, tiny) -> None:
    import open_clip
    import torch

    from lookalike.models import TINY_ARCH

    torch.manual_seed(123)
    model = open_clip.create_model(TINY_ARCH).eval()
    checkpoint = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    loaded = get_embedder(f"clip:{TINY_ARCH}", pretrained=str(checkpoint))
    assert loaded.key.startswith(f"clip-{TINY_ARCH}-file-") and loaded.spec["pretrained"] == str(checkpoint)
    with torch.inference_mode():
        expected = model.encode_text(open_clip.get_tokenizer(TINY_ARCH)(["a cat"])).numpy()
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(loaded.embed_text(["a cat"]), expected, atol=1e-5)
    assert not np.allclose(loaded.embed_text(["a cat"]), tiny.embed_text(["a cat"]), atol=1e-3)


def test_unchanged_files_are_not_read_again_and_changed_ones_are(tmp_path: Path, monkeypatch) -> None:
    import os

    from lookalike import embedding

    paths = [str(p) for p in write_blobs(tmp_path, "red", 3, seed=6)]
    an_hour_ago = (embedding.time.time_ns() - 3600 * 10**9,) * 2
    for p in paths:
        os.utime(p, ns=an_hour_ago)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    first, _ = embedding.hash_files(paths, cache)

    Path(paths[1]).write_bytes(Path(paths[2]).read_bytes())  # changed, and just now: hashed, not recorded
    read: list[str] = []

    def counted(path: str) -> str:
        read.append(path)
        return content_hash(path)

    monkeypatch.setattr(embedding, "content_hash", counted)
    second, errors = embedding.hash_files([*paths, str(tmp_path / "gone.png")], cache)
    assert read == [paths[1]] and not errors.keys() - {3}
    assert second == [first[0], first[2], first[2], None]

    read.clear()
    embedding.hash_files(paths, cache)
    assert read == [paths[1]]  # modified under RACY_NS ago: its signature is not trusted yet


def test_cached_thumbnails_come_back_in_order_as_one_block(tmp_path: Path) -> None:
    from PIL import Image

    from lookalike.thumbnails import image_facts

    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    facts = {h: image_facts(Image.new("L", (40, 20 + 10 * i), 60 * i)) for i, h in enumerate("abc")}
    cache.put_facts(facts)
    got = cache.thumbnails(["c", "a", "c"])
    assert got.thumbs.shape == (3, 32, 32) and got.pixel_hashes == [facts[h].pixel_hash for h in "cac"]
    np.testing.assert_allclose(got.thumbs[1], facts["a"].thumb, atol=1 / 16)  # held in float16
    assert got.heights.tolist() == [40, 20, 40] and got.widths.tolist() == [40] * 3
    with pytest.raises(KeyError):
        cache.thumbnails(["a", "z"])


def test_clip_weights_out_of_reach_are_one_error_line(caplog: pytest.LogCaptureFixture) -> None:
    """open_clip logs its own error before raising: the user gets lookalike's one line, not both."""
    from lookalike.exceptions import ModelError
    from lookalike.models import get_embedder

    with caplog.at_level(logging.INFO), pytest.raises(ModelError) as err:
        get_embedder("clip:ViT-B-32", pretrained="no-such-tag")
    assert "\n" not in str(err.value) and "'no-such-tag' cannot be had here" in str(err.value)
    assert "efficientnet-lite0" in str(err.value)  # what to do instead
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_fiftyones_old_mongodb_notice_is_one_short_line_once(caplog: pytest.LogCaptureFixture) -> None:
    from lookalike import notices

    assert any(isinstance(f, notices._Once) for f in logging.getLogger("fiftyone.core.odm.database").filters)
    logger = logging.getLogger("test-notices")  # a fresh filter: FiftyOne's may have had its notice already
    logger.addFilter(notices._Once(notices.OLD_MONGODB, notices.OLD_MONGODB_LINE))
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for _ in range(2):
            logger.warning(notices.OLD_MONGODB + ". Please refer to ... You can suppress this exception by ...")
        logger.warning("another notice")
    assert [r.getMessage() for r in caplog.records] == [notices.OLD_MONGODB_LINE, "another notice"]
