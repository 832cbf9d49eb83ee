"""The frame index: which frames sequential decoding yields, in which order, where to seek.

A frame's index is its position in presentation order among the frames that decoding
the whole stream from its start yields. Containers do not always say that order truthfully:

- MP4/MKV/MOV/TS store presentation timestamps. When they reorder (B-frames), frames are
  ordered by pts, whatever order the decoder returns them in (a stream that declares a
  too small reorder delay makes FFmpeg hand them out in the wrong order).
- AVI stores no presentation times (libavformat guesses some; with packed B-frames the
  guesses are wrong), raw elementary streams none at all, and some MP4 muxers write decode
  times as presentation times (pts == dts while B-frames reorder). Then the decoder's
  output order is the truth: frame ``k`` after keyframe ``K`` is index ``K + k``.

The index is built from packets (cheap), then checked by decoding: the first packets
(the decoder must give back one frame per packet, in an order the timestamps agree with)
and the last GOP (the stream's tail must yield what its packets promise). Any
disagreement, and every stream that cannot seek, is settled by decoding the whole stream
once, which is exact by definition. Decoding for these checks converts no pixels and
skips the loop filter and inverse transform.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

from cvload.errors import CorruptVideoError, EmptyVideoError

__all__ = ["FrameOrder", "CountMethod", "FrameIndex", "build_frame_index", "DecodedFrame"]

FrameOrder = Literal["pts", "decode"]
CountMethod = Literal["packets", "decoded"]

#: Containers that store decode times only: their presentation times are guesses.
_DTS_ONLY_FORMATS = frozenset({"avi"})
#: How many packets the head check decodes at most (a GOP that ends sooner ends it).
_HEAD_PACKETS = 24
_FAST = {"skip_loop_filter": "all", "skip_idct": "all"}

_PICT = {1: "I", 2: "P", 3: "B", 4: "S", 5: "I", 6: "P", 7: "B"}


def pict_letter(frame: av.VideoFrame) -> str:
    """'I', 'P', 'B' (or 'S', '?') for a decoded frame."""
    return _PICT.get(int(frame.pict_type), "?")


@dataclass(frozen=True)
class DecodedFrame:
    """What the index checks keep of a decoded frame."""

    pts: int | None
    key: bool
    kind: str


@dataclass(frozen=True)
class _Packets:
    pts: list  # int | None per packet, decode order
    dts: list
    key: np.ndarray  # bool
    discard: np.ndarray  # bool: an edit list hides the frame (decoded, never output)
    pos: list  # byte offset in the file, or -1
    packed: bool = False  # MPEG-4 packets holding two VOPs (DivX/Xvid packed B-frames)

    def __len__(self) -> int:
        return len(self.pts)

    def seek_ts(self, i: int) -> int | None:
        """The timestamp that seeks to packet ``i``: its dts (demuxers index decode times:
        AVI and MP4 land one frame late when asked for a keyframe's pts), else its pts."""
        return self.dts[i] if self.dts[i] is not None else self.pts[i]


@dataclass(frozen=True)
class FrameIndex:
    """The frames of a stream as :func:`probe` reports them (see the module docstring).

    Attributes:
        order: ``"pts"``: index = rank of the frame's pts among ``frame_pts``;
            ``"decode"``: index = the keyframe's index + frames output since it.
        reason: why this order, in words.
        num_frames: frames that decoding yields.
        keyframes: indices of the random-access points, increasing, starting at 0.
        seek_pts: per keyframe, the timestamp to seek to, its packet's dts (else pts);
            None: decode from the start.
        frame_pts: ``order == "pts"``: every frame's pts in presentation order; else ().
        counted: ``"packets"`` (packets, checked at head and tail) or ``"decoded"`` (the
            whole stream was decoded).
        frame_types: 'IPB...' per frame when the whole stream was decoded, else None.
        has_b_frames: whether B-frames (or reordering) were seen.
        damage: what went wrong when decoding failed during the checks, else None.
    """

    order: FrameOrder
    reason: str
    num_frames: int
    keyframes: tuple[int, ...]
    seek_pts: tuple[int | None, ...]
    frame_pts: tuple[int, ...]
    counted: CountMethod
    frame_types: str | None
    has_b_frames: bool
    damage: str | None = None


# -- decoding helpers --------------------------------------------------------------------


def _fast_context(vstream) -> None:
    ctx = vstream.codec_context
    ctx.options = dict(_FAST)
    ctx.thread_type = "SLICE"
    ctx.thread_count = 1


def _damage(err: Exception, frames: int, pos: int | None) -> str:
    where = f" (packet at byte {pos})" if pos is not None and pos >= 0 else ""
    return f"undecodable packet at frame {frames}{where}: {err}"


def _decode_packets(open_stream, *, limit: int | None = None, seek: int | None = None):
    """Decode from the start (or from a backward seek to ``seek``), at most ``limit``
    packets, then flush. Returns ``(frames, damage)``; ``damage`` is None when the
    decoder raised nothing."""
    out: list[DecodedFrame] = []
    with open_stream() as (container, vstream):
        _fast_context(vstream)
        ctx = vstream.codec_context
        if seek is not None:
            container.seek(seek, stream=vstream, backward=True, any_frame=False)
        fed = 0
        pos = None
        try:
            for packet in container.demux(vstream):
                if packet.size == 0:
                    continue
                if limit is not None and fed >= limit:
                    break
                fed += 1
                pos = packet.pos
                for frame in ctx.decode(packet):
                    out.append(DecodedFrame(frame.pts, bool(frame.key_frame), pict_letter(frame)))
            for frame in ctx.decode(None):
                out.append(DecodedFrame(frame.pts, bool(frame.key_frame), pict_letter(frame)))
        except av.error.FFmpegError as err:
            return out, _damage(err, len(out), pos)
    return out, None


def _scan(container, vstream, name: str) -> _Packets:
    pts, dts, key, discard, pos = [], [], [], [], []
    mpeg4 = vstream.codec_context.name == "mpeg4"
    packed = False
    try:
        for packet in container.demux(vstream):
            if packet.size == 0:
                continue  # the flush packet demux ends with
            if mpeg4 and not packed:
                packed = bytes(packet).count(b"\x00\x00\x01\xb6") > 1
            pts.append(packet.pts)
            dts.append(packet.dts)
            key.append(bool(packet.is_keyframe))
            discard.append(bool(packet.is_discard))
            pos.append(packet.pos if packet.pos is not None else -1)
    except av.error.FFmpegError as err:
        at = f" at byte {pos[-1]}" if pos and pos[-1] >= 0 else ""
        raise CorruptVideoError(
            f"reading packets failed after {len(pts)} packets{at}: {err}", source=name
        ) from err
    if not pts:
        raise EmptyVideoError("the video stream holds no packets", source=name)
    return _Packets(pts, dts, np.asarray(key, bool), np.asarray(discard, bool), pos, packed)


_DECODE_TIMES = ("timestamps are in decoding order although frames are reordered (decode "
                 "times stored as presentation times): frames in decoder output order")


def _decode_times_as_pts(packet_pts: list, output_pts: list) -> bool:
    """pts that increase in decoding order while the decoder returns them reordered: the
    muxer wrote decode times as presentation times (OpenCV's MP4 writer, some cameras)."""
    return (all(b > a for a, b in zip(packet_pts, packet_pts[1:]))
            and any(b < a for a, b in zip(output_pts, output_pts[1:])))


# -- the index -----------------------------------------------------------------------------


def _first_order(container, packets: _Packets) -> tuple[FrameOrder, str, bool]:
    """The order the packets suggest, why, and whether keyframes can be sought to."""
    shown = [p for p, d in zip(packets.pts, packets.discard) if not d]
    if all(p is None for p in packets.pts):
        return "decode", "the stream carries no timestamps: frames in decoding order", False
    if container.format.name in _DTS_ONLY_FORMATS:
        return "decode", (f"{container.format.name.upper()} stores no presentation "
                          "timestamps: frames in decoding order"), None not in packets.pts
    if any(p is None for p in shown) or len(set(shown)) != len(shown):
        return "decode", "timestamps missing or repeated: frames in decoding order", False
    return "pts", "presentation timestamps", True


def _from_decoding(frames: list[DecodedFrame], packets: _Packets, order: FrameOrder,
                   reason: str, damage: str | None, seekable: bool) -> FrameIndex:
    """The index of a whole-stream decode: exact by definition. A decode that failed
    part way (a damaged file) is not: the packets are counted instead, ``damage`` says
    where decoding fails, and reading frames past it raises CorruptVideoError."""
    if damage is not None:
        index = _from_packets(packets, order, reason, any(f.kind == "B" for f in frames))
        return dataclasses.replace(index, damage=damage)
    key_at = [int(i) for i in np.flatnonzero(packets.key)]
    key_pts = [packets.pts[i] for i in key_at]
    key_ts = [packets.seek_ts(i) for i in key_at]
    types = "".join(f.kind for f in frames)
    has_b = "B" in types
    pts = [f.pts for f in frames]
    shown = [p for p, d in zip(packets.pts, packets.discard) if not d]
    if order == "pts" and None not in pts and _decode_times_as_pts(shown, pts):
        order, reason = "decode", _DECODE_TIMES
    if order == "pts" and (None in pts or len(set(pts)) != len(pts)
                           or not set(pts) <= set(packets.pts)):
        order, reason = "decode", "decoded frames carry other timestamps than their packets"
    if order == "pts":
        table = np.sort(np.asarray(pts, np.int64))
        shown = set(pts)
        keys = [(int(np.searchsorted(table, p)), t) for p, t in zip(key_pts, key_ts)
                if p in shown]
        has_b = has_b or bool(np.any(np.diff(np.asarray(pts, np.int64)) < 0))
    else:
        table = ()
        shown_count = int((~packets.discard).sum())
        if len(frames) == shown_count and not packets.packed and not has_b:
            # one frame per packet, nothing reordered: keyframes sit where their packets
            # do (a codec may not flag its decoded keyframes, Cinepak for one)
            before = np.cumsum(~packets.discard) - ~packets.discard
            positions = [int(before[i]) for i in key_at if not packets.discard[i]]
            key_ts = [packets.seek_ts(i) for i in key_at if not packets.discard[i]]
        else:
            positions = [i for i, f in enumerate(frames) if f.key]
        # The k-th keyframe output is the k-th keyframe packet only when both counts
        # agree; otherwise never seek (decoding from the start is always right).
        seekable = seekable and len(positions) == len(key_ts) and None not in key_ts
        keys = [(i, key_ts[k] if seekable else None) for k, i in enumerate(positions)]
    keys = sorted(set(keys))
    if not keys or keys[0][0] != 0:
        keys = [(0, None), *keys]  # the first frame starts a GOP (decoded from the start)
    return FrameIndex(order, reason, len(frames), tuple(k for k, _ in keys),
                      tuple(s for _, s in keys), tuple(int(p) for p in table), "decoded",
                      types, has_b, damage)


def _from_packets(packets: _Packets, order: FrameOrder, reason: str,
                  has_b: bool) -> FrameIndex:
    shown = ~packets.discard
    if order == "pts":
        pts = np.asarray([p for p, s in zip(packets.pts, shown) if s], np.int64)
        table = np.sort(pts)
        keys = sorted({(int(np.searchsorted(table, packets.pts[i])), packets.seek_ts(i))
                       for i in np.flatnonzero(packets.key & shown)})
        has_b = has_b or bool(np.any(np.diff(pts) < 0))
    else:
        table = np.zeros(0, np.int64)
        before = np.cumsum(shown) - shown  # frames output before each packet
        keys = sorted({(int(before[i]), packets.seek_ts(i))
                       for i in np.flatnonzero(packets.key & shown)})
    if not keys or keys[0][0] != 0:
        keys = [(0, None), *keys]
    return FrameIndex(order, reason, int(shown.sum()), tuple(k for k, _ in keys),
                      tuple(s for _, s in keys), tuple(int(p) for p in table), "packets",
                      None, has_b)


def build_frame_index(open_stream, name: str, *, decode: bool = False) -> FrameIndex:
    """Index the frames of the stream that ``open_stream()`` opens (a context manager
    yielding ``(container, video_stream)``); see the module docstring for the method.
    ``decode=True`` decodes the whole stream instead of checking head and tail."""
    with open_stream() as (container, vstream):
        packets = _scan(container, vstream, name)
        order, reason, seekable = _first_order(container, packets)
    if packets.packed:
        # The decoder holds a packed P-frame back until its placeholder packet: frames
        # do not follow packets one to one, so only decoding says where keyframes fall.
        order, reason = "decode", ("MPEG-4 with packed B-frames: frames in decoder output "
                                   "order, keyframes found by decoding")
    if decode or not seekable or packets.packed:
        return _decoded(open_stream, name, packets, order, reason, seekable)

    shown = ~packets.discard
    # Head: one frame per packet, with the packets' timestamps, in an order they explain.
    key_at = np.flatnonzero(packets.key)
    if not np.any(key_at > 0):
        # One GOP: the tail check would decode the whole stream anyway
        return _decoded(open_stream, name, packets, order, reason, seekable)
    later_keys = key_at[(key_at >= 16) & (key_at <= 32)]
    window = int(later_keys[0]) if len(later_keys) else _HEAD_PACKETS
    window = min(window, len(packets))
    head, damage = _decode_packets(open_stream, limit=window)
    if damage is not None and not head:
        raise CorruptVideoError(f"the first frame does not decode: {damage}", source=name,
                                frame=0)
    expected = [p for p, s in zip(packets.pts[:window], shown[:window]) if s]
    has_b = any(f.kind == "B" for f in head)
    agrees = damage is None
    if order == "pts":
        out = [f.pts for f in head]
        if None in out or not set(out) <= set(packets.pts):
            reason = "decoded frames carry other timestamps than their packets"
            order, agrees = "decode", False
        elif agrees:
            if _decode_times_as_pts(expected, out):
                # reordered in decoding order: where keyframes fall only decoding says
                order, reason, agrees = "decode", _DECODE_TIMES, False
            agrees = agrees and set(out) == set(expected)
    else:
        # With B-frames, a keyframe's packet comes before the B-frames shown ahead of
        # it: packet positions are not frame indices, only decoding finds them.
        agrees = agrees and len(head) == len(expected) and not has_b
    if agrees:
        agrees = _tail_agrees(open_stream, packets, order, int(key_at[-1]))
    if not agrees:
        return _decoded(open_stream, name, packets, order, reason, seekable)
    return _from_packets(packets, order, reason, has_b)


def _decoded(open_stream, name: str, packets: _Packets, order: FrameOrder, reason: str,
             seekable: bool) -> FrameIndex:
    frames, damage = _decode_packets(open_stream)
    if not frames and damage is not None:
        raise CorruptVideoError(f"the first frame does not decode: {damage}", source=name,
                                frame=0)
    if not frames:
        raise EmptyVideoError("no frame could be decoded", source=name)
    return _from_decoding(frames, packets, order, reason, damage, seekable)


def _tail_agrees(open_stream, packets: _Packets, order: FrameOrder, last: int) -> bool:
    """Decode from the last keyframe (packet ``last`` > 0) to the end: does it yield
    what the packets say?"""
    target, first_pts = packets.seek_ts(last), packets.pts[last]
    if target is None:
        return False
    tail, damage = _decode_packets(open_stream, seek=target)
    if damage is not None or not tail:
        return False
    shown = ~packets.discard
    if order == "pts":
        want = {p for p, s in zip(packets.pts, shown) if s and p >= first_pts}
        return {f.pts for f in tail if f.pts is not None and f.pts >= first_pts} == want
    if tail[0].kind in ("P", "B"):
        return False
    return len(tail) == int(shown[last:].sum())
