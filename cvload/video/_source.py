"""Opening video sources with PyAV: paths, bytes and binary file-likes, the right stream."""

from __future__ import annotations

import contextlib
import io
import os
from typing import IO, Iterator, Union

import av
import numpy as np

from cvload.errors import (
    CorruptVideoError,
    InvalidArgumentError,
    UnsupportedCodecError,
    VideoNotFoundError,
)

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]


def source_name(source: Source) -> str:
    """A short printable name for error messages and metadata."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes in memory>"
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else f"<{type(source).__name__}>"


def _as_file(source: Source):
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise VideoNotFoundError("no such file", source=path)
        if os.path.isdir(path):
            raise InvalidArgumentError(
                "is a directory, not a video file", source=path,
                hint="pass the video files in it (or use `cvload pack` / cvload.shards.pack, which search folders)",
            )
        if os.path.getsize(path) == 0:
            raise CorruptVideoError("the file is empty (0 bytes)", source=path)
        return path
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise CorruptVideoError("empty bytes object", source=source)
        return io.BytesIO(bytes(source))
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            with contextlib.suppress(OSError, ValueError):
                source.seek(0)
        return source
    raise InvalidArgumentError(
        f"Invalid video source of type {type(source).__name__}. "
        "Pass a path, a bytes object or a binary file-like object."
    )


def open_container(source: Source) -> av.container.InputContainer:
    """Open ``source`` for reading, turning PyAV's errors into cvload's."""
    target = _as_file(source)
    try:
        return av.open(target, mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError as err:
        raise VideoNotFoundError(str(err), source=source) from err
    except (av.error.FFmpegError, UnicodeDecodeError, EOFError) as err:
        raise CorruptVideoError(
            f"FFmpeg cannot open it as a video container: {err}", source=source_name(source)
        ) from err


def select_stream(
    container: av.container.InputContainer, stream: int | None, source: Source
) -> av.video.stream.VideoStream:
    """The requested video stream, or the best one (FFmpeg's choice, not always index 0).

    ``stream`` is the container-wide stream index (as ``ffprobe`` prints it).
    """
    videos = list(container.streams.video)
    if not videos:
        kinds = ", ".join(f"{s.index}:{s.type}" for s in container.streams) or "none"
        raise CorruptVideoError(
            f"no video stream (streams: {kinds})", source=source_name(source)
        )
    if stream is None:
        try:
            chosen = container.streams.best("video")
        except Exception:  # pragma: no cover - defensive; FFmpeg found streams above
            chosen = None
        chosen = chosen or videos[0]
    else:
        matches = [s for s in videos if s.index == stream]
        if not matches:
            valid = ", ".join(str(s.index) for s in videos)
            raise InvalidArgumentError(
                f"Invalid stream {stream!r}: not a video stream of this file. "
                f"Video streams are: {valid}.",
                source=source_name(source),
            )
        chosen = matches[0]
    if chosen.codec_context is None or not chosen.codec_context.name:
        raise UnsupportedCodecError(
            "FFmpeg has no decoder for this stream's codec", source=source_name(source)
        )
    return chosen


@contextlib.contextmanager
def open_video(source: Source, stream: int | None = None) -> Iterator[tuple]:
    """Context manager yielding ``(container, video_stream)``; always closes the container."""
    container = open_container(source)
    try:
        yield container, select_stream(container, stream, source)
    finally:
        container.close()


def codec_name(video_stream) -> str:
    """The codec's canonical name (``av1`` for the ``libdav1d`` decoder, ``h264``, ...)."""
    codec = video_stream.codec_context.codec
    return getattr(codec, "canonical_name", None) or codec.name


def to_rgb(frame) -> "np.ndarray":
    """``(H, W, 3)`` uint8 RGB of a decoded frame.

    ``threads=1`` matters twice: PyAV's default starts swscale threads for every frame
    (tens of threads that outlive the call, and ~30x slower on small frames), and native
    threads alive when a process forks DataLoader workers can deadlock the workers.
    """
    return _contiguous(frame.to_ndarray(format="rgb24", threads=1))


def to_gray(frame) -> "np.ndarray":
    """``(H, W)`` uint8 luma of a decoded frame (single-threaded, see :func:`to_rgb`)."""
    return _contiguous(frame.to_ndarray(format="gray", threads=1))


def _contiguous(array: "np.ndarray") -> "np.ndarray":
    """PyAV returns a strided view when a row's bytes are padded (for instance 170 RGB
    pixels, 510 bytes, in rows of 512): the kernels and the stacked outputs want rows
    back to back, so such frames are copied once here."""
    import numpy as np

    return array if array.flags.c_contiguous else np.ascontiguousarray(array)
