"""Processes that keep out of each other's way: children that die with their parent (Linux), so a run killed
with ``kill -9`` or by the OOM killer leaves no worker or server behind, however it dies; and runs that hold
a dataset exclusively (:func:`exclusive`), so two embeddings of one dataset never interleave their writes."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .exceptions import BusyError


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """In a child: be sent ``sig`` when the parent dies (PR_SET_PDEATHSIG); with ``parent`` (its pid), exit
    at once if it has died already, before the request took effect. No-op off Linux."""
    if sys.platform != "linux":
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # 1: PR_SET_PDEATHSIG
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def decode_worker_init(parent: int, worker_id: int) -> None:
    """A decode worker's start (``DataLoader(worker_init_fn=partial(decode_worker_init, os.getpid()))``):
    killed with its parent. Torch's own watchdog stops orphans only when it next looks: workers with a full
    result pipe lived 3-13 s after a kill -9 here, and a user saw them asleep 18 minutes later."""
    die_with_parent(signal.SIGKILL, parent)
    # The only thread of a decode worker that reports through sys.excepthook is multiprocessing's resource
    # sharer, handing tensors to the parent: when the parent stops (Ctrl-C), its broken connection printed a
    # traceback under the one line that matters. A real failure to hand one over fails in the parent.
    sys.excepthook = _silent


@contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    """Hold ``lock_file`` (an advisory flock, released by the kernel however this process ends: a kill -9
    leaves no stale lock) for the block, or raise :class:`BusyError` at once, naming ``what`` and the
    holder's pid, when another process holds it."""
    import fcntl

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise BusyError(f"{what} is already running (pid {holder}); wait for it to finish, or stop it "
                            "and rerun (finished work is kept)") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


def _silent(*_exc: object) -> None:
    """An excepthook that says nothing."""
