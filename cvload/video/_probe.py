"""``probe``: what a video holds, from its packets, checked by decoding its head and tail."""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from cvload.errors import CorruptVideoError
from cvload.video._capabilities import motion_vector_export
from cvload.video._index import CountMethod, FrameOrder, build_frame_index, pict_letter
from cvload.video._source import Source, codec_name, open_video, source_name

__all__ = ["VideoInfo", "probe", "pict_letter"]


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found. Frame indices are in presentation order.

    Attributes:
        source: printable name of the source.
        stream_index: container-wide index of the chosen video stream.
        codec: canonical codec name (``h264``, ``hevc``, ``av1`` ...); ``decoder`` the
            FFmpeg decoder used (``libdav1d`` ...).
        width, height, pix_fmt: coded picture size and pixel format.
        frame_rate: frames per second as a Fraction (``fps`` as float); ``time_base``.
        num_frames: the number of frames that decoding the stream yields (never the
            header's claim, which is ``declared_frames``, 0 when it says nothing); see
            ``count_method``.
        keyframes: indices of the keyframes (random-access points);
            ``gop_lengths`` the number of frames from each keyframe to the next.
        has_b_frames: whether B-frames occur (frames reordered, or B pictures decoded).
        exports_motion_vectors: whether the decoder exports motion vectors: True/False
            when known for the codec, None when the first inter frame decoded decides.
        has_timestamps: whether packets carry timestamps to seek by (raw streams do not).
        frame_order: how frames are put in presentation order: ``"pts"`` (by their
            timestamps, whatever order the decoder returns them in) or ``"decode"`` (the
            decoder's output order, when timestamps are absent or unusable);
            ``order_reason`` says why in words.
        count_method: ``"packets"``: counted from the packets (edit-list hidden packets
            excluded), confirmed by decoding the first packets and the last GOP;
            ``"decoded"``: the whole stream was decoded (``decode=True``, raw streams,
            or when the checks disagreed with the packets).
        damage: what failed while decoding for the checks (a damaged file), else None.
        frame_types: 'IPB...' per frame when the whole stream was decoded, else None.
        frame_pts: ``frame_order == "pts"``: the pts of every frame, increasing.
        keyframe_seek: per keyframe, the timestamp a seek goes to (None: from the start).
    """

    source: str
    stream_index: int
    container: str
    codec: str
    decoder: str
    width: int
    height: int
    pix_fmt: str | None
    frame_rate: Fraction | None
    time_base: Fraction | None
    num_frames: int
    declared_frames: int
    duration_s: float | None
    keyframes: tuple[int, ...]
    gop_lengths: tuple[int, ...]
    has_b_frames: bool
    exports_motion_vectors: bool | None
    has_timestamps: bool
    frame_order: FrameOrder = "pts"
    order_reason: str = ""
    count_method: CountMethod = "packets"
    damage: str | None = None
    frame_types: str | None = None
    frame_pts: tuple[int, ...] = field(default=(), repr=False)
    keyframe_seek: tuple[int | None, ...] = field(default=(), repr=False)

    @property
    def fps(self) -> float | None:
        return float(self.frame_rate) if self.frame_rate else None

    @property
    def max_gop(self) -> int:
        return max(self.gop_lengths) if self.gop_lengths else self.num_frames

    def gop_of(self, index: int) -> int:
        """Index of the GOP holding frame ``index``."""
        return int(np.searchsorted(np.asarray(self.keyframes), index, side="right")) - 1

    @functools.cached_property
    def pts_index(self) -> dict[int, int]:
        """``{pts: frame index}`` (``frame_order == "pts"``; empty otherwise)."""
        return {int(p): i for i, p in enumerate(self.frame_pts)}


def probe(source: Source, *, stream: int | None = None, decode: bool = False) -> VideoInfo:
    """Describe the video stream of ``source`` (path, bytes or binary file-like).

    How frames are counted and ordered (see :mod:`cvload.video._index`): packets are read
    (milliseconds), then the first packets (up to 24, or the first GOP) and the last GOP
    are decoded without pixel conversion, loop filter or inverse transform, to confirm
    that decoding yields one frame per packet in an order the timestamps explain. Where
    they disagree (frames the decoder drops, decode times stored as presentation times,
    packed B-frames), and for raw streams, which cannot seek, the whole stream is decoded
    once instead; ``decode=True`` always does so, and also fills ``frame_types``. A path's
    result is cached per process (keyed by path, size and modification time).

    Raises:
        VideoNotFoundError, CorruptVideoError (unreadable container or packets, or a
        first frame that does not decode), EmptyVideoError (no frames at all, even when
        FFmpeg reports no error), InvalidArgumentError (bad ``stream``).
    """
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source):
        stat = os.stat(source)
        return _probe_path(os.path.abspath(os.fspath(source)), stat.st_size, stat.st_mtime_ns,
                           stream, decode, os.fspath(source))
    return _probe(source, stream, decode)


@functools.lru_cache(maxsize=4096)
def _probe_path(path: str, size: int, mtime_ns: int, stream: int | None, decode: bool,
                shown: str) -> VideoInfo:
    return _probe(shown, stream, decode)


def _probe(source: Source, stream: int | None, decode: bool) -> VideoInfo:
    name = source_name(source)
    data = source
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        data = source.read()  # a file-like object is opened several times below
        if hasattr(source, "seek"):
            source.seek(0)
        if not data:
            raise CorruptVideoError("empty file object", source=name)
        data = bytes(data)

    def opened(chosen):
        if isinstance(data, bytes):  # named, so that errors name the original source
            buffer = io.BytesIO(data)
            buffer.name = name
            return open_video(buffer, chosen)
        return open_video(data, chosen)

    with opened(stream) as (container, vstream):
        ctx = vstream.codec_context
        stream_index = vstream.index
        container_name = container.format.name
        codec = codec_name(vstream)
        decoder, width, height, pix_fmt = ctx.name, ctx.width, ctx.height, ctx.pix_fmt
        rate = vstream.average_rate or vstream.guessed_rate or ctx.framerate
        rate = Fraction(rate) if rate else None
        time_base = Fraction(vstream.time_base) if vstream.time_base else None
        declared = int(vstream.frames or 0)
        container_duration = container.duration
    index = build_frame_index(lambda: opened(stream_index), name, decode=decode)
    keyframes = list(index.keyframes)
    num_frames = index.num_frames
    gops = tuple(int(b - a) for a, b in zip(keyframes, [*keyframes[1:], num_frames]))
    has_timestamps = any(s is not None for s in index.seek_pts)
    if container_duration and not has_timestamps:
        duration = container_duration / av.time_base
    else:
        duration = num_frames / float(rate) if rate else None
    return VideoInfo(
        source=name, stream_index=stream_index, container=container_name, codec=codec,
        decoder=decoder, width=width, height=height, pix_fmt=pix_fmt, frame_rate=rate,
        time_base=time_base, num_frames=num_frames, declared_frames=declared,
        duration_s=duration, keyframes=tuple(keyframes), gop_lengths=gops,
        has_b_frames=index.has_b_frames,
        exports_motion_vectors=motion_vector_export(codec, decoder),
        has_timestamps=has_timestamps, frame_order=index.order, order_reason=index.reason,
        count_method=index.counted, damage=index.damage, frame_types=index.frame_types,
        frame_pts=index.frame_pts, keyframe_seek=index.seek_pts,
    )
