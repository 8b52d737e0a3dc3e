"""What happens across processes: the App server, and two processes sharing one embedded store."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from lookalike.index import EdgeIndex

QUERY_IN_CHILD = """
import sys, numpy as np
import lookalike.index.edge
from lookalike.index import EdgeIndex
from lookalike.exceptions import IndexError_
lookalike.index.edge.STORE_WAIT = float(sys.argv[2])
index = EdgeIndex(sys.argv[1], 4, "m")
try:
    print(index.query(np.eye(4, dtype=np.float32)[:1], 1)[0][0].id)
except IndexError_ as e:
    print("refused:", e)
"""


def _child_query(path: Path, wait: float) -> str:
    out = subprocess.run([sys.executable, "-c", QUERY_IN_CHILD, str(path), str(wait)], capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.strip()


def test_a_store_held_too_long_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    index = EdgeIndex(tmp_path / "store", 4, "m")
    index.upsert(["a" * 24, "b" * 24], np.eye(4, dtype=np.float32)[:2], [{}, {}])
    with index.session():  # held past the other's patience (0.5 s here; STORE_WAIT by default)
        answer = _child_query(tmp_path / "store", 0.5)
        assert answer.startswith("refused:") and "Another process" in answer
    assert _child_query(tmp_path / "store", 0.5) == "a" * 24  # released after the operation: the other gets it
    assert index.count() == 2  # and this process can open it again afterwards


_HOLD = """
import sys, time
import numpy as np
from lookalike.index import EdgeIndex
index = EdgeIndex(sys.argv[1], 8, "m")
with index.session():
    index.upsert(["b" * 24], np.ones((1, 8), np.float32), [{"label": "theirs"}])
    print("holding", flush=True)
    time.sleep(1.5)
"""


def test_two_processes_take_the_embedded_store_in_turn(tmp_path: Path) -> None:
    """The App server and a notebook: one holds the store while the other writes; the other waits, and
    neither write is lost."""
    path = tmp_path / "store"
    EdgeIndex(path, 8, "m")
    other = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert other.stdout is not None and other.stdout.readline().strip() == "holding"
    mine = EdgeIndex(path, 8, "m")
    mine.upsert(["a" * 24], np.full((1, 8), 0.5, np.float32), [{"label": "mine"}])  # waits for the other
    assert other.wait(timeout=30) == 0
    assert {p["label"] for p in mine.payloads().values()} == {"mine", "theirs"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_app_command_serves_the_dataset(tree: Path, dataset_name: str) -> None:
    from lookalike.datasets import load

    load(tree, name=dataset_name)
    port = _free_port()
    app = subprocess.Popen([sys.executable, "-m", "lookalike.cli", "app", dataset_name, "--port", str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    try:
        deadline, page = time.time() + 90, ""
        while time.time() < deadline and not page:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                assert app.poll() is None, app.stdout.read() if app.stdout else ""
                time.sleep(1)
        assert "<html" in page.lower()
    finally:
        app.terminate()
        app.wait(timeout=30)


DECODING_CHILD = """
import sys, time
import torch
from lookalike.decoding import decode_batches, whole_images
for batch in decode_batches(whole_images(sys.argv[1:] * 50), lambda im: torch.zeros(3, 224, 224), 2, 2):
    print("batch", flush=True)  # then read slowly: the workers fill their result pipe and wait
    time.sleep(1)
"""


def test_decode_workers_die_with_a_killed_run(tmp_path: Path) -> None:
    """kill -9 of a run leaves no decode worker behind. Torch's watchdog stopped the orphans only seconds
    later (3 s here; a user saw them asleep 18 minutes after killing `lookalike embed`)."""
    import signal

    import psutil
    from PIL import Image

    files = []
    for i in range(4):
        Image.new("RGB", (64, 64), (60 * i, 0, 0)).save(tmp_path / f"{i}.png")
        files.append(str(tmp_path / f"{i}.png"))
    run = subprocess.Popen([sys.executable, "-c", DECODING_CHILD, *files], stdout=subprocess.PIPE, text=True)
    workers: list[psutil.Process] = []
    try:
        assert run.stdout is not None and run.stdout.readline() == "batch\n"
        workers = psutil.Process(run.pid).children(recursive=True)
        assert len(workers) == 2
        run.send_signal(signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE
                                                  for w in workers):
            time.sleep(0.05)
        assert not [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    finally:
        for process in [run, *workers]:
            with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                process.kill()
