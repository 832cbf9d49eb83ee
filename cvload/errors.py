"""One exception hierarchy for all of cvload, and the error policy pipelines share.

Every exception derives from :class:`CvloadError` *and* from the builtin a caller would
naturally catch (``ValueError``, ``OSError``, ``ImportError`` ...), so
``except ValueError`` keeps working in code that predates cvload.

Messages name the thing that failed (file, sample, frame) and say what to do::

    CorruptVideoError: clip.mp4 (frame 28): decoding failed: Invalid data found ...
    -> the file is damaged; re-download or re-encode it, or pass handler='skip'.

Pipelines take ``handler="raise" | "warn" | "skip"`` and count what they skipped in a
:class:`SkipCounter`.
"""

from __future__ import annotations

import collections
import os
import threading
import warnings
from typing import Literal, Union

__all__ = [
    "CvloadError",
    "InvalidArgumentError",
    "VideoError",
    "VideoNotFoundError",
    "CorruptVideoError",
    "EmptyVideoError",
    "UnsupportedCodecError",
    "NoMotionVectorsError",
    "ShardError",
    "UnsafeShardError",
    "CodecMismatchError",
    "CodecFileError",
    "MissingDependencyError",
    "Handler",
    "HANDLERS",
    "check_handler",
    "SkipCounter",
]

PathLike = Union[str, "os.PathLike[str]"]


class CvloadError(Exception):
    """Base of every cvload error.

    Args:
        message: what went wrong.
        source: the file, shard or sample it concerns (shown first).
        frame: the frame index reached, when decoding.
        hint: what the user should do about it (shown after an arrow).
    """

    default_hint: str | None = None

    def __init__(
        self,
        message: str,
        *,
        source: object | None = None,
        frame: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.source = None if source is None else _describe_source(source)
        self.frame = frame
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.source is not None:
            where = self.source
            if self.frame is not None:
                where += f" (frame {self.frame})"
            where += ": "
        elif self.frame is not None:
            where = f"frame {self.frame}: "
        text = where + self.message
        if self.hint:
            text += f"\n-> {self.hint}"
        return text

    def __str__(self) -> str:  # OSError formats its args itself; keep ours everywhere
        return self._format()

    def __reduce__(self):  # survive pickling across DataLoader workers
        return (_rebuild, (type(self), self.message, self.source, self.frame, self.hint))


def _rebuild(cls, message, source, frame, hint):
    err = cls.__new__(cls)
    CvloadError.__init__(err, message, source=source, frame=frame, hint=hint)
    return err


def _describe_source(source: object) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes in memory>"
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return name
    return f"<{type(source).__name__}>"


class InvalidArgumentError(CvloadError, ValueError):
    """An option has a value cvload does not accept; the message lists the valid ones."""


class VideoError(CvloadError):
    """Base of errors about a video source."""


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The video path does not exist."""

    default_hint = "check the path; relative paths are resolved from the current directory"


class CorruptVideoError(VideoError, ValueError):
    """The source is not a readable video, or decoding it failed part-way."""

    default_hint = (
        "the file is damaged or not a video; re-download or re-encode it, "
        "or pass handler='skip' to leave such samples out"
    )


class EmptyVideoError(CorruptVideoError):
    """The source opened but yielded no frames (FFmpeg itself may report nothing)."""

    default_hint = (
        "the file holds no decodable video frames; check it with `cvload probe`, "
        "re-encode it, or pass handler='skip'"
    )


class UnsupportedCodecError(VideoError, ValueError):
    """No decoder (or encoder) for this codec in the FFmpeg that PyAV bundles."""

    default_hint = "run `cvload doctor` to see the codecs available, or re-encode to H.264"


class NoMotionVectorsError(VideoError, ValueError):
    """The codec's decoder exports no motion vectors (HEVC, VP9, AV1 ...)."""

    default_hint = (
        "pass mv_source='estimate' (block matching on decoded frames) or mv_source='auto', "
        "or re-encode the videos to H.264"
    )


class ShardError(CvloadError, OSError):
    """A shard is missing, truncated or holds a sample that cannot be read."""

    default_hint = (
        "re-run `cvload pack` for this shard, check it with `cvload inspect --verify`, "
        "or pass handler='skip'"
    )


class UnsafeShardError(ShardError):
    """A shard member would need unpickling (``.pyd``, ``.pickle``, object arrays)."""

    default_hint = "cvload never unpickles shard data; rebuild the shard with `cvload pack`"


class CodecMismatchError(CvloadError, ValueError):
    """Codes, shards or inputs do not match the codec (id, clip size, groups)."""

    default_hint = "use the codec the shards were packed with, or re-pack with this codec"


class CodecFileError(CvloadError, ValueError):
    """A file passed as a codec checkpoint is not a cvload codec."""

    default_hint = "pass a file written by `cvload train-codec` or `VideoCodec.save`"


class MissingDependencyError(CvloadError, ImportError):
    """An optional dependency is not installed."""


Handler = Literal["raise", "warn", "skip"]
HANDLERS: tuple[str, ...] = ("raise", "warn", "skip")


def check_handler(handler: str) -> Handler:
    """Return ``handler`` if it is a valid error policy, else raise InvalidArgumentError."""
    if handler not in HANDLERS:
        raise InvalidArgumentError(
            f"Invalid handler {handler!r}. Supported values are 'raise', 'warn' and 'skip'."
        )
    return handler  # type: ignore[return-value]


class SkipCounter:
    """Counts samples skipped under a ``warn``/``skip`` policy, by reason (exception type).

    ``handle(err)`` applies the policy: re-raises under ``raise``, else counts (and under
    ``warn`` emits a ``RuntimeWarning``) and returns so the pipeline can go on.
    Picklable, so it survives DataLoader workers (each worker counts its own).
    """

    def __init__(self, handler: str = "raise") -> None:
        self.handler: Handler = check_handler(handler)
        self.counts: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}
        self._lock = threading.Lock()

    def handle(self, err: BaseException) -> None:
        if self.handler == "raise":
            raise err
        reason = type(err).__name__
        with self._lock:
            self.counts[reason] += 1
            self.examples.setdefault(reason, str(err))
        if self.handler == "warn":
            warnings.warn(f"skipped: {err}", RuntimeWarning, stacklevel=3)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SkipCounter(handler={self.handler!r}, skipped={dict(self.counts)})"
