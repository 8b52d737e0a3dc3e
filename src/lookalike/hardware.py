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


@functools.cache
def fast_bf16(device: str = "cpu") -> bool:
    """Whether bf16 matrix products on ``device`` beat fp32 ones by ``BF16_SPEEDUP`` (a timed probe of a
    few milliseconds on CPU; on CUDA, whether the GPU supports bf16)."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device != "cpu":
        return False
    a32, b32 = torch.randn(512, 512), torch.randn(512, 2048)
    a16, b16 = a32.bfloat16(), b32.bfloat16()

    def best(a: torch.Tensor, b: torch.Tensor) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        return min(times[1:])  # the first call pays for kernel selection

    fp32, bf16 = best(a32, b32), best(a16, b16)
    fast = fp32 > BF16_SPEEDUP * bf16
    log.info("bf16 matmul %.1fx the speed of fp32 on %s: %s", fp32 / bf16, device, "used" if fast else "not used")
    return fast


def use_bf16(precision: str, device: str = "cpu") -> bool:
    """Whether a ``precision`` setting (``auto``, ``fp32`` or ``bf16``) means bf16 on ``device``."""
    from .exceptions import ConfigError

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return fast_bf16(device) if precision == "auto" else precision == "bf16"
