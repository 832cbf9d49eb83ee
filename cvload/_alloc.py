"""Allocator tuning for processes that decode video (glibc's malloc).

Decoding allocates and frees buffers of one to a few megabytes for every frame: RGB
arrays, residuals, motion fields, FFmpeg's side data. glibc serves allocations above its
``mmap`` threshold with fresh ``mmap`` calls and returns them with ``munmap`` when freed,
and it gives the top of its heap back to the kernel past its trim threshold; either way
every new buffer is new memory, and touching it costs a page fault per 4 KiB. On the
shared VMs here that was a third of the time of an ``imrnet`` clip. Raising both
thresholds keeps freed buffers in the process for the next frame.

``cvload.DataLoader`` calls :func:`tune_allocator` in each of its worker processes (set
``CVLOAD_TUNE_ALLOCATOR=0`` to leave them alone); call it yourself where you decode in
the main process or under another loader. It changes how much freed memory the process
keeps (at most ``trim_threshold`` above what it uses), never what it computes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["tune_allocator", "allocator_tuned", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 64 << 20

_tuned: tuple[int, int] | None = None


def _libc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def tune_allocator(*, mmap_threshold: int = MMAP_THRESHOLD,
                   trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Make glibc keep freed buffers of up to ``mmap_threshold`` bytes for reuse.

    Returns True when both settings were applied (Linux with glibc), False elsewhere
    (other C libraries manage memory their own way; nothing is changed). Process-wide
    and cheap; calling it again with the same values does nothing more.
    """
    global _tuned
    wanted = (int(mmap_threshold), int(trim_threshold))
    if _tuned == wanted:
        return True
    libc = _libc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, wanted[0]) == 1 and mallopt(_M_TRIM_THRESHOLD, wanted[1]) == 1
    _tuned = wanted if ok else None
    return ok


def allocator_tuned() -> bool:
    """Whether :func:`tune_allocator` applied its settings in this process."""
    return _tuned is not None


def tuning_wanted() -> bool:
    """False when ``CVLOAD_TUNE_ALLOCATOR`` is 0/false/no/off (read at each call)."""
    return os.environ.get("CVLOAD_TUNE_ALLOCATOR", "").strip().lower() not in (
        "0", "false", "no", "off")
