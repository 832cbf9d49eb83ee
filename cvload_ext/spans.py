"""Byte-span kernels: copying many same-length records out of buffers at once.

The buffers (memory-mapped shards) are passed as base addresses and lengths: one
kernel call then reads from any number of them, without building a numba typed list
(whose construction compiles for most of a second in every process). The caller keeps
the buffers alive and mapped for the duration of the call.
"""

from __future__ import annotations

import ctypes

import numpy as np

from cvload_ext._jit import JIT_ENABLED, jit

if JIT_ENABLED:
    import numba
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def _pointer(typingctx, address):
        if not isinstance(address, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)

        return types.voidptr(address), codegen

    @jit
    def bytes_at(address: int, length: int) -> np.ndarray:
        """The ``length`` bytes at ``address`` as a uint8 array (no copy)."""
        return numba.carray(_pointer(address), (length,), np.uint8)

else:  # pragma: no cover - exercised in a subprocess test

    def bytes_at(address: int, length: int) -> np.ndarray:
        """The ``length`` bytes at ``address`` as a uint8 array (no copy)."""
        if length == 0:
            return np.zeros(0, np.uint8)
        array_type = ctypes.c_uint8 * int(length)
        return np.ctypeslib.as_array(array_type.from_address(int(address)))


@jit
def gather_spans(addresses: np.ndarray, lengths: np.ndarray, which: np.ndarray,
                 starts: np.ndarray, header: np.ndarray, out: np.ndarray, rows: np.ndarray,
                 ok: np.ndarray) -> None:
    """Copy records out of buffers into rows of ``out`` (C-contiguous uint8 ``(B, n)``).

    Buffer ``k`` is ``lengths[k]`` bytes at ``addresses[k]`` (int64; e.g. memory-mapped
    files). Record ``i`` lies in buffer ``which[i]`` at ``starts[i]``: the bytes ``header``
    followed by ``n`` payload bytes that go to ``out[rows[i]]``.

    ``ok[i]`` (bool) is False, and nothing is copied, when the record runs past the end
    of its buffer or its header differs (a corrupt or different record, for the caller's
    checked slow path). Payloads at 8-byte offsets with ``n % 8 == 0`` (tar members and
    .npy headers are aligned so) are copied a word at a time. Runs without the GIL.
    """
    size = header.shape[0]
    length = out.shape[1]
    words = length // 8
    flat = out.reshape(-1)
    out64 = flat[:flat.shape[0] // 8 * 8].view(np.uint64)
    for i in range(starts.shape[0]):
        k = which[i]
        end = lengths[k]
        start = starts[i]
        good = start >= 0 and start + size + length <= end
        if good:
            buffer = bytes_at(addresses[k], end)
            for j in range(size):
                if buffer[start + j] != header[j]:
                    good = False
                    break
        ok[i] = good
        if not good:
            continue
        payload = start + size
        row = rows[i]
        if length % 8 == 0 and payload % 8 == 0 and addresses[k] % 8 == 0:
            buffer64 = buffer[:end // 8 * 8].view(np.uint64)
            source, target = payload // 8, row * words
            for j in range(words):
                out64[target + j] = buffer64[source + j]
        else:
            out[row, :] = buffer[payload:payload + length]
