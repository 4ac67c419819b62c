"""Keep freed host memory in the process, so XLA:CPU's per-step temporaries stop costing page faults.

XLA:CPU allocates all temporaries of one execution as a single block (2.3 GB for a 368x368 batch-8
train step) with ``malloc`` from one of its worker threads, and frees it at the end. glibc serves a
block that large from a fresh ``mmap`` and returns it with ``munmap``: every step then faults in and
zeroes 2.3 GB again (~0.3M page faults) and spends ~0.1 s unmapping it. Measured with
``benchmarks/bench_train_step.py`` on 2 CPU cores: 4.15 s per step before, 3.46 s after; page faults
5.7M -> 0.84M over compile + 9 steps.

:func:`keep_freed_memory` makes glibc serve every thread from the main heap (one arena: only the main
arena can grow past 64 MB without ``mmap``), never ``mmap`` an allocation and never trim the heap.
The price: the process keeps its peak heap until it exits, which a training process reaches on its
first step anyway. It must run before JAX starts its thread pools (threads that already allocated keep
their arena). ``LWOP_JAX_KEEP_FREED_MEMORY=0`` turns it off; it does nothing off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def keep_freed_memory() -> bool:
    """Switches glibc malloc to one arena without ``mmap`` or trimming; True when it was applied."""
    if os.environ.get('LWOP_JAX_KEEP_FREED_MEMORY', '1') == '0' or not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, 'gnu_get_libc_version'):  # musl: mallopt is a stub without these options
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # Order matters: with mmap off, a big block from a thread arena would still fall back to mmap.
    # A trim threshold of -1 disables trimming (glibc's documented value; mallopt takes an int).
    return all(
        mallopt(param, value) == 1 for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    )
