"""What the machine computes fast: measured once per process, never assumed from a CPU name.

bf16 matrix products run about 5x faster than fp32 on CPUs with AMX tiles (Sapphire Rapids and later) and
on every recent GPU, and slower than fp32 on CPUs without a bf16 unit (they emulate it). The kNN graph and
the embedder use bf16 only where :func:`fast_bf16` says it pays.
"""

from __future__ import annotations

import functools
import logging
import time

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
BF16_SPEEDUP = 1.5  # bf16 must beat fp32 by this much to be used: below it, the re-scoring eats the gain
PROBE_ROUNDS = 8


@functools.cache
def fast_bf16(device: str = "cpu") -> bool:
    """Whether bf16 matrix products on ``device`` beat fp32 ones by ``BF16_SPEEDUP`` (a timed probe of about
    0.1 s on one CPU core; on CUDA, whether the GPU supports bf16)."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device != "cpu":
        return False
    a32, b32 = torch.randn(512, 512), torch.randn(512, 2048)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    # One thread, the two kinds in turn, the best of several: on a busy machine a product on all cores
    # waits for the slowest and the first probe of a run said "not fast" on an AMX CPU; a single core's
    # best time measures its units, whatever the other cores are doing.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times: dict[torch.dtype, list[float]] = {torch.float32: [], torch.bfloat16: []}
        for _ in range(PROBE_ROUNDS):
            for a, b in ((a32, b32), (a16, b16)):
                t = time.perf_counter()
                a @ b
                times[a.dtype].append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    fp32, bf16 = min(times[torch.float32][1:]), min(times[torch.bfloat16][1:])  # the first pays kernel selection
    fast = fp32 > BF16_SPEEDUP * bf16
    log.info("bf16 matmul %.1fx the speed of fp32 on %s: %s", fp32 / bf16, device, "used" if fast else "not used")
    return fast


def use_bf16(precision: str, device: str = "cpu") -> bool:
    """Whether a ``precision`` setting (``auto``, ``fp32`` or ``bf16``) means bf16 on ``device``."""
    from .exceptions import ConfigError

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return fast_bf16(device) if precision == "auto" else precision == "bf16"
