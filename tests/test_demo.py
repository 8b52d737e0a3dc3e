"""The main job on real Fashion-MNIST images with the real offline model (CLIP weights are out of reach)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.config import load_config
from lookalike.demo import FASHION_MNIST_DIR, run

pytestmark = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist (scripts/setup.sh installs it)"
)


def test_main_job_falls_back_and_finds_same_class_neighbours(tmp_path: Path) -> None:
    config_file = Path(__file__).parents[1] / "configs" / "demo.yaml"
    config = load_config(config_file, {"dataset": {"name": "demo-test", "demo_train": 300, "demo_test": 60},
                                       "embed": {"num_workers": 0}})
    lines: list[str] = []
    figures = run(config=config, say=lines.append)
    text = "\n".join(lines)
    summary = figures["summary"]
    assert summary.samples == 360 and summary.embedded == 360
    assert "Using efficientnet-lite0" in text and "cannot be had" in text
    assert "Like three" in text and "skipped" in text  # text queries say why they are skipped
    # Real ImageNet features on real images: far above the 10% of chance.
    assert figures["agreement"] > 0.6
    # Clean labels: the mislabel finder reports, but does not flag a large share of them.
    assert "Misclassified neighbours:" in text and figures["flagged"] < 0.1 * 360
    # Every analysis reports: duplicates (real data: few, if any), leaks, clusters.
    assert "Duplicates:" in text and figures["duplicate_groups"] < 0.05 * 360
    assert "Map: UMAP of 360 samples" in text and sum(figures["clusters"].values()) == 360
    # The new finders report too: clean real images are rarely flagged; real features retrieve their class.
    assert "Image quality" in text and figures["quality"]["flagged"] <= 0.05 * 360
    assert "Outliers" in text and figures["outliers"]["flagged"] <= 0.05 * 360
    assert figures["evaluate"]["overall"]["precision_at_k"] > 0.5
    again = run(config=config, say=lines.append)
    assert again["summary"].computed == 0


def test_the_main_jobs_findings_are_the_same_whatever_the_threads_and_the_graph_precision(
        tmp_path: Path) -> None:
    """The same vectors (the second run reads them from the cache), analysed with 2 threads and the fp32 graph,
    then 1 thread and the bf16 one (candidates re-scored), the stored graph rebuilt: the same suspects, suggested
    labels, duplicate groups, clusters and uniqueness."""
    import shutil

    import fiftyone as fo
    import torch

    config_file = Path(__file__).parents[1] / "configs" / "demo.yaml"
    name = "demo-same-findings"
    found = []
    before = torch.get_num_threads()
    try:
        for threads, precision in ((2, "fp32"), (1, "bf16")):
            torch.set_num_threads(threads)
            config = load_config(config_file, {"dataset": {"name": name, "demo_train": 300, "demo_test": 60},
                                               "embed": {"num_workers": 0},
                                               "index": {"graph_precision": precision}})
            shutil.rmtree(config.index.home_path() / "graphs", ignore_errors=True)  # built again, this way
            run(config=config, say=lambda line: None)
            ds = fo.load_dataset(name)
            found.append({f: ds.values(f) for f in ("id", "suspect_label", "suggested_label", "duplicate_group",
                                                    "cluster", "uniqueness")})
    finally:
        torch.set_num_threads(before)
    assert sum(found[0]["suspect_label"]) > 0  # something to agree on
    assert found[0] == found[1]
