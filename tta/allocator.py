"""Keep freed memory in the process for reuse (glibc ``mallopt``), so that tensors re-allocated
at every layer do not pay page faults.

glibc serves an allocation larger than ``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and gives it
back with ``munmap`` when freed; the threshold adapts to freed sizes but only up to 32 MiB
(``DEFAULT_MMAP_THRESHOLD_MAX`` on 64-bit). An inference tile of 512² PAN pixels with 32
feature channels is 32 MiB in float32, so every layer's output is a new mapping whose 8192
pages the kernel faults in and zeroes before the convolution can write them: on a 2-core
Xeon this cost FusionNet's 512² forward 40 % of its time (0.59-0.61 s against 0.35-0.38 s with
the memory kept). :func:`retain_freed_memory` fixes the mmap threshold (no longer adaptive) at
``limit``, 128 MiB by default, and the heap's trim threshold at twice that, so freed blocks of
that size stay in the heap and the next layer's output reuses them.

What it costs: blocks kept in the heap can leave holes that raise the peak resident size.
Measured with ``benchmarks/bench_memory.py`` at 2048² (FusionNet, ft, 1 thread): peak 4321 →
4599 MiB whole-scene and 1721 → 1768 MiB streamed with the default 128 MiB (64 MiB: 4442 and
1669 MiB; 1 GiB: 6663 and 2163 MiB, hence the default). Larger allocations (whole products)
are still mapped and unmapped. The ``tta`` command and its Ray workers call it at start
unless ``TTA_RETAIN_FREED_MEMORY=0``; in your own process call it once (it changes the whole
process's allocator), or not at all.

Reference: glibc manual, "Malloc Tunable Parameters" (``mallopt``, ``M_MMAP_THRESHOLD``,
``M_TRIM_THRESHOLD``); mallopt(3).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["ENV_VAR", "retain_freed_memory"]

#: Environment variable that turns the setting off for the ``tta`` command (``0``/``false``/``no``).
ENV_VAR = "TTA_RETAIN_FREED_MEMORY"

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1


def retain_freed_memory(limit: int = 128 << 20, *, respect_env: bool = False) -> bool:
    """Keep freed blocks up to ``limit`` bytes in the heap for reuse (see the module docstring).

    Args:
        limit: Largest allocation served from the heap (bytes, at most ``2**31 - 1``); larger
            ones are still mapped and unmapped. The heap keeps up to ``2 * limit`` free at
            its top.
        respect_env: Do nothing when :data:`ENV_VAR` is ``0``, ``false`` or ``no`` (the
            command line's behaviour).

    Returns:
        Whether the allocator was changed: False off glibc (macOS, Windows, musl), when
        turned off by the environment, or when glibc refused a value.
    """
    if not 0 < limit <= _INT_MAX:
        raise ValueError(f"limit must be in (0, {_INT_MAX}], got {limit}")
    if respect_env and os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no"):
        return False
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # Both fixed (glibc stops adapting them): the heap's top is trimmed only when more than
    # twice the limit is free there, glibc's own ratio between the two.
    trim = min(_INT_MAX, 2 * limit)
    return bool(mallopt(_M_TRIM_THRESHOLD, trim)) and bool(mallopt(_M_MMAP_THRESHOLD, limit))


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # Only glibc has gnu_get_libc_version (musl does not).
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None
