"""``probe``: what a video holds, from its packets (and, where needed, its frames)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from cvload.errors import CorruptVideoError, EmptyVideoError
from cvload.video._capabilities import decoder_exports_motion_vectors
from cvload.video._source import Source, codec_name, open_video, source_name

__all__ = ["VideoInfo", "probe"]

_PICT = {1: "I", 2: "P", 3: "B", 4: "S", 5: "I", 6: "P", 7: "B"}


def pict_letter(frame: av.VideoFrame) -> str:
    """'I', 'P', 'B' (or 'S', '?') for a decoded frame."""
    return _PICT.get(int(frame.pict_type), "?")


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found. Frame indices are in output (presentation) order.

    Attributes:
        source: printable name of the source.
        stream_index: container-wide index of the chosen video stream.
        codec: canonical codec name (``h264``, ``hevc``, ``av1`` ...); ``decoder`` the
            FFmpeg decoder used (``libdav1d`` ...).
        width, height, pix_fmt: coded picture size and pixel format.
        frame_rate: frames per second as a Fraction (``fps`` as float); ``time_base``.
        num_frames: exact count of frames, from the packets (never from the header);
            ``declared_frames`` is what the header claims (0 when it says nothing).
        keyframes: output indices of the keyframes (random-access points);
            ``gop_lengths`` the number of frames from each keyframe to the next.
        has_b_frames: whether B-frames occur (frames reordered, or B pictures decoded).
        exports_motion_vectors: whether this decoder exports motion vectors (True/False),
            found by a round trip through the codec, None if that cannot be tested here.
        has_timestamps: whether packets carry pts (raw ``.264`` streams do not).
        frame_types: 'IPB...' per output frame when the probe decoded the video, else None.
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
    frame_types: str | None = None
    packet_pts: tuple[int, ...] = field(default=(), repr=False)

    @property
    def fps(self) -> float | None:
        return float(self.frame_rate) if self.frame_rate else None

    @property
    def max_gop(self) -> int:
        return max(self.gop_lengths) if self.gop_lengths else self.num_frames

    def gop_of(self, index: int) -> int:
        """Index of the GOP holding output frame ``index``."""
        return int(np.searchsorted(np.asarray(self.keyframes), index, side="right")) - 1


def _decode_types(container, stream, source) -> tuple[str, list[int]]:
    """Decode every frame (no MVs) to learn its type and key flag, in output order."""
    stream.codec_context.thread_type = "SLICE"
    stream.codec_context.thread_count = 1
    types: list[str] = []
    keys: list[int] = []
    index = 0
    try:
        for index, frame in enumerate(container.decode(stream)):
            types.append(pict_letter(frame))
            if frame.key_frame:
                keys.append(index)
    except av.error.FFmpegError as err:
        raise CorruptVideoError(
            f"decoding failed: {err}", source=source_name(source), frame=len(types)
        ) from err
    return "".join(types), keys


def probe(source: Source, *, stream: int | None = None, decode: bool = False) -> VideoInfo:
    """Describe the video stream of ``source`` (path, bytes or binary file-like).

    Reads packets only (cheap) for containers with timestamps. Raw elementary streams
    (``.264``, ``.h265``) have none, so their frames are decoded to learn the output
    order; ``decode=True`` decodes any file fully, which also verifies it and fills
    ``frame_types``.

    Raises:
        VideoNotFoundError, CorruptVideoError, EmptyVideoError (no frames at all, even
        when FFmpeg reports no error), InvalidArgumentError (bad ``stream``).
    """
    name = source_name(source)
    with open_video(source, stream) as (container, vstream):
        ctx = vstream.codec_context
        pts: list[int | None] = []
        keyflags: list[bool] = []
        try:
            for packet in container.demux(vstream):
                if packet.size == 0:
                    continue  # the flush packet demux ends with
                pts.append(packet.pts)
                keyflags.append(bool(packet.is_keyframe))
        except av.error.FFmpegError as err:
            raise CorruptVideoError(
                f"reading packets failed after {len(pts)} packets: {err}", source=name
            ) from err
        if not pts:
            raise EmptyVideoError("the video stream holds no packets", source=name)
        # Timestamps order frames only when every packet has one and they are distinct;
        # broken muxes (all pts 0, say) are treated like raw streams: decoded and counted.
        has_timestamps = all(p is not None for p in pts) and len(set(pts)) == len(pts)
        frame_types: str | None = None
        if has_timestamps and not decode:
            order = np.argsort(np.asarray(pts, np.int64), kind="stable")
            rank = np.empty(len(pts), np.int64)
            rank[order] = np.arange(len(pts))
            keyframes = sorted(int(rank[i]) for i, k in enumerate(keyflags) if k)
            num_frames = len(pts)
            reordered = bool(np.any(np.diff(np.asarray(pts, np.int64)) < 0))
            has_b = reordered
        else:
            # Raw streams cannot seek back: decode from a fresh open.
            with open_video(source, stream) as (again, again_stream):
                frame_types, keyframes = _decode_types(again, again_stream, source)
            if not frame_types:
                raise EmptyVideoError("no frame could be decoded", source=name)
            num_frames = len(frame_types)
            has_b = "B" in frame_types
        if not keyframes or keyframes[0] != 0:
            keyframes = [0, *keyframes]  # the first decodable frame starts a GOP
        gops = tuple(int(b - a) for a, b in zip(keyframes, [*keyframes[1:], num_frames]))
        rate = vstream.average_rate or vstream.guessed_rate or ctx.framerate
        rate = Fraction(rate) if rate else None
        if container.duration and not has_timestamps:
            duration = container.duration / av.time_base
        else:
            duration = num_frames / float(rate) if rate else None
        codec = codec_name(vstream)
        return VideoInfo(
            source=name,
            stream_index=vstream.index,
            container=container.format.name,
            codec=codec,
            decoder=ctx.name,
            width=ctx.width,
            height=ctx.height,
            pix_fmt=ctx.pix_fmt,
            frame_rate=rate,
            time_base=Fraction(vstream.time_base) if vstream.time_base else None,
            num_frames=num_frames,
            declared_frames=int(vstream.frames or 0),
            duration_s=duration,
            keyframes=tuple(keyframes),
            gop_lengths=gops,
            has_b_frames=has_b,
            exports_motion_vectors=decoder_exports_motion_vectors(codec, ctx.name),
            has_timestamps=has_timestamps,
            frame_types=frame_types,
            packet_pts=tuple(int(p) for p in pts) if has_timestamps else (),  # type: ignore
        )
