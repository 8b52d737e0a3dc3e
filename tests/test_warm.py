"""Repeated queries from the shell: the first leaves a warm process, the next are answered by it (the same output,
with the client's working directory), it stops when idle, and it is off where LOOKALIKE_WARM_SECONDS is 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import MODEL, write_blobs
from lookalike import embed, load

LOOKALIKE = str(Path(sys.executable).parent / "lookalike")  # the console script: main() from the shell


def _stop_warm_processes() -> None:
    """Those of this test session (their sockets are in its lookalike home)."""
    import psutil

    home = os.environ["LOOKALIKE_HOME"]
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if "lookalike.warm" in line and home in line:
            p.terminate()
            p.wait(30)


@pytest.fixture
def shop(tmp_path: Path, dataset_name: str) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """An embedded dataset, and the environment of a shell that may leave warm processes."""
    _stop_warm_processes()
    write_blobs(tmp_path / "tree" / "red", "red", 4, seed=2)
    write_blobs(tmp_path / "tree" / "blue", "blue", 4, seed=3)
    load(tmp_path / "tree", name=dataset_name)
    embed(dataset_name, MODEL)
    yield dataset_name, tmp_path, {**os.environ, "LOOKALIKE_WARM_SECONDS": "20"}
    _stop_warm_processes()


def _query(env: dict[str, str], cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOOKALIKE, "-v", "similar", *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_a_second_query_is_answered_by_the_warm_process(shop: tuple[str, Path, dict[str, str]]) -> None:
    name, root, env = shop
    query = ["--image", "red/red-2-0.png", "-k", "2", "--json"]  # relative: the client's working directory counts
    first = _query(env, root / "tree", name, *query)
    assert first.returncode == 0, first.stderr
    assert "warm process" not in first.stderr  # none was up: answered here, and one left behind
    home = Path(env["LOOKALIKE_HOME"])
    deadline = time.monotonic() + 120
    while not list(home.glob("warm-*.sock")) and time.monotonic() < deadline:
        time.sleep(0.5)
    second = _query(env, root / "tree", name, *query)
    assert second.returncode == 0, second.stderr
    assert "answered by the warm process" in second.stderr
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert json.loads(second.stdout)[0]["filepath"] == str(root / "tree" / "red" / "red-2-0.png")
    wrong = _query(env, root / "tree", "no-such-dataset", *query)  # an error comes back as an error
    assert wrong.returncode == 2 and "no-such-dataset" in wrong.stderr


def test_the_warm_process_stops_when_idle_and_is_off_at_zero(shop: tuple[str, Path, dict[str, str]]) -> None:
    name, root, env = shop
    home = Path(env["LOOKALIKE_HOME"])
    assert _query({**env, "LOOKALIKE_WARM_SECONDS": "0"}, root, name, "--text", "x").returncode == 0
    assert not list(home.glob("warm-*.sock"))
    assert _query({**env, "LOOKALIKE_WARM_SECONDS": "3"}, root, name, "--text", "x").returncode == 0
    deadline = time.monotonic() + 120
    while not list(home.glob("warm-*.sock")) and time.monotonic() < deadline:  # it starts...
        time.sleep(0.2)
    assert list(home.glob("warm-*.sock"))
    while list(home.glob("warm-*.sock")) and time.monotonic() < deadline:  # ...and stops, its socket gone
        time.sleep(0.5)
    assert not list(home.glob("warm-*.sock"))
