"""Keep freed heap memory in the process that assembles batches.

Every batch is a few fresh megabytes of images. glibc serves such blocks with mmap and gives them
back to the kernel when they are freed, so the next batch page-faults its memory in again (zeroed by
the kernel): about 0.6 ms per MB, as much as a third of what decoding the batch's JPEGs costs. Raising
the mmap and trim thresholds keeps the freed blocks in the heap for reuse. A no-op where the C library
is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest dynamic threshold on 64-bit; a batch of 224x224 images fits
TRIM_THRESHOLD = 256 << 20

_done_in_pid: int | None = None


def retain_freed_memory() -> bool:
    """Once per process (grain workers included); True where glibc accepted the settings."""
    global _done_in_pid
    if _done_in_pid == os.getpid():
        return True
    _done_in_pid = os.getpid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
