"""A private MongoDB for FiftyOne, for runs that must not share a database with anything else on the machine.

FiftyOne attaches every process to the first database service already running on the machine, whatever
``FIFTYONE_DATABASE_DIR`` that process was given: a test suite started beside a long benchmark wrote into
the benchmark's database, and the benchmark's next command, finding the service gone, started one on its
own empty folder ("no FiftyOne dataset named ..."). A run that points ``FIFTYONE_DATABASE_URI`` at its own
``mongod`` (FiftyOne's bundled binary) never attaches to another's. Import nothing of FiftyOne before
calling :func:`start_private_database`: it reads the variable once.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path

from .exceptions import LookalikeError
from .processes import die_with_parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop mongod and wait for it, so its folder can be removed right after."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def start_private_database(folder: str | Path, timeout: float = 60.0) -> str:
    """Start FiftyOne's bundled ``mongod`` on ``folder`` (created if needed) at a free local port, stopped
    when this process exits or dies, and set ``FIFTYONE_DATABASE_URI`` to it (inherited by child processes).
    Returns the URI."""
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        raise LookalikeError("fiftyone is not installed")
    mongod = Path(next(iter(spec.submodule_search_locations))) / "db" / "bin" / "mongod"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    process = subprocess.Popen([str(mongod), "--dbpath", str(folder), "--port", str(port), "--bind_ip", "127.0.0.1",
                                "--nounixsocket", "--logpath", str(folder / "mongod.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=die_with_parent)
    atexit.register(_stop, process)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError as e:
            if process.poll() is not None or time.monotonic() > deadline:
                process.terminate()
                raise LookalikeError(f"mongod on {folder} did not start; another mongod may hold that folder "
                                     f"(see {folder / 'mongod.log'})") from e
            time.sleep(0.2)
    uri = f"mongodb://127.0.0.1:{port}"
    os.environ["FIFTYONE_DATABASE_URI"] = uri
    return uri
