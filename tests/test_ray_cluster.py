"""The command line against a Ray cluster of several nodes, started here as Ray's own tests start one
(ray.cluster_utils.Cluster: a head and worker nodes, each its own raylet and object store, on this machine).

The head offers no CPUs, as on a cluster whose head only coordinates: every task and actor runs on the two
worker nodes, so the vectors, thumbnails and model inputs travel between object stores, and the driver (the
``lookalike`` process) reaches the cluster only by its address, as a user's does."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import vectors_by_file, write_blobs
from lookalike.exceptions import NotEmbeddedError

pytest.importorskip("ray")
STORE = 100 * 1024 * 1024  # object store per node: small, these are small datasets


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    started = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": STORE,
                                                           "include_dashboard": False})
    for _ in range(2):
        started.add_node(num_cpus=1, object_store_memory=STORE)
    started.wait_for_nodes()
    yield started
    started.shutdown()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lookalike.cli", *args], capture_output=True, text=True,
                          timeout=600)


def _groups(out: str) -> set[frozenset[str]]:
    return {frozenset(Path(m["filepath"]).name for m in g["members"]) for g in json.loads(out)["groups"]}


def test_the_cli_on_a_three_node_cluster_equals_the_local_run(cluster: Any, tmp_path: Path,
                                                              dataset_name: str) -> None:
    import fiftyone as fo

    import lookalike

    root = tmp_path / "shop"
    write_blobs(root / "train" / "red", "red", 30, 1)
    write_blobs(root / "test" / "blue", "blue", 20, 2)
    for i, source in enumerate(sorted((root / "train" / "red").glob("*.png"))[:2]):  # planted leaks
        (root / "test" / "red").mkdir(exist_ok=True)
        Image.open(source).point(lambda v: min(255, round(v * 1.03))).save(root / "test" / "red" / f"copy-{i}.png")
    local_name = dataset_name + "-local"
    lookalike.load(root, name=dataset_name)
    lookalike.load(root, name=local_name)
    on_ray = ("--engine", "ray", "--ray-address", cluster.address)
    try:
        run = _cli("embed", dataset_name, "--model", "efficientnet-lite0", *on_ray)
        assert run.returncode == 0, run.stderr[-3000:]
        assert _cli("embed", local_name, "--model", "efficientnet-lite0").returncode == 0
        for name in (dataset_name, local_name):
            fo.load_dataset(name).reload()  # written by the other process
        ray_vectors, local_vectors = vectors_by_file(dataset_name), vectors_by_file(local_name)
        assert len(ray_vectors) == 52 and ray_vectors.keys() == local_vectors.keys()
        assert min(float(v @ local_vectors[f]) for f, v in ray_vectors.items()) >= 0.999

        found = _cli("duplicates", dataset_name, "--json", "--no-keypoints", *on_ray)
        assert found.returncode == 0, found.stderr[-3000:]
        local = _cli("duplicates", local_name, "--json", "--no-keypoints")
        assert _groups(found.stdout) == _groups(local.stdout)
        assert all(any(f"copy-{i}.png" in g for g in _groups(found.stdout)) for i in range(2))
        assert len(json.loads(found.stdout)["leaks"]) >= 2
    finally:
        fo.delete_dataset(local_name)


def test_an_address_without_a_cluster_is_named(dataset_name: str, tmp_path: Path) -> None:
    """An address where no cluster answers: one line naming it, no traceback, nothing written."""
    import fiftyone as fo

    import lookalike

    write_blobs(tmp_path / "tree" / "red", "red", 4, 3)
    lookalike.load(tmp_path / "tree", name=dataset_name)
    run = _cli("embed", dataset_name, "--model", "efficientnet-lite0", "--engine", "ray", "--ray-address",
               "127.0.0.1:9")
    assert run.returncode != 0 and "cannot reach the Ray cluster at 127.0.0.1:9" in run.stderr
    assert "Traceback" not in run.stderr
    fo.load_dataset(dataset_name).reload()
    with pytest.raises(NotEmbeddedError):
        lookalike.embeddings(dataset_name)
