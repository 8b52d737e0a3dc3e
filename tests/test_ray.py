"""The Ray engine on a local Ray cluster started here: what it computes equals the local engine's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import vectors_by_file, write_blobs
from lookalike.config import load_config

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from lookalike.engines import RayEngine

    yield RayEngine()  # a local cluster: ray.init with this machine's CPUs
    ray.shutdown()


def _config(name: str) -> Any:
    return load_config(overrides={"engine": {"name": name}, "embed": {"batch_size": 8, "image_size": 64}})


def test_an_unreachable_cluster_is_named() -> None:
    import subprocess
    import sys

    code = ("from lookalike.engines import RayEngine\n"
            "try:\n    RayEngine('127.0.0.1:9')\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("LookalikeError cannot reach the Ray cluster at 127.0.0.1:9"), out


def test_the_graph_on_ray_equals_the_local_graph(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import tqdm

    from lookalike.graph import approximate_knn, exact_knn

    bars: list[list[Any]] = []  # [label, tasks counted, total]

    class Bar(tqdm.tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            bars.append([kwargs["desc"], 0, kwargs["total"]])
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            bars[-1][1] += n
            return super().update(n)

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3000, 48)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    local, distributed = exact_knn(v, 10), exact_knn(v, 10, engine=engine)
    parts = 2 * engine.parallelism
    assert bars == [["ray: exact rows", parts, parts]]  # the tasks counted as they finish
    assert np.array_equal(local.indices, distributed.indices)
    np.testing.assert_allclose(local.sims, distributed.sims, atol=1e-6)
    # The approximate graph: the clusters made here, their searches as tasks.
    local, distributed = approximate_knn(v, 10), approximate_knn(v, 10, engine=engine)
    assert np.array_equal(local.indices, distributed.indices) and (local.indices >= 0).all()
    np.testing.assert_allclose(local.sims, distributed.sims, atol=1e-6)


def test_embedding_graph_and_duplicates_on_ray_equal_the_local_run(
        engine: Any, tmp_path: Path, dataset_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    import lookalike
    import lookalike.dedup
    from lookalike.demo import FASHION_MNIST_DIR, write_fashion_mnist

    if FASHION_MNIST_DIR.is_dir():
        root = write_fashion_mnist(tmp_path / "shop", {"train": 48, "test": 16})
    else:  # the same checks on made images
        root = tmp_path / "shop"
        write_blobs(root / "train" / "red", "red", 24, 1)
        write_blobs(root / "test" / "blue", "blue", 16, 2)
    first = sorted((root / "train").rglob("*.png"))[:3]
    for i, source in enumerate(first):  # planted copies: leaks
        (root / "test" / source.parent.name).mkdir(parents=True, exist_ok=True)
        Image.open(source).point(lambda v: min(255, round(v * 1.04))).save(
            root / "test" / source.parent.name / f"copy-{i}.png")
    lookalike.load(root, name=dataset_name)
    local_name = dataset_name + "-local"
    lookalike.load(root, name=local_name)
    try:
        lookalike.embed(local_name, "efficientnet-lite0", config=_config("local"))
        lookalike.embed(dataset_name, "efficientnet-lite0", config=_config("ray"), rebuild=True)
        ray_vectors, local_vectors = vectors_by_file(dataset_name), vectors_by_file(local_name)
        assert ray_vectors.keys() == local_vectors.keys()
        assert min(float(v @ local_vectors[f]) for f, v in ray_vectors.items()) >= 0.999

        monkeypatch.setattr(lookalike.dedup, "PAIR_BATCH", 5)  # several verification tasks, even here
        on_ray = lookalike.duplicates(dataset_name, config=_config("ray"), keypoints=False)
        local = lookalike.duplicates(local_name, config=_config("local"), keypoints=False)

        def groups(found: Any) -> set[frozenset[str]]:
            return {frozenset(Path(m.filepath).name for m in g.members) for g in found}

        assert groups(on_ray) == groups(local)
        assert all(any(f"copy-{i}.png" in g for g in groups(local)) for i in range(3))  # the planted ones
        _, graph = lookalike.knn_graph(dataset_name, config=_config("ray"))
        _, local_graph = lookalike.knn_graph(local_name, config=_config("local"))
        assert graph.k == local_graph.k
    finally:
        import fiftyone as fo

        fo.delete_dataset(local_name)


def test_an_interrupted_ray_embedding_resumes(engine: Any, tmp_path: Path, dataset_name: str) -> None:
    import lookalike

    write_blobs(tmp_path / "tree" / "red", "red", 40, 5)
    lookalike.load(tmp_path / "tree", name=dataset_name)
    seen: list[int] = []

    def stop_after_two_batches(done: int, total: int) -> None:
        seen.append(done)
        if done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lookalike.embed(dataset_name, "efficientnet-lite0", config=_config("ray"), progress=stop_after_two_batches)
    finished = seen[-1]
    summary = lookalike.embed(dataset_name, "efficientnet-lite0", config=_config("ray"))
    assert summary.embedded == 40 and summary.cached == finished and summary.computed == 40 - finished


def test_boxes_embedded_on_ray_equal_the_local_run(engine: Any, tmp_path: Path, dataset_name: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A patch run on Ray: each image decoded once in a task, its boxes cropped there, the same vectors."""
    import fiftyone as fo

    import lookalike
    from conftest import write_coco_scenes

    scenes = [[("ball", (4 + n, 6, 24, 24)), ("cup", (50, 40 + n, 20, 30))] for n in range(10)]
    root = write_coco_scenes(tmp_path / "coco", scenes)
    lookalike.load(root, name=dataset_name, format="coco")
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "ray-home"))  # nothing cached from a local run
    on_ray = lookalike.embed(dataset_name, "efficientnet-lite0", patches="ground_truth_detections",
                             config=_config("ray"))
    assert (on_ray.embedded, on_ray.computed) == (20, 20)
    ids, ray_vectors = lookalike.embeddings(dataset_name, patches="ground_truth_detections")
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "local-home"))
    local = lookalike.embed(dataset_name, "efficientnet-lite0", patches="ground_truth_detections",
                            config=_config("local"))
    assert local.computed == 20
    local_ids, local_vectors = lookalike.embeddings(dataset_name, patches="ground_truth_detections")
    assert ids == local_ids and set(ids) == set(fo.load_dataset(dataset_name).values(
        "ground_truth_detections.detections.id", unwind=True))
    assert float(np.min(np.sum(ray_vectors * local_vectors, axis=1))) >= 0.999
