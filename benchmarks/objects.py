"""Objects, not only images: patch search for a rare object, box label errors and double annotations, on detection
sets built from real images, through lookalike's real pipeline (COCO export -> FiftyOne's importer -> embed
--patches -> Qdrant), with the peers beside it.

    python benchmarks/objects.py                          (both sets, every figure)
    python benchmarks/objects.py --sets digits-on-photos --margins 0.1

Two sets that differ in objects and backgrounds (made once, cached in benchmarks/.cache/objects/):
- fashion-on-textile: Fashion-MNIST items (10 classes; distinct photos) pasted on the real textile images of
  PyPI conformal-clip-data, 40-80 px in 256 px scenes, 3-5 a scene; the rare object is "Bag" (~1.5% of boxes);
- digits-on-photos: scikit-learn's handwritten digits (10 classes, each a distinct drawing), coloured, pasted on
  crops of scikit-image's photos; the rare object is the digit 7 (~1.5% of boxes).
A quarter of the objects may overlap others up to an intersection over union of 0.45 (occlusion), the rest up to
0.1; 4% of the other boxes
are annotated twice (a copy shifted and scaled by up to 12%, its label the same or another class).

Figures (EfficientNet-Lite0, real ImageNet weights, 112 px; CPU named in the output):
- rare object: R-precision of patch search from each rare instance (``similar --patches``, k = R), whole-image
  search from its scene beside it (relevant: scenes with a rare object), per context margin;
- box mislabels at 5/10/20% flipped labels: lookalike's finder core vs cleanlab's two feature paths on the same
  exported patch vectors (benchmarks/mislabels.py's comparison);
- double annotations: pair precision and recall of ``duplicates --patches`` per IoU threshold, and FiftyOne's
  own recipe (``fiftyone.utils.iou.compute_max_ious``, classwise, max IoU > 0.75) beside it.
Writes benchmarks/results/objects.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import CACHE, cpu, fashion_mnist, textile_files, write_results

FIELD = "ground_truth_detections"
SETS = ("fashion-on-textile", "digits-on-photos")
SCENE = 256
RARE_SHARE = 0.015
DOUBLE_SHARE = 0.04
MAX_OVERLAP = 0.45  # distinct objects overlap up to this IoU (OCCLUDED of them; the others up to 0.1)
OCCLUDED = 0.25
FASHION = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle-boot")


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _sprites(name: str) -> tuple[list[np.ndarray], np.ndarray, list[str], str]:
    """Object images (grey, 0-255), their classes, the class names and the rare class."""
    if name == "fashion-on-textile":
        images, labels = fashion_mnist(20_000)
        return list(images), labels.astype(int), list(FASHION), "Bag"
    from sklearn.datasets import load_digits

    d = load_digits()
    return [(im * 255 / 16).astype(np.uint8) for im in d.images], d.target.astype(int), \
        [f"digit-{i}" for i in range(10)], "digit-7"


def _backgrounds(name: str, count: int, rng: np.random.Generator) -> list[Any]:
    from PIL import Image

    if name == "fashion-on-textile":
        files, _ = textile_files()
        return [Image.open(files[i]).convert("RGB").resize((SCENE, SCENE)) for i in rng.permutation(len(files))[:count]]
    import skimage.data as data

    photos = []
    for n in ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field", "immunohistochemistry",
              "retina", "colorwheel", "camera", "grass", "gravel", "brick", "moon", "coins", "horse"):
        a = getattr(data, n)()
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
        photos.append(Image.fromarray(np.asarray(a, np.uint8)))
    out = []
    for _ in range(count):
        photo = photos[int(rng.integers(len(photos)))]
        side = int(rng.integers(min(photo.size) // 2, min(photo.size) + 1))
        x, y = int(rng.integers(0, photo.size[0] - side + 1)), int(rng.integers(0, photo.size[1] - side + 1))
        out.append(photo.crop((x, y, x + side, y + side)).resize((SCENE, SCENE)))
    return out


def build(name: str, scenes: int, seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """The set's COCO export (made once) and its truth: per annotation, its class, whether it is a planted
    copy (of which annotation) ."""
    from PIL import Image

    root = CACHE / "objects" / f"{name}-{scenes}"
    truth_path = root / "truth.json"
    if truth_path.is_file():
        return root, json.loads(truth_path.read_text())
    rng = np.random.default_rng(seed)
    sprites, classes, names, rare = _sprites(name)
    rare_class = names.index(rare)
    pools = {c: list(rng.permutation(np.flatnonzero(classes == c))) for c in range(len(names))}
    backgrounds = _backgrounds(name, scenes, rng)
    (root / "data").mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    copies: dict[int, int] = {}
    common = [c for c in range(len(names)) if c != rare_class]
    for n, background in enumerate(backgrounds):
        scene = background.copy()
        placed: list[tuple[float, ...]] = []
        for _ in range(int(rng.integers(3, 6))):
            c = rare_class if rng.random() < RARE_SHARE else int(rng.choice(common))
            if not pools[c]:  # a class's distinct drawings used up (1,797 digits): another class's
                left = [k for k in common if pools[k]]
                if not left:
                    break
                c = int(rng.choice(left))
            drawn = pools[c].pop()
            sprite = sprites[drawn]
            side = int(rng.integers(40, 81))
            grey = Image.fromarray(sprite).resize((side, side), Image.Resampling.BICUBIC)
            alpha = np.asarray(grey, np.float32)
            if name == "digits-on-photos":  # a drawing in white ink, its strokes as they are
                mask = grey
                body = Image.new("RGB", (side, side), (250, 250, 250))
            else:  # the item's own grey levels inside its silhouette
                mask = Image.fromarray(np.clip(alpha * 3, 0, 255).astype(np.uint8))
                body = grey.convert("RGB")
            ys, xs = np.nonzero(alpha > 25)
            overlap = MAX_OVERLAP if rng.random() < OCCLUDED else 0.1
            for _try in range(50):
                x, y = int(rng.integers(0, SCENE - side)), int(rng.integers(0, SCENE - side))
                box = (float(x + xs.min()), float(y + ys.min()), float(xs.max() - xs.min() + 1),
                       float(ys.max() - ys.min() + 1))
                if all(_iou(box, p) <= overlap for p in placed):
                    break
            else:  # no room left in this scene: the drawing goes back
                pools[c].append(drawn)
                continue
            scene.paste(body, (x, y), mask)
            placed.append(box)
            annotations.append({"id": len(annotations) + 1, "image_id": n + 1, "category_id": c + 1,
                                "bbox": list(box), "area": box[2] * box[3], "iscrowd": 0,
                                "truth_id": len(annotations) + 1})
            if c != rare_class and rng.random() < DOUBLE_SHARE:  # annotated twice
                w, h = box[2] * rng.uniform(0.9, 1.1), box[3] * rng.uniform(0.9, 1.1)
                cx = box[0] + rng.uniform(-0.12, 0.12) * box[2]
                cy = box[1] + rng.uniform(-0.12, 0.12) * box[3]
                copy = [max(0.0, cx), max(0.0, cy), min(w, SCENE - max(0.0, cx)), min(h, SCENE - max(0.0, cy))]
                label = c if rng.random() < 0.6 else int(rng.choice([k for k in common if k != c]))
                copies[len(annotations) + 1] = annotations[-1]["id"]
                annotations.append({"id": len(annotations) + 1, "image_id": n + 1, "category_id": label + 1,
                                    "bbox": copy, "area": copy[2] * copy[3], "iscrowd": 0,
                                    "truth_id": len(annotations) + 1})
        file = f"{n:05d}.jpg"
        scene.save(root / "data" / file, quality=92)
        images.append({"id": n + 1, "file_name": file, "width": SCENE, "height": SCENE})
    (root / "labels.json").write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": i + 1, "name": label} for i, label in enumerate(names)]}))
    truth = {"rare": rare, "classes": names, "copies": {str(k): v for k, v in copies.items()},
             "boxes": len(annotations), "scenes": len(images)}
    truth_path.write_text(json.dumps(truth))
    return root, truth


def _annotation_ids(dataset: Any) -> dict[str, int]:
    """Label id -> the COCO annotation id (kept by FiftyOne's importer as the extra attribute ``truth_id``)."""
    ids, coco = dataset.values([f"{FIELD}.detections.id", f"{FIELD}.detections.truth_id"], unwind=True)
    return {i: int(c) for i, c in zip(ids, coco, strict=True)}


def rare_object(name: str, truth: dict[str, Any]) -> dict[str, float]:
    """R-precision of patch search from each rare box, and of whole-image search from its scene."""
    import lookalike
    from lookalike.datasets import box_table, get_dataset

    dataset = get_dataset(name)
    table = box_table(dataset, FIELD)
    rare = [i for i, label in zip(table["id"], table["label"], strict=True) if label == truth["rare"]]
    scenes_of = {i: s for i, s in zip(table["id"], table["sample_id"], strict=True)}
    rare_scenes = {scenes_of[i] for i in rare}
    patch, whole = [], []
    for q in rare:
        hits = lookalike.similar(name, sample=q, patches=FIELD, k=len(rare) - 1, save_view=False)
        patch.append(sum(h.label == truth["rare"] for h in hits) / (len(rare) - 1))
        relevant = rare_scenes - {scenes_of[q]}
        found = lookalike.similar(name, sample=scenes_of[q], k=len(relevant), save_view=False)
        whole.append(sum(h.id in relevant for h in found) / len(relevant))
    return {"instances": len(rare), "scenes_with_it": len(rare_scenes), "patch_r_precision": float(np.mean(patch)),
            "whole_image_r_precision": float(np.mean(whole))}


def uncropped_ceiling(name: str, truth: dict[str, Any], seed: int = 1) -> float:
    """R-precision of the same search on the same kind of objects as they come (whole, on black, no scene), as
    many as the set has boxes, the rare class as rare: what the model itself allows."""
    import torch
    from PIL import Image

    from lookalike.models import get_embedder

    sprites, classes, names, rare = _sprites(name)
    rng = np.random.default_rng(seed)
    rare_class = names.index(rare)
    count = max(2, round(RARE_SHARE * truth["boxes"]))
    n = min(truth["boxes"], count + int((classes != rare_class).sum()))
    rows = np.concatenate([rng.choice(np.flatnonzero(classes == rare_class), count, replace=False),
                           rng.choice(np.flatnonzero(classes != rare_class), n - count, replace=False)])
    model = get_embedder("efficientnet-lite0", image_size=112)
    v = np.concatenate([model.embed_images(torch.stack([model.preprocess(Image.fromarray(sprites[i]).convert("RGB"))
                                                        for i in rows[s:s + 64]])) for s in range(0, n, 64)])
    sims = v[:count] @ v.T
    sims[np.arange(count), np.arange(count)] = -np.inf
    top = np.argsort(-sims, axis=1)[:, :count - 1]
    return float((top < count).mean())


def box_mislabels(name: str, truth: dict[str, Any], noise_levels: list[float], k: int) -> dict[str, Any]:
    """lookalike vs cleanlab's two paths on the exported box vectors (planted double copies left out)."""
    import lookalike
    from lookalike.datasets import get_dataset
    from lookalike.graph import exact_knn
    from mislabels import compare

    dataset = get_dataset(name)
    ids, vectors = lookalike.embeddings(name, patches=FIELD)
    coco = _annotation_ids(dataset)
    label_of = dict(zip(*dataset.values([f"{FIELD}.detections.id", f"{FIELD}.detections.label"], unwind=True),
                        strict=True))
    keep = [r for r, i in enumerate(ids) if str(coco[i]) not in truth["copies"]]
    v = vectors[keep]
    labels = np.array([truth["classes"].index(label_of[ids[r]]) for r in keep])
    t = time.perf_counter()
    graph = exact_knn(v, k)
    graph_s = time.perf_counter() - t
    return {str(noise): compare(v, graph, labels, noise, 0, graph_s) for noise in noise_levels}


def double_annotations(name: str, truth: dict[str, Any], thresholds: list[float]) -> dict[str, Any]:
    """Pair precision/recall of lookalike's double annotations per IoU threshold and at the default through the
    finder; FiftyOne's recipe beside it."""
    import fiftyone.utils.iou as foui
    from fiftyone import ViewField as F

    import lookalike
    from lookalike.datasets import box_table, get_dataset
    from lookalike.dedup.boxes import DEFAULT_IOU, find_double_annotations

    dataset = get_dataset(name)
    coco = _annotation_ids(dataset)
    planted = {frozenset((copy, int(original))) for copy, original in
               ((int(c), o) for c, o in truth["copies"].items())}

    def score(pairs: set[frozenset[int]]) -> dict[str, float]:
        hit = len(pairs & planted)
        return {"precision": hit / max(1, len(pairs)), "recall": hit / len(planted), "pairs": len(pairs)}

    def pairs_of(groups: list[list[int]]) -> set[frozenset[int]]:
        return {frozenset((a, b)) for g in groups for i, a in enumerate(g) for b in g[i + 1:]}

    table = box_table(dataset, FIELD)
    boxes = np.array(table["box"])
    out: dict[str, Any] = {"planted_pairs": len(planted), "by_iou": {}}
    for t in thresholds:
        found = find_double_annotations(table["sample_id"], boxes, t)
        out["by_iou"][str(t)] = score(pairs_of([[coco[table["id"][r]] for r in g] for g in found.groups]))
    groups = lookalike.duplicates(name, patches=FIELD)
    out["lookalike_finder"] = {"iou": DEFAULT_IOU, **score(pairs_of([[coco[m.id] for m in g.members]
                                                                      for g in groups]))}
    foui.compute_max_ious(dataset, FIELD, iou_attr="max_iou", classwise=True)
    flagged = dataset.filter_labels(FIELD, F("max_iou") > 0.75)
    sample_boxes: dict[str, list[tuple[int, list[float]]]] = {}
    for sid, lids, bbs in zip(*flagged.values(["id", f"{FIELD}.detections.id", f"{FIELD}.detections.bounding_box"]),
                              strict=True):
        sample_boxes[sid] = [(coco[i], b) for i, b in zip(lids, bbs, strict=True)]
    recipe = set()
    for items in sample_boxes.values():  # flagged boxes paired with their best-overlapping flagged box
        for i, (a, box_a) in enumerate(items):
            others = [(_iou(tuple(box_a), tuple(box_b)), b) for j, (b, box_b) in enumerate(items) if j != i]
            if others:
                recipe.add(frozenset((a, max(others)[1])))
    out["fiftyone_recipe_classwise_0.75"] = score(recipe)
    return out


def with_detector(name: str, truth: dict[str, Any], noise: float = 0.1, seed: int = 0) -> dict[str, Any]:
    """Box mislabels and missing labels with a detector's predictions, synthesised from the true boxes: 10% of
    the labels flipped and 3% of the objects left unlabelled in the dataset; the detector sees every object
    but misses 10%, shifts each box by up to 5%, names the right class 85% of the time (confidence 0.6-1, else
    0.3-0.8), and adds false boxes (3%, confidence 0.1-0.7). Image-level precision/recall of "has a label
    issue" beside cleanlab.object_detection (its unit is the image), box-level for lookalike."""
    import fiftyone as fo
    from cleanlab.object_detection.filter import find_label_issues

    import lookalike
    from lookalike.datasets import get_dataset

    rng = np.random.default_rng(seed)
    dataset = get_dataset(name)
    classes = truth["classes"]
    coco = _annotation_ids(dataset)
    flipped: set[str] = set()
    unlabelled: set[str] = set()
    images_with_issue: set[str] = set()
    for sample in dataset.iter_samples(autosave=True, progress=False):
        kept, preds = [], []
        for d in sample[FIELD].detections if sample[FIELD] is not None else []:
            if str(coco[d.id]) in truth["copies"]:  # planted double annotations: left as they are
                kept.append(d)
                continue
            true_label = d.label
            if rng.random() < 0.03:
                unlabelled.add(d.id)
                images_with_issue.add(sample.id)
            else:
                if rng.random() < noise:
                    d.label = classes[(classes.index(d.label) + int(rng.integers(1, len(classes)))) % len(classes)]
                    flipped.add(d.id)
                    images_with_issue.add(sample.id)
                kept.append(d)
            if rng.random() < 0.10:
                continue  # the detector misses it
            right = rng.random() < 0.85
            label = true_label if right else classes[int(rng.integers(len(classes)))]
            x, y, w, h = d.bounding_box
            box = [x + rng.uniform(-0.05, 0.05) * w, y + rng.uniform(-0.05, 0.05) * h, w, h]
            preds.append(fo.Detection(label=label, bounding_box=box, confidence=float(
                rng.uniform(0.6, 1.0) if right else rng.uniform(0.3, 0.8)), truth_id=d.id))
        if rng.random() < 0.03 * 4:
            preds.append(fo.Detection(label=classes[int(rng.integers(len(classes)))], confidence=float(
                rng.uniform(0.1, 0.7)), bounding_box=[float(v) for v in (*rng.uniform(0, 0.7, 2), 0.2, 0.2)]))
        if sample[FIELD] is not None:
            sample[FIELD].detections = kept
        sample["predictions"] = fo.Detections(detections=preds)
    lookalike.embed(name, "efficientnet-lite0", image_size=112, patches=FIELD)  # the unlabelled boxes leave the run
    out: dict[str, Any] = {"flipped": len(flipped), "unlabelled": len(unlabelled),
                           "images_with_issue": len(images_with_issue)}

    def prf(found: set[str], real: set[str]) -> dict[str, float]:
        hit = len(found & real)
        p, r = hit / max(1, len(found)), hit / max(1, len(real))
        return {"precision": p, "recall": r, "f1": 2 * p * r / max(1e-12, p + r)}

    alone = {s.id for s in lookalike.mislabels(name, patches=FIELD) if s.flagged}
    both = lookalike.mislabels(name, patches=FIELD, prediction_field="predictions")
    flagged = {s.id for s in both if s.flagged}
    dataset.reload()
    tagged = dataset.select_labels(tags="missing-label", fields="predictions")
    missing_truth = dict(zip(*tagged.values(["predictions.detections.id", "predictions.detections.truth_id"],
                                            unwind=True), strict=True))
    out["box_mislabels_without_detector"] = prf(alone, flipped)
    out["box_mislabels_with_detector"] = prf(flagged, flipped)
    # A tagged prediction is right where it was made from an object left unlabelled.
    out["missing_labels"] = prf({t if t in unlabelled else f"false:{i}" for i, t in missing_truth.items()},
                                unlabelled)
    box_sample = {lid: sid for sid, lids in zip(*dataset.values(["id", f"{FIELD}.detections.id"]), strict=True)
                  for lid in lids or []}
    ours = {box_sample[i] for i in flagged if i in box_sample} | set(tagged.values("id"))
    out["images_lookalike"] = prf(ours, images_with_issue)
    ids = dataset.values("id")
    labels, predictions = [], []
    for boxes, names, pboxes, pnames, confs in zip(*dataset.values(
            [f"{FIELD}.detections.bounding_box", f"{FIELD}.detections.label", "predictions.detections.bounding_box",
             "predictions.detections.label", "predictions.detections.confidence"]), strict=True):
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes or []], dtype=np.float32).reshape(-1, 4) * SCENE
        labels.append({"bboxes": xyxy, "labels": np.array([classes.index(n) for n in names or []], dtype=int)})
        per_class = [np.zeros((0, 5), np.float32) for _ in classes]
        for (x, y, w, h), n, c in zip(pboxes or [], pnames or [], confs or [], strict=True):
            k = classes.index(n)
            per_class[k] = np.vstack([per_class[k], np.array([[x, y, x + w, y + h, 0]], np.float32) * SCENE
                                      + np.array([0, 0, 0, 0, c], np.float32)])
        predictions.append(per_class)
    issues = find_label_issues(labels, predictions)
    out["images_cleanlab"] = prf({ids[i] for i in np.flatnonzero(issues)}, images_with_issue)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    p.add_argument("--scenes", type=int, default=500)
    p.add_argument("--margins", nargs="+", type=float, default=[0.0, 0.1, 0.25])
    p.add_argument("--noise", nargs="+", type=float, default=[0.05, 0.1, 0.2])
    p.add_argument("--iou", nargs="+", type=float, default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    p.add_argument("--workdir", default=None, help="FiftyOne database and lookalike store (default: a temporary one)")
    args = p.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lookalike-objects-"))
    os.environ.update({"HOME": str(work / "home"), "LOOKALIKE_HOME": str(work / "lookalike"),
                       "FIFTYONE_DATABASE_VALIDATION": "false", "FIFTYONE_DO_NOT_TRACK": "true"})
    from lookalike.database import start_private_database

    start_private_database(work / "db")
    import fiftyone as fo

    import lookalike
    from lookalike.config import load_config
    from lookalike.label_issues import DEFAULT_K

    print(f"CPU: {cpu()}; EfficientNet-Lite0 at 112 px, fp32")
    results: dict[str, Any] = {"cpu": cpu(), "sets": {}}
    for name in args.sets:
        root, truth = build(name, args.scenes)
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
        lookalike.load(root, name=name, format="coco")
        t = time.perf_counter()
        lookalike.embed(name, "efficientnet-lite0", image_size=112)
        whole_s = time.perf_counter() - t
        figures: dict[str, Any] = {"boxes": truth["boxes"], "scenes": truth["scenes"], "rare": truth["rare"],
                                   "whole_image_embed_s": whole_s, "margins": {}}
        print(f"\n{name}: {truth['scenes']} scenes, {truth['boxes']} boxes, rare object {truth['rare']!r}; "
              f"whole images embedded in {whole_s:.1f} s")
        for margin in args.margins:
            config = load_config(overrides={"embed": {"margin": margin, "image_size": 112}})
            t = time.perf_counter()
            s = lookalike.embed(name, "efficientnet-lite0", image_size=112, patches=FIELD, config=config)
            seconds = time.perf_counter() - t
            rare = rare_object(name, truth)
            figures["margins"][str(margin)] = {"embed_s": seconds, "boxes_per_s": s.computed / seconds, **rare}
            print(f"  margin {margin:<5} {s.computed} boxes embedded in {seconds:.1f} s ({s.computed / seconds:.0f}/s);"
                  f" rare object ({rare['instances']} instances in {rare['scenes_with_it']} scenes): R-precision "
                  f"patch search {rare['patch_r_precision']:.3f}, whole-image search "
                  f"{rare['whole_image_r_precision']:.3f}")
        figures["uncropped_ceiling_r_precision"] = ceiling = uncropped_ceiling(name, truth)
        print(f"  the model's own limit: the same kind of objects whole on black, {truth['rare']!r} as rare: "
              f"R-precision {ceiling:.3f}")
        default = load_config().embed.margin
        if str(default) in figures["margins"] and args.margins[-1] != default:  # the rest at the default margin
            lookalike.embed(name, "efficientnet-lite0", image_size=112, patches=FIELD)
        figures["mislabels"] = box_mislabels(name, truth, args.noise, DEFAULT_K)
        print(f"  box mislabels (margin {default}), F1: lookalike / cleanlab kNN path / cleanlab probe path")
        for noise, rows in figures["mislabels"].items():
            f1 = [rows[m]["f1"] for m in ("lookalike (default)", "cleanlab, kNN path", "cleanlab, probe path")]
            print(f"    {float(noise):>4.0%} flipped: " + " / ".join(f"{v:.3f}" for v in f1)
                  + f"  (lookalike minus the better: {f1[0] - max(f1[1:]):+.3f})")
        figures["double_annotations"] = d = double_annotations(name, truth, args.iou)
        print(f"  double annotations ({d['planted_pairs']} planted pairs; distinct objects overlap up to IoU "
              f"{MAX_OVERLAP}): precision / recall")
        for t_iou, r in d["by_iou"].items():
            print(f"    IoU >= {t_iou}: {r['precision']:.3f} / {r['recall']:.3f}")
        f, r = d["lookalike_finder"], d["fiftyone_recipe_classwise_0.75"]
        print(f"    lookalike duplicates --patches (IoU {f['iou']}): {f['precision']:.3f} / {f['recall']:.3f}; "
              f"FiftyOne's recipe (classwise max IoU > 0.75): {r['precision']:.3f} / {r['recall']:.3f}")
        figures["with_detector"] = w = with_detector(name, truth)
        print(f"  with a detector's boxes ({w['flipped']} labels flipped, {w['unlabelled']} objects unlabelled, "
              f"{w['images_with_issue']} images with an issue): P / R / F1")
        for key, label in (("box_mislabels_without_detector", "box mislabels, neighbours + probe"),
                           ("box_mislabels_with_detector", "box mislabels, + the detector"),
                           ("missing_labels", "objects nobody labelled (missing-label)"),
                           ("images_lookalike", "images with an issue: lookalike"),
                           ("images_cleanlab", "images with an issue: cleanlab.object_detection")):
            r = w[key]
            print(f"    {label:<48} {r['precision']:.3f} / {r['recall']:.3f} / {r['f1']:.3f}")
        results["sets"][name] = figures
    write_results("objects", results)


if __name__ == "__main__":
    main()
