"""Interrupted runs lose nothing and leave nothing behind: ``lookalike embed`` killed with SIGKILL at several
points and rerun, stopped with Ctrl-C, started twice at once; an analysis interrupted before it finished."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from PIL import Image

MODEL = "efficientnet-lite0"  # a real model, slow enough here (tens of images a second) to be stopped midway
IMAGES = 240
BATCH = 16


def _tree(root: Path, seed: int) -> Path:
    """Noise images of the test's own (a seed per test: the embedding cache is shared by the session)."""
    rng = np.random.default_rng(seed)
    for i in range(IMAGES):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def _cached() -> int:
    path = Path(os.environ["LOOKALIKE_HOME"]) / "embeddings.sqlite"
    if not path.is_file():
        return 0
    with sqlite3.connect(path, timeout=30) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM vectors WHERE model LIKE 'efficientnet%'").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not made yet
            return 0


def _embed(name: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lookalike.cli", "embed", name, "--model", MODEL,
                             "--batch-size", str(BATCH)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def _stop_when(run: subprocess.Popen[str], ready: Callable[[], bool], sig: int) -> list[psutil.Process]:
    """Send ``sig`` once ``ready()``; returns the run's children (decode workers) as they were just before."""
    deadline = time.monotonic() + 240
    while not ready():
        assert run.poll() is None, f"the run ended before it could be stopped: {run.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    children = psutil.Process(run.pid).children(recursive=True)
    os.kill(run.pid, sig)
    run.wait(timeout=60)
    return children


def _none_alive(processes: list[psutil.Process]) -> bool:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_kill_9_at_several_points_then_rerun(tmp_path: Path, dataset_name: str) -> None:
    import fiftyone as fo

    from lookalike import embeddings, load
    from lookalike.embedding import content_hash

    load(_tree(tmp_path / "tree", seed=1), name=dataset_name)
    readable, base = IMAGES, _cached()
    # 1: while the model loads, before any vector; 2 and 3: after some batches are committed.
    points: list[tuple[str, Callable[[], bool]]] = [
        ("starting", lambda: True),
        ("a few batches in", lambda: _cached() >= base + 3 * BATCH),
        ("more than half way", lambda: _cached() >= base + readable // 2 + BATCH),
    ]
    kept = 0
    for where, ready in points:
        run = _embed(dataset_name)
        if where == "starting":
            time.sleep(1.0)
        children = _stop_when(run, ready, signal.SIGKILL)
        assert run.returncode == -signal.SIGKILL, where
        assert _none_alive(children), f"processes left behind after kill -9 {where}"
        assert _cached() - base >= kept, f"finished batches lost after kill -9 {where}"  # committed work stays
        kept = _cached() - base
    assert 0 < kept < readable
    # Written on batch by batch: what the killed runs finished is in FiftyOne already, but for the batch each
    # kill came between its cache commit and its field write (two kills came midway; the final run writes them).
    written = fo.load_dataset(dataset_name)
    written.reload()
    assert kept - 2 * BATCH <= written.count("content_hash") <= kept
    final = _embed(dataset_name)
    out, err = final.communicate(timeout=600)
    assert final.returncode == 0, err
    # Finished work is not recomputed: the rerun computes exactly what the killed runs had not committed.
    assert f"{readable}/{readable + 1} samples embedded ({readable - kept} computed, {kept} cached)" in out, out
    assert "broken.png" in err

    dataset = fo.load_dataset(dataset_name)
    dataset.reload()  # written by the other process
    ids, vectors = embeddings(dataset_name)
    assert len(ids) == len(set(ids)) == readable  # exactly one point per readable sample
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    assert _cached() - base == readable
    for path, stored in zip(dataset.values("filepath"), dataset.values("content_hash"), strict=True):
        if not path.endswith("broken.png"):
            assert stored == content_hash(path)  # the FiftyOne field agrees with the cache's key


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_keeping_finished_batches(tmp_path: Path, dataset_name: str) -> None:
    from lookalike import load

    load(_tree(tmp_path / "tree", seed=2), name=dataset_name)
    base = _cached()
    run = _embed(dataset_name)
    children = _stop_when(run, lambda: _cached() >= base + 2 * BATCH, signal.SIGINT)
    _, err = run.communicate()
    assert run.returncode == 130, err[-3000:]
    assert "interrupted" in err and "Traceback" not in err
    assert _none_alive(children)
    assert _cached() >= base + 2 * BATCH  # the finished batches are kept


def test_two_embeddings_of_one_dataset_do_not_run_at_once(tree: Path, dataset_name: str) -> None:
    from conftest import MODEL as TINY
    from lookalike import embed, load

    load(tree, name=dataset_name)
    second: list[subprocess.CompletedProcess[str]] = []

    def start_another(done: int, total: int) -> None:  # the first run's progress: it is under way
        if not second:
            second.append(subprocess.run([sys.executable, "-m", "lookalike.cli", "embed", dataset_name, "--model",
                                          TINY], capture_output=True, text=True, env=os.environ.copy(),
                                         timeout=120))

    summary = embed(dataset_name, TINY, progress=start_another)
    assert summary.embedded == 16
    refused = second[0]
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"an embedding of dataset {dataset_name!r} is already running (pid {os.getpid()})" in refused.stderr
    again = subprocess.run([sys.executable, "-m", "lookalike.cli", "embed", dataset_name, "--model", TINY],
                           capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert again.returncode == 0 and "0 computed" in again.stdout  # free again once the first finished


def test_an_interrupted_analysis_keeps_the_previous_results(embedded: tuple[str, Path, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import fiftyone as fo

    from lookalike import find
    from lookalike.finders import FINDERS

    name = embedded[0]
    find("outliers", name, k=3)
    dataset = fo.load_dataset(name)
    before = dataset.values("outlier_score"), dataset.count_sample_tags(), dataset.list_brain_runs()
    finder = FINDERS["outliers"]
    compute = type(finder).compute

    def interrupted(self: object, ctx: Any, progress: Any = None, **options: Any) -> Any:
        compute(finder, ctx, progress, **options)  # the work is done, and then the user presses Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(type(finder), "compute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        find("outliers", name, k=5)
    dataset.reload()
    assert (dataset.values("outlier_score"), dataset.count_sample_tags(), dataset.list_brain_runs()) == before
    assert dataset.get_brain_info("lookalike_run_outliers").config.settings["k"] == 3
