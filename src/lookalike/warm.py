"""A warm process for repeated queries from the shell.

A ``lookalike similar`` from the shell spends seconds before its query: importing FiftyOne and starting its
database service, which stops again when the command exits. So the first such command, after answering, leaves a
warm process behind: it has FiftyOne imported and holds a connection (FiftyOne's database service stays up while
a client does), and the next commands hand it their arguments over a local socket and print its answer. It
stops after ``LOOKALIKE_WARM_SECONDS`` (default 600) without a request; ``0`` turns it off (the test suite does).

A warm process serves only clients whose settings it shares: its socket is named by a digest of the Python
interpreter, lookalike's code and every ``LOOKALIKE_*`` / ``FIFTYONE_*`` variable but the idle timeout, so a
client with another database or home starts its own. Each request runs with the client's working directory, in
turn, with FiftyOne's dataset cache off, so it sees what other processes wrote since.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
DEFAULT_SECONDS = 600
WARM_COMMANDS = ("similar",)  # quick read-mostly queries; long jobs keep their own process and progress bars
CONNECT_TIMEOUT = 0.5


def seconds() -> float:
    """How long a warm process waits for the next request (0: no warm process)."""
    try:
        return max(0.0, float(os.environ.get("LOOKALIKE_WARM_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return 0.0


def socket_path() -> Path:
    """The socket of the warm process that shares this process's settings (read before anything is imported that
    sets variables of its own, as FiftyOne does)."""
    from .config import load_config

    code = Path(__file__).resolve().parent
    digest = hashlib.sha256(os.path.realpath(sys.executable).encode())
    for path in sorted(code.rglob("*.py")):  # a changed lookalike is another process
        digest.update(f"{path.name}:{path.stat().st_mtime_ns}".encode())
    settings = (k for k in os.environ if k.startswith(("LOOKALIKE_", "FIFTYONE_")) and k != "LOOKALIKE_WARM_SECONDS")
    for key in sorted(settings):
        digest.update(f"{key}={os.environ[key]}".encode())
    folder = load_config().index.home_path()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"warm-{digest.hexdigest()[:12]}.sock"


def ask(argv: Sequence[str], path: Path) -> int | None:
    """Run ``argv`` in the warm process at ``path`` and print its output; None where there is none to ask."""
    if not path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(CONNECT_TIMEOUT)
            s.connect(str(path))
            s.settimeout(None)
            _send(s, {"argv": list(argv), "cwd": os.getcwd()})
            answer = _receive(s)
    except OSError:
        return None
    sys.stdout.write(answer["stdout"])
    sys.stderr.write(answer["stderr"])
    log.info("answered by the warm process at %s", path)
    return int(answer["rc"])


def start(path: Path, environ: dict[str, str]) -> None:
    """Leave a warm process at ``path`` for the next command (detached: it outlives this one), with the
    variables this command started with."""
    subprocess.Popen([sys.executable, "-m", "lookalike.warm", str(path), str(seconds())], env=environ,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def serve(path: Path, idle: float) -> None:
    """Answer requests on ``path`` until ``idle`` seconds pass without one."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stopped: its socket goes too (the finally below)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        try:
            server.bind(str(path))
        except OSError:  # another one is up, or a dead one left its socket
            if _alive(path):
                return
            path.unlink(missing_ok=True)
            server.bind(str(path))
        server.listen(8)
        for other in path.parent.glob("warm-*.sock"):  # those of killed processes (or older settings)
            if other != path and not _alive(other):
                other.unlink(missing_ok=True)
        try:
            import fiftyone as fo

            fo.config.singleton_cache = False  # each request loads datasets afresh: others may have changed them
            fo.list_datasets()  # connects: FiftyOne's database service stays up while this process lives
            from . import cli

            while True:
                server.settimeout(idle)
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    return
                with conn:
                    _answer(conn, cli.main)
        finally:
            path.unlink(missing_ok=True)


def _answer(conn: socket.socket, main: Any) -> None:
    request = _receive(conn)
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        os.chdir(request["cwd"])
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(request["argv"])
            except SystemExit as e:  # argparse's usage errors
                rc = e.code if isinstance(e.code, int) else 2
            except Exception as e:  # the warm process outlives one failed request
                print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
                rc = 1
    finally:
        os.chdir(here)
    with contextlib.suppress(OSError):  # the client may have gone (Ctrl-C)
        _send(conn, {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()})


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(CONNECT_TIMEOUT)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _send(s: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    s.sendall(struct.pack("!I", len(data)) + data)


def _receive(s: socket.socket) -> dict[str, Any]:
    head = _exactly(s, 4)
    return dict(json.loads(_exactly(s, struct.unpack("!I", head)[0])))


def _exactly(s: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = s.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


if __name__ == "__main__":
    serve(Path(sys.argv[1]), float(sys.argv[2]))
