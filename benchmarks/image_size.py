"""How large must EfficientNet-Lite0's input be? kNN accuracy and speed by input size on Fashion-MNIST.

    python benchmarks/image_size.py --train 3000 --test 1000

Embeds the same real images (28 px originals, upscaled by lookalike's preprocessing) at each size and
prints 10-NN majority-vote accuracy (test against train) and end-to-end embedding rate. It is how the
demo's ``image_size: 112`` was chosen.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import fashion_mnist


def knn_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
                 k: int = 10) -> float:
    nearest = np.argsort(-(test @ train.T), axis=1)[:, :k]
    votes = train_labels[nearest]
    predicted = np.array([np.bincount(row, minlength=10).argmax() for row in votes])
    return float((predicted == test_labels).mean())


def main() -> None:
    import torch
    from PIL import Image

    from lookalike.models import get_embedder

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 112, 160, 224])
    args = p.parse_args()
    images, labels = fashion_mnist(70_000)
    rng = np.random.default_rng(0)
    train_idx = rng.choice(60_000, args.train, replace=False)
    test_idx = 60_000 + rng.choice(10_000, args.test, replace=False)
    chosen = np.concatenate([train_idx, test_idx])
    print(f"{'size':>5} {'10-NN acc':>9} {'img/s':>7}")
    for size in args.sizes:
        model = get_embedder("efficientnet-lite0", image_size=size)
        t = time.perf_counter()
        vectors = np.concatenate([
            model.embed_images(torch.stack([model.preprocess(Image.fromarray(im)) for im in images[chosen[s:s + 64]]]))
            for s in range(0, len(chosen), 64)
        ])
        rate = len(chosen) / (time.perf_counter() - t)
        acc = knn_accuracy(vectors[:args.train], labels[train_idx], vectors[args.train:], labels[test_idx])
        print(f"{size:>5} {acc:>9.3f} {rate:>7.1f}")


if __name__ == "__main__":
    main()
