"""numba kernels for cvload: plain arrays in, plain (preallocated) arrays out.

No PyAV, no torch here. Every kernel is compiled through :func:`jit`, the one place that
decides how: ``numba.njit(cache=True, nogil=True)`` normally, or the plain Python function
when the environment variable ``CVLOAD_DISABLE_JIT=1`` is set (for debugging, stepping
through with pdb, and line coverage). Read once, at import.
"""

from __future__ import annotations

from cvload_ext._jit import JIT_ENABLED, jit, prange
from cvload_ext.motion import (
    accumulate_motion,
    block_match,
    motion_compensate,
    rasterize_motion,
    subtract,
    unpack_motion_vectors,
    warp,
)
from cvload_ext.spans import gather_spans
from cvload_ext.statistics import cell_gradient_sums

__all__ = [
    "JIT_ENABLED",
    "gather_spans",
    "accumulate_motion",
    "block_match",
    "cell_gradient_sums",
    "jit",
    "motion_compensate",
    "prange",
    "rasterize_motion",
    "subtract",
    "unpack_motion_vectors",
    "warp",
]
