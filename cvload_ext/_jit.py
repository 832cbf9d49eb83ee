"""How every kernel is compiled: :func:`jit` is ``numba.njit(cache=True, nogil=True)``, or
the plain Python function when ``CVLOAD_DISABLE_JIT=1`` (read once, at import). A leaf
module: the kernels import it, and the package re-exports it."""

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
