"""``ReadOptions``: how a clip is read, one object for every reader (a leaf module).

:func:`cvload.read_clip` and :func:`cvload.video.read_frames` take these fields as keywords
(or a whole ``options=``); :class:`cvload.video.ClipDecoder` keeps one and changes only
the streams a layout needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cvload.errors import InvalidArgumentError

__all__ = ["MvSource", "ReadOptions", "STREAMS", "Stream"]

Stream = Literal["rgb", "mv", "residual", "iframe"]
STREAMS: tuple[Stream, ...] = ("rgb", "mv", "residual", "iframe")
MvSource = Literal["bitstream", "estimate", "auto"]


@dataclass(frozen=True)
class ReadOptions:
    """How to read a clip.

    Attributes:
        streams: which of ``rgb``, ``mv``, ``residual``, ``iframe`` to return.
        size: ``(H, W)`` (or one int for square) that rgb, residual and I-frames are
            resized to, with the motion fields scaled to match; None keeps the video's.
        mv_grid: cell size in pixels of the dense motion fields.
        accumulate: motion and residuals traced back to the GOP's I-frame (CoViAR).
        stream: the container's video stream index (None: the best one).
        mv_source: ``"bitstream"`` (the exported vectors; NoMotionVectorsError without),
            ``"estimate"`` (block matching on decoded luma) or ``"auto"`` (the bitstream
            where it can, else estimates).
        threads: decoder slice threads (frame threading is never used with vectors).
    """

    streams: tuple[Stream, ...] = STREAMS
    size: tuple[int, int] | None = None
    mv_grid: int = 4
    accumulate: bool = False
    stream: int | None = None
    mv_source: MvSource = "bitstream"
    threads: int = 1

    def __post_init__(self) -> None:
        streams = (self.streams,) if isinstance(self.streams, str) else tuple(self.streams)
        bad = [s for s in streams if s not in STREAMS]
        if bad or not streams:
            raise InvalidArgumentError(
                f"Invalid streams {self.streams!r}. Supported values are "
                f"{', '.join(map(repr, STREAMS))}.")
        object.__setattr__(self, "streams", streams)
        if self.mv_source not in ("bitstream", "estimate", "auto"):
            raise InvalidArgumentError(
                f"Invalid mv_source {self.mv_source!r}. Supported values are 'bitstream', "
                "'estimate' and 'auto'.")
        if self.size is not None:
            size = (self.size, self.size) if isinstance(self.size, int) else \
                tuple(int(s) for s in self.size)
            if len(size) != 2 or min(size) < 1:
                raise InvalidArgumentError(f"Invalid size {self.size!r}: (H, W) or one int >= 1.")
            object.__setattr__(self, "size", size)
        if int(self.mv_grid) < 1 or int(self.threads) < 1:
            raise InvalidArgumentError("mv_grid and threads must be >= 1.")

    @property
    def wants_motion(self) -> bool:
        """Vectors are decoded: for motion fields, residuals or accumulation."""
        return "mv" in self.streams or "residual" in self.streams or self.accumulate
