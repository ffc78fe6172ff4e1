"""The C library's allocator, set once per process for the engine's passes over many images.

glibc hands a freed block larger than its mmap threshold (128 KB at first, raised to the size
of the largest such block freed, at most 32 MB) back to the kernel, and trims the top of its
heap once more than twice that threshold is free there. The engine's passes allocate the same
large buffers batch after batch (BN recalibration's activations, 11 MB a 200-image batch for a
96-channel 12x12 layer; the calibration's and the accuracy passes' arrays), so each batch
faulted the same pages in again (~3 us a 4 KB page on these VMs). `keep_freed_memory` raises
both thresholds (blocks up to 256 MB come from the heap, whose top is trimmed only above 1 GB),
and freed pages are used again instead. The process then keeps freed memory up to those sizes
mapped (~0.1 GB more resident after four specializations here). Numbers:
docs/specialize-speed.md.

`OFA_KEEP_FREED_MEMORY=0` leaves the allocator as it is; where the C library is not glibc this
does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

__all__ = ["keep_freed_memory", "KEEP_FREED_MEMORY_ENV", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

KEEP_FREED_MEMORY_ENV = "OFA_KEEP_FREED_MEMORY"
MMAP_THRESHOLD = 256 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024
# mallopt's parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

_lock = threading.Lock()
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (`MMAP_THRESHOLD`, `TRIM_THRESHOLD`) once per
    process; True when they are set (now or before), False where the variable
    `OFA_KEEP_FREED_MEMORY` is "0" or the C library is not glibc."""
    global _done
    with _lock:
        if _done is None:
            _done = os.environ.get(KEEP_FREED_MEMORY_ENV, "").strip() != "0" and _set_thresholds()
        return _done


def _set_thresholds() -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):   # musl and others have no such thresholds
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Setting either one also stops glibc's own adjustment of both.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
