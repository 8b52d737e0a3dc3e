"""What happens across processes: the App server, and two processes sharing one embedded store."""

from __future__ import annotations

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
