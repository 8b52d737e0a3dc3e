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
from lookalike.index import EdgeIndex
from lookalike.exceptions import IndexError_
index = EdgeIndex(sys.argv[1], 4, "m")
try:
    print(index.query(np.eye(4, dtype=np.float32)[:1], 1)[0][0].id)
except IndexError_ as e:
    print("refused:", e)
"""


def _child_query(path: Path) -> str:
    out = subprocess.run([sys.executable, "-c", QUERY_IN_CHILD, str(path)], capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.strip()


def test_two_processes_use_one_store_in_turn(tmp_path: Path) -> None:
    index = EdgeIndex(tmp_path / "store", 4, "m")
    index.upsert(["a" * 24, "b" * 24], np.eye(4, dtype=np.float32)[:2], [{}, {}])
    with index.session():  # this process holds the store: the other is refused with a clear message
        answer = _child_query(tmp_path / "store")
        assert answer.startswith("refused:") and "Another process" in answer
    assert _child_query(tmp_path / "store") == "a" * 24  # released after the operation: the other gets it
    assert index.count() == 2  # and this process can open it again afterwards


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
from lookalike.embedding import _decode
for batch in _decode(sys.argv[1:] * 50, lambda im: torch.zeros(3, 224, 224), 2, 2):
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
