from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import heavy_crop
from lookalike.dedup import connected_groups, find_duplicates, keep_plan
from lookalike.thumbnails import image_facts


def test_union_find_groups() -> None:
    assert connected_groups(7, [(0, 3), (3, 5), (1, 2)]) == [[0, 3, 5], [1, 2]]
    assert connected_groups(3, []) == []


def test_keep_policies() -> None:
    sizes, splits = [100, 400, 400], ["test", "val", "train"]
    assert keep_plan([0, 1, 2], sizes, splits, "largest") == 1
    assert keep_plan([0, 1, 2], sizes, splits, "train") == 2
    assert keep_plan([0, 1, 2], sizes, splits, "first") == 0
    with pytest.raises(ValueError, match="keep policy"):
        keep_plan([0, 1], sizes, splits, "newest")


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_real_photos_exact_near_distinct_and_leaks() -> None:
    from skimage import data

    cat, coffee, rocket, astronaut = (Image.fromarray(a) for a in (data.chelsea(), data.coffee(), data.rocket(),
                                                                    data.astronaut()))
    w, h = cat.size
    near = _jpeg(cat.crop((w // 20, h // 20, w - w // 20, h - h // 20)).resize((w // 2, h // 2)), 40)
    images = [cat, coffee, rocket, astronaut, near, coffee.copy()]  # 4: near copy of 0; 5: same pixels as 1
    hashes = ["a", "b", "c", "d", "e", "f"]  # different files
    splits = ["train", "train", "train", "train", "test", "train"]
    groups, verified = find_duplicates([image_facts(im) for im in images], hashes, splits, policy="largest")
    scores = verified.best()
    by_members = {tuple(g.members): g for g in groups}
    assert set(by_members) == {(0, 4), (1, 5)}
    cat_group, coffee_group = by_members[(0, 4)], by_members[(1, 5)]
    assert cat_group.kind == "near" and cat_group.keep == 0 and cat_group.leak and cat_group.splits == ["test", "train"]
    assert coffee_group.kind == "exact" and not coffee_group.leak
    assert scores[(0, 4)] >= 0.9
    assert all(s < 0.9 for (i, j), s in scores.items() if {i, j} not in ({0, 4}, {1, 5}))


def test_flipped_copy_is_found() -> None:
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).resize((256, 256))
    other = Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).resize((256, 256))
    images = [base, other, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    groups, _ = find_duplicates([image_facts(im) for im in images], ["a", "b", "c"], [None] * 3)
    assert [g.members for g in groups] == [[0, 2]]


def _with_noise(base: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """``base`` plus independent noise scaled so the two correlate at ``target``."""
    noise = rng.normal(0, 1, base.shape)
    b = (base - base.mean()) / base.std()
    n = (noise - noise.mean()) / noise.std()
    n -= (n * b).mean() * b  # orthogonal to base
    n /= n.std()
    return b * target + n * np.sqrt(1 - target**2)


def test_threshold_separates_a_copy_just_above_from_an_image_just_below() -> None:
    from lookalike.dedup.alignment import CENTRE
    from lookalike.thumbnails import THUMB, ImageFacts

    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, (THUMB, THUMB))
    centre = base[CENTRE, CENTRE]
    above, below = (base.copy() for _ in range(2))
    above[CENTRE, CENTRE] = _with_noise(centre, 0.93, rng)
    below[CENTRE, CENTRE] = _with_noise(centre, 0.87, rng)
    facts = [ImageFacts(str(i), t.astype(np.float32), THUMB, THUMB) for i, t in enumerate((base, above, below))]
    groups, verified = find_duplicates(facts, ["a", "b", "c"], [None] * 3, threshold=0.9)
    scores = verified.best()
    assert scores[(0, 1)] == pytest.approx(0.93, abs=0.01)
    assert scores[(0, 2)] == pytest.approx(0.87, abs=0.01)
    assert [g.members for g in groups] == [[0, 1]]


def test_a_copy_stands_out_of_a_crowd_of_look_alikes() -> None:
    from lookalike.dedup.alignment import CENTRE
    from lookalike.thumbnails import THUMB, ImageFacts

    rng = np.random.default_rng(5)
    base = rng.normal(0, 1, (THUMB, THUMB))
    thumbs = [base]
    for target in (0.96, 0.96, 0.96, 0.96, 0.99):  # four look-alikes above the threshold, then a copy
        t = base.copy()
        t[CENTRE, CENTRE] = _with_noise(base[CENTRE, CENTRE], target, rng)
        thumbs.append(t)
    facts = [ImageFacts(str(i), t.astype(np.float32), THUMB, THUMB) for i, t in enumerate(thumbs)]
    groups, verified = find_duplicates(facts, list("abcdef"), [None] * 6, threshold=0.9)
    scores = verified.best()
    assert min(scores[(0, i)] for i in range(1, 5)) > 0.95
    assert [g.members for g in groups] == [[0, 5]]


def test_approximate_pixel_search_finds_the_same_copies() -> None:
    rng = np.random.default_rng(7)
    images = [Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).resize((128, 128)) for _ in range(150)]
    images += [images[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT), _jpeg(images[1], 40)]
    facts = [image_facts(im) for im in images]
    hashes = [str(i) for i in range(len(images))]
    exact, _ = find_duplicates(facts, hashes, [None] * len(images))
    approximate, _ = find_duplicates(facts, hashes, [None] * len(images), exact_max=0)  # approximate beyond 0
    assert [g.members for g in approximate] == [g.members for g in exact] == [[0, 150], [1, 151]]


def test_tiny_image_cropped_by_a_pixel_a_side_is_found() -> None:
    """A 28-px photo cropped by one pixel a side and resized back is a 7.7% zoom, between the 5% steps once
    tried (scores 0.948 and 0.943 for these two); distinct 28-px photos stay apart."""
    from skimage import data

    def tiny(a: np.ndarray) -> Image.Image:
        a = (a * 255).astype(np.uint8) if a.dtype == bool else a
        return Image.fromarray(a).convert("L").resize((28, 28), Image.Resampling.BOX)

    photos = [tiny(getattr(data, name)()) for name in ("camera", "astronaut", "coffee", "chelsea", "rocket", "moon",
                                                       "page", "text", "horse", "clock", "coins")]
    moon, text = 5, 7
    crops = [photos[i].crop((1, 1, 27, 27)).resize((28, 28), Image.Resampling.BICUBIC) for i in (moon, text)]
    images = photos + crops
    groups, _ = find_duplicates([image_facts(im) for im in images], [str(i) for i in range(len(images))],
                                [None] * len(images))
    assert [g.members for g in groups] == [[moon, 11], [text, 12]]


def test_heavy_crop_and_rotation_are_found_by_keypoints(lookalike_log: pytest.LogCaptureFixture) -> None:
    """Only keypoint matching finds these two copies; distinct photos among each image's three nearest
    neighbours stay apart, and an image that cannot be opened drops out with a warning."""
    from skimage import data

    from lookalike.graph import KnnGraph

    photos = [Image.fromarray(a).convert("RGB") for a in (data.astronaut(), data.coffee(), data.rocket(),
                                                          data.camera(), data.coins(), data.chelsea())]
    images = [*photos, heavy_crop(photos[0]), photos[1].rotate(20, Image.Resampling.BICUBIC)]
    n = len(images)
    # Every image's neighbours: the others in turn, the copies' sources first, all below the candidate cosine
    # (only the keypoint stage looks at them).
    order = [[6, 7] + [j for j in range(n) if j not in (i, 6, 7)] if i not in (6, 7) else
             [i - 6] + [j for j in range(n) if j not in (i, i - 6)] for i in range(n)]
    graph = KnnGraph(indices=np.array(order), sims=np.full((n, n - 1), 0.5, np.float32))
    facts = [image_facts(im) for im in images]
    hashes = [str(i) for i in range(n)]

    without, _ = find_duplicates(facts, hashes, [None] * n, graph=graph)
    assert without == []
    groups, verified = find_duplicates(facts, hashes, [None] * n, graph=graph, open_image=images.__getitem__)
    scores = verified.best()
    assert [g.members for g in groups] == [[0, 6], [1, 7]]
    assert scores[(0, 6)] >= 0.95 and scores[(1, 7)] >= 0.95
    assert max(s for (i, j), s in scores.items() if (i, j) not in ((0, 6), (1, 7))) < 0.8

    def open_image(i: int) -> Image.Image:
        if i == 1:
            raise OSError("truncated file")
        return images[i]

    groups, _ = find_duplicates(facts, hashes, [None] * n, graph=graph, open_image=open_image)
    assert [g.members for g in groups] == [[0, 6]]
    assert "truncated file" in lookalike_log.text


def test_an_update_verifies_only_pairs_with_new_images(tmp_path: Path) -> None:
    """An earlier run's verified pairs are reused: adding a copy matches keypoints only around it, and the
    groups are those of a run from scratch."""
    from skimage import data

    from lookalike.dedup import DEFAULT_CANDIDATE_COSINE, Verified
    from lookalike.graph import KnnGraph

    photos = [Image.fromarray(a).convert("RGB") for a in (data.astronaut(), data.coffee(), data.rocket(),
                                                          data.camera(), data.coins(), data.chelsea())]
    images = [*photos, heavy_crop(photos[0]), photos[1].rotate(20, Image.Resampling.BICUBIC)]
    twin = {0: 6, 6: 0, 1: 7, 7: 1}

    def graph_of(m: int) -> KnnGraph:  # the others in turn, an image's copy (if there) first
        order = [[twin.get(i, 0)] * (twin.get(i, m) < m) + [j for j in range(m) if j not in (i, twin.get(i, -1))]
                 for i in range(m)]
        return KnnGraph(indices=np.array(order), sims=np.full((m, m - 1), 0.5, np.float32))

    facts = [image_facts(im) for im in images]
    hashes = [str(i) for i in range(len(images))]
    first, verified = find_duplicates(facts[:7], hashes[:7], [None] * 7, graph=graph_of(7),
                                      open_image=images.__getitem__)
    assert [g.members for g in first] == [[0, 6]]
    verified.save(tmp_path / "pairs.npz", hashes[:7], DEFAULT_CANDIDATE_COSINE, True)
    earlier = Verified.load(tmp_path / "pairs.npz", hashes, DEFAULT_CANDIDATE_COSINE, True)
    assert earlier is not None and earlier.covered is not None and earlier.covered.tolist() == [True] * 7 + [False]
    assert Verified.load(tmp_path / "pairs.npz", hashes, 0.5, True) is None  # other settings: from scratch
    with np.load(tmp_path / "pairs.npz") as f:  # a record from before the crop search: from scratch too
        np.savez(tmp_path / "old.npz", **{k: f[k] for k in f.files if k != "searches"})
    assert Verified.load(tmp_path / "old.npz", hashes, DEFAULT_CANDIDATE_COSINE, True) is None
    with_copy = Verified.load(tmp_path / "pairs.npz", [*hashes, "3"], DEFAULT_CANDIDATE_COSINE, True)
    assert with_copy is not None and with_copy.covered is not None and with_copy.covered[-1]  # a byte copy of 3

    opened: list[int] = []

    def open_image(i: int) -> Image.Image:
        opened.append(i)
        return images[i]

    groups, _ = find_duplicates(facts, hashes, [None] * 8, graph=graph_of(8), open_image=open_image, earlier=earlier)
    scratch, _ = find_duplicates(facts, hashes, [None] * 8, graph=graph_of(8), open_image=images.__getitem__)
    assert [g.members for g in groups] == [g.members for g in scratch] == [[0, 6], [1, 7]]
    assert 7 in opened and not {3, 4, 5, 6} & set(opened)  # only the new image and its neighbours


def test_blank_images_are_no_copies_of_anything() -> None:
    """Against a blank window a correlation is undefined; rounding once scored blank images far above 1."""
    from skimage import data

    photos = [Image.fromarray(a).convert("L").resize((128, 128)) for a in (data.camera(), data.coins(), data.moon(),
                                                                          data.astronaut(), data.coffee())]
    blanks = [Image.new("L", (128, 128), level) for level in (0, 40, 255)]
    images = photos + blanks
    groups, verified = find_duplicates([image_facts(im) for im in images], [str(i) for i in range(len(images))],
                                       [None] * len(images))
    scores = verified.best()
    assert groups == []
    assert any(j >= len(photos) for _, j in scores)  # blanks were candidates, and were turned down
    assert max(scores.values()) <= 1.0


def test_a_group_of_five_copies_is_found_whole_by_keypoints() -> None:
    """Five copies of one photo are each other's crowd of look-alikes, so thumbnails alone find only part of
    the group; keypoints, which distinct look-alikes do not share, join the rest."""
    from skimage import data

    from lookalike.graph import KnnGraph

    arrays = (data.astronaut(), data.coffee(), data.rocket(), data.camera(), data.coins())
    photos = [Image.fromarray(a).convert("RGB").resize((120, 120)) for a in arrays]
    source, (w, h) = photos[0], photos[0].size
    shift = (1, 0, 2, 0, 1, -2)
    copies = [_jpeg(source, 30).convert("RGB"), source.transform(source.size, Image.Transform.AFFINE, shift),
              source.crop((w // 20, h // 20, w - w // 20, h - h // 20)).resize((w, h)),
              _jpeg(source, 50).convert("RGB").transform(source.size, Image.Transform.AFFINE, (1, 0, -1, 0, 1, 1))]
    images = photos + copies
    n, family = len(images), [0, 5, 6, 7, 8]
    # The copies are each other's nearest embedding neighbours, as a model would have them.
    order = [[j for j in family if j != i] + [j for j in range(n) if j not in family] if i in family
             else [j for j in range(n) if j != i] for i in range(n)]
    sims = np.array([[0.9 if i in family and j in family else 0.5 for j in row] for i, row in enumerate(order)])
    graph = KnnGraph(indices=np.array(order), sims=sims.astype(np.float32))
    facts, hashes = [image_facts(im) for im in images], [str(i) for i in range(n)]

    by_thumbnails, _ = find_duplicates(facts, hashes, [None] * n, graph=graph)
    assert len(by_thumbnails) == 1 and set(by_thumbnails[0].members) < set(family)
    groups, _ = find_duplicates(facts, hashes, [None] * n, graph=graph, open_image=images.__getitem__)
    assert [g.members for g in groups] == [family]


def _re_crop(image: Image.Image, keep: float, x: float, y: float) -> Image.Image:
    """``keep`` of each side, from (x, y) of the room left, resized back: a re-crop of one photo."""
    w, h = image.size
    cw, ch = round(w * keep), round(h * keep)
    left, top = round(x * (w - cw)), round(y * (h - ch))
    return image.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BICUBIC)


def test_re_crops_of_textures_are_found_and_look_alike_textures_left_alone() -> None:
    """Textures cropped by 20-25% a side, off-centre, resized back and re-encoded: no embedding graph and no
    thumbnail alignment finds them; the crop search does. Other patches of the same textures (look-alikes)
    and the images too small for a crop search stay apart."""
    from skimage import data

    from lookalike.dedup.alignment import verify

    patches = []
    for name in ("grass", "gravel", "brick"):
        photo = Image.fromarray(getattr(data, name)()).convert("RGB")
        w, h = photo.size
        patches += [photo.crop((0, 0, w // 2, h // 2)).resize((192, 192)),
                    photo.crop((w // 2, h // 2, w, h)).resize((192, 192))]  # a distinct look-alike of the first
    crops = [_jpeg(_re_crop(patches[0], 0.75, 0.9, 0.2), 80), _jpeg(_re_crop(patches[4], 0.8, 0.1, 1.0), 80)]
    tiny = [p.resize((28, 28), Image.Resampling.BOX) for p in (patches[2], crops[1])]
    images = patches + crops + tiny
    facts = [image_facts(im) for im in images]
    groups, verified = find_duplicates(facts, [str(i) for i in range(len(images))], [None] * len(images))
    assert [g.members for g in groups] == [[0, 6], [4, 7]]
    scores = verified.best()
    assert scores[(0, 6)] >= 0.95 and scores[(4, 7)] >= 0.95
    thumbs = np.stack([f.thumb for f in facts])
    assert verify(thumbs, np.array([[0, 6], [4, 7]])).max() < 0.9  # thumbnail alignment alone misses them
    assert max(s for p, s in scores.items() if p not in ((0, 6), (4, 7))) < 0.9


def test_crop_search_approximate_and_update_find_the_exact_searchs_pairs() -> None:
    from skimage import data

    from lookalike.dedup.crops import crop_pairs

    rng = np.random.default_rng(11)
    images = [Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).resize((96, 96)) for _ in range(120)]
    images += [Image.fromarray(data.camera()).resize((96, 96))]
    images += [_re_crop(images[3], 0.78, 0.0, 1.0), _re_crop(images[120], 0.85, 0.5, 0.5)]  # 121, 122
    thumbs = np.stack([image_facts(im).thumb for im in images]).astype(np.float16)
    rows = np.arange(len(images))
    exact = {tuple(p) for p in crop_pairs(thumbs, rows).tolist()}
    assert {(121, 3), (122, 120)} <= exact
    assert {tuple(p) for p in crop_pairs(thumbs, rows, exact_max=0).tolist()} >= {(121, 3), (122, 120)}
    # an update: the pairs with new rows 3 and 122, as crops or as sources
    assert {tuple(p) for p in crop_pairs(thumbs, rows, queries=np.array([3, 122])).tolist()} == {
        p for p in exact if {3, 122} & set(p)}
