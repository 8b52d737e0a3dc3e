"""Child processes that die with their parent (Linux): a run killed with ``kill -9`` or by the OOM killer
leaves no worker or server behind, however it dies."""

from __future__ import annotations

import os
import signal
import sys


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
