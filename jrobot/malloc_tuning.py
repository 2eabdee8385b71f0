"""glibc malloc settings for the processes that run XLA on the CPU (training and the runtime).

XLA's CPU client allocates each execution's buffers afresh and frees them when the call ends. glibc
serves every block over 32 MB, and any big block asked for from a worker thread, with a fresh `mmap`
and gives it back with `munmap` on free, so every training step faults its scratch space in again,
page by page, each page zeroed by the kernel: the 96x128 ACT benchmark's step mapped and unmapped a
~300 MB block every step (strace), and a 480x640 step took 161,552 page faults (getrusage), ~10% of
its CPU time on 2 cores. `keep_freed_memory` makes glibc keep freed memory in one heap and hand it
out again: one arena for every thread (a thread's own arena would still `mmap` big blocks), no `mmap`
for big blocks, no trimming of the heap's top. Memory the process has used stays mapped until it
exits, as with PyTorch's or XLA's GPU caching allocators; the peak does not change.

It must run before any thread that XLA or a library starts has allocated: a thread keeps the arena it
first used. The packages that run XLA work (`jrobot.train`, `jrobot.runtime`) call it from their
`__init__`, which every jrobot entry point imports before its first jax call. A process that ran jax
before importing them keeps glibc's behaviour for XLA's threads (correct, only slower). Without glibc
(e.g. macOS) it does nothing. `JROBOT_MALLOC_TUNING=0` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

ENV_SWITCH = "JROBOT_MALLOC_TUNING"
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings once per process; True when glibc accepted all three."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        log.debug("%s is off: glibc malloc keeps its defaults", ENV_SWITCH)
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as e:
        log.debug("glibc mallopt unavailable (%s): malloc keeps its defaults", e)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # -1 as the trim threshold turns trimming off (mallopt(3)); the value is a C int, so no size works.
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))
    _applied = all(mallopt(param, value) == 1 for param, value in settings)
    log.debug("glibc malloc keeps freed memory for reuse: %s", _applied)
    return _applied
