""".npy members read without pickle: the header is parsed by ``numpy.lib.format`` (a
literal, never unpickled), object dtypes are refused, and the data is a zero-copy view of
the mapped shard."""

from __future__ import annotations

import io

import numpy as np
from numpy.lib import format as npy_format

from cvload.errors import ShardError, UnsafeShardError

__all__ = ["npy_array"]

_HEADERS: dict[bytes, tuple[np.dtype, tuple, bool, int]] = {}


def npy_array(buffer, offset: int, size: int, where: str) -> np.ndarray:
    """A read-only view of the ``.npy`` member at ``buffer[offset:offset + size]``.
    Each distinct header is parsed once (by ``numpy.lib.format``, which evaluates a
    literal and never unpickles); object dtypes raise :class:`UnsafeShardError`."""
    if size < 10 or bytes(buffer[offset:offset + 6]) != npy_format.MAGIC_PREFIX:
        raise ShardError("member is not a .npy array", source=where)
    major = buffer[offset + 6]
    if major == 1:
        length, start = int.from_bytes(buffer[offset + 8:offset + 10], "little"), 10
    elif major in (2, 3):
        length, start = int.from_bytes(buffer[offset + 8:offset + 12], "little"), 12
    else:
        raise ShardError(f".npy format version {major} is not supported", source=where)
    header = bytes(buffer[offset:offset + start + length])
    parsed = _HEADERS.get(header)
    if parsed is None:
        stream = io.BytesIO(header)
        try:
            version = npy_format.read_magic(stream)
            read = npy_format.read_array_header_1_0 if version == (1, 0) else \
                npy_format.read_array_header_2_0
            shape, fortran, dtype = read(stream)
        except (ValueError, SyntaxError, KeyError, TypeError) as err:
            raise ShardError(f"unreadable .npy header: {err}", source=where) from err
        if dtype.hasobject:
            raise UnsafeShardError("object .npy array (would need unpickling)", source=where)
        parsed = (dtype, tuple(shape), bool(fortran), start + length)
        if len(_HEADERS) < 4096:
            _HEADERS[header] = parsed
    dtype, shape, fortran, data_at = parsed
    count = int(np.prod(shape, dtype=np.int64))
    if data_at + count * dtype.itemsize != size:
        raise ShardError(f".npy member holds {size - data_at} data bytes, its header "
                         f"promises {count * dtype.itemsize}", source=where)
    array = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset + data_at)
    return array.reshape(shape, order="F" if fortran else "C")
