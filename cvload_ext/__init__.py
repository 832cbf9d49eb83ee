"""numba kernels for cvload: plain arrays in, plain (preallocated) arrays out.

No PyAV, no torch here. Every kernel is compiled through :func:`jit`, the one place that
decides how: ``numba.njit(cache=True, nogil=True)`` normally, or the plain Python function
when the environment variable ``CVLOAD_DISABLE_JIT=1`` is set (for debugging, stepping
through with pdb, and line coverage). Read once, at import.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

JIT_ENABLED: bool = os.environ.get("CVLOAD_DISABLE_JIT", "").strip().lower() not in (
    "1",
    "true",
    "yes",
    "on",
)

if JIT_ENABLED:
    import numba as _numba

    prange = _numba.prange
else:  # pragma: no cover - exercised in a subprocess test
    prange = range


def jit(fn: F | None = None, *, parallel: bool = False, fastmath: bool = False):
    """Compile ``fn`` with numba (cached on disk), unless CVLOAD_DISABLE_JIT=1."""

    def wrap(f: F) -> F:
        if not JIT_ENABLED:
            return f
        return _numba.njit(cache=True, nogil=True, parallel=parallel, fastmath=fastmath)(f)

    return wrap(fn) if fn is not None else wrap


from cvload_ext.motion import (  # noqa: E402
    accumulate_motion,
    block_match,
    motion_compensate,
    rasterize_motion,
    subtract,
    unpack_motion_vectors,
    warp,
)
from cvload_ext.spans import gather_spans  # noqa: E402

__all__ = [
    "JIT_ENABLED",
    "gather_spans",
    "accumulate_motion",
    "block_match",
    "jit",
    "motion_compensate",
    "prange",
    "rasterize_motion",
    "subtract",
    "unpack_motion_vectors",
    "warp",
]
