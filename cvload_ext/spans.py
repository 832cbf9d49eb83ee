"""Byte-span kernels: copying many same-length records out of buffers at once."""

from __future__ import annotations

import numpy as np

from cvload_ext import jit


@jit
def gather_spans(buffers, which: np.ndarray, starts: np.ndarray, header: np.ndarray,
                 out: np.ndarray, rows: np.ndarray, ok: np.ndarray) -> None:
    """Copy records out of ``buffers`` (a list of uint8 arrays, e.g. memory-mapped files;
    a ``numba.typed.List`` when compiled) into rows of ``out`` (C-contiguous uint8
    ``(B, n)``): record ``i`` lies in ``buffers[which[i]]`` at ``starts[i]``, the bytes
    ``header`` followed by ``n`` payload bytes that go to ``out[rows[i]]``.

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
        buffer = buffers[which[i]]
        end = buffer.shape[0]
        start = starts[i]
        good = start >= 0 and start + size + length <= end
        if good:
            for j in range(size):
                if buffer[start + j] != header[j]:
                    good = False
                    break
        ok[i] = good
        if not good:
            continue
        payload = start + size
        row = rows[i]
        if length % 8 == 0 and payload % 8 == 0:
            buffer64 = buffer[:end // 8 * 8].view(np.uint64)
            source, target = payload // 8, row * words
            for j in range(words):
                out64[target + j] = buffer64[source + j]
        else:
            out[row, :] = buffer[payload:payload + length]
