"""Reading clips: which frames a clip needs, decoding them once (from the nearest
keyframe), and handing them to :mod:`cvload.video._predict` to assemble RGB, motion
vectors, residuals and I-frames.

Motion vectors come from FFmpeg's ``flags2=+export_mvs`` while decoding. Frame threading
is never used when vectors are exported: it corrupts B-frame vectors (see
``../shared/videos/README.md``); slice threading is safe and is what we use.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cvload.errors import (
    CorruptVideoError,
    EmptyVideoError,
    InvalidArgumentError,
    NoMotionVectorsError,
)
from cvload.video._capabilities import ZERO_BFRAME_VECTOR_CODECS
from cvload.video._order import SeekMissed, presentation_frames
from cvload.video._probe import VideoInfo, pict_letter, probe
from cvload.video._source import Source, open_video, source_name, to_gray, to_rgb
from cvload.video._clip import CompressedClip, FrameRecord
from cvload.video._options import STREAMS, MvSource, ReadOptions
from cvload.video._motion import (
    _BFrameWithoutVectors,
    _configure,
    _exports,
    _learn_exports,
    _no_vectors,
    _undecided,
    _NoVectorsAfterAll,
)
from cvload.video._predict import _assemble
from cvload.video._side_data import motion_side_data, vectors_from_side_data

__all__ = ["CompressedClip", "FrameRecord", "MvSource", "ReadOptions", "STREAMS", "read_clip",
           "read_frames"]



def read_clip(source: Source, *, start: int, num_frames: int, step: int = 1,
              info: VideoInfo | None = None, options: ReadOptions | None = None,
              **read_options) -> CompressedClip:
    """Decode ``num_frames`` frames ``start, start+step, ...``.

    How: the fields of :class:`ReadOptions` as keywords (``streams``, ``size``,
    ``mv_grid``, ``accumulate``, ``stream``, ``mv_source``, ``threads``), or a whole
    ``options=`` (keywords then override its fields). Seeks to the keyframe at or before
    ``start`` and decodes no further than needed (for a B-frame residual, up to its
    future reference). RGB is converted only for the frames that need it.

    Residual model: the past reference of a P/B-frame is the nearest I/P-frame before it
    in output order, the future reference of a B-frame the nearest I/P-frame after it
    (FFmpeg does not export reference indices); with estimated vectors the reference is
    the previous frame. ``prediction + residual`` equals the decoded frame exactly.

    ``info`` may pass a :func:`probe` result to avoid probing again.
    """
    if num_frames < 1 or step < 1 or start < 0:
        raise InvalidArgumentError(
            f"Invalid clip start={start}, num_frames={num_frames}, step={step}: need start >= 0, "
            "num_frames >= 1 and step >= 1."
        )
    indices = start + step * np.arange(num_frames, dtype=np.int64)
    return read_frames(source, indices, info=info, options=_options(options, read_options))


def _options(options: ReadOptions | None, overrides: dict) -> ReadOptions:
    if options is None:
        return ReadOptions(**overrides)
    return dataclasses.replace(options, **overrides) if overrides else options


def read_frames(source: Source, indices: Sequence[int] | np.ndarray, *,
                info: VideoInfo | None = None, options: ReadOptions | None = None,
                **read_options) -> CompressedClip:
    """Like :func:`read_clip` for any non-decreasing frame ``indices`` (repeats allowed).

    Decoding starts at the keyframe at or before the first index; layouts that need
    frames of several GOPs far apart call it once per GOP. Frames are the ones sequential
    decoding gives, in presentation order (see :attr:`VideoInfo.frame_order`): when a
    seek lands elsewhere than the index expects, or a frame is not returned after it, the
    stream is decoded from its start, and only a frame that decoding from the start does
    not give either is an error.
    """
    options = _options(options, read_options)
    name = source_name(source)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or len(indices) == 0 or np.any(np.diff(indices) < 0) or indices[0] < 0:
        raise InvalidArgumentError(
            "indices must be a non-empty, non-decreasing sequence of frame indices >= 0."
        )
    info = info if info is not None else probe(source, stream=options.stream)
    if indices[-1] >= info.num_frames:
        raise InvalidArgumentError(
            f"frames {int(indices[0])}..{int(indices[-1])} run past the end of the "
            f"video ({info.num_frames} frames)", source=name,
            hint="choose a smaller start, num_frames or step",
        )
    mv_source, want_mv = options.mv_source, options.wants_motion
    estimated = want_mv and mv_source == "estimate"
    if want_mv and not estimated and _exports(info) is False:
        if mv_source == "bitstream":
            raise _no_vectors(info, name)
        estimated = True
    request = _Request(source, name, info, indices, options.streams, options.accumulate,
                       want_mv, options.threads)
    try:
        frames = _collect(request, estimated)
    except _NoVectorsAfterAll:
        if mv_source == "bitstream":
            raise _no_vectors(info, name) from None
        estimated = True
        frames = _collect(request, estimated)
    except _BFrameWithoutVectors as err:
        if mv_source == "bitstream":
            raise NoMotionVectorsError(
                f"the {info.codec} decoder ({info.decoder}) exports only zero vectors for "
                f"B-frames, and frame {err.args[0]} is one", source=name, frame=err.args[0],
                hint="pass mv_source='auto' (block matching for clips with B-frames) or "
                     "'estimate', or choose P-frames") from None
        estimated = True
        frames = _collect(request, estimated)
    return _assemble(name, info, frames, indices, options, estimated)


@dataclass(frozen=True)
class _Request:
    """What :func:`read_frames` was asked for, as its decoding loop needs it."""

    source: Source
    name: str
    info: VideoInfo
    indices: np.ndarray
    streams: tuple[str, ...]
    accumulate: bool
    want_mv: bool
    threads: int


def _collect(request: _Request, estimated: bool) -> dict[int, FrameRecord]:
    """Decode the frames of ``request``: seeking first, from the start if that fails."""
    info, indices = request.info, request.indices
    keyframes = np.asarray(info.keyframes, np.int64)
    gop = int(np.searchsorted(keyframes, indices[0], side="right") - 1)
    can_seek = gop > 0 and info.keyframe_seek[gop] is not None
    for seek in ((True, False) if can_seek else (False,)):
        with open_video(request.source, info.stream_index) as (container, vstream):
            pixels = estimated or any(s in request.streams for s in ("rgb", "residual", "iframe"))
            _configure(vstream, export_mvs=request.want_mv and not estimated,
                       pixels_needed=pixels, threads=request.threads)
            ordered = presentation_frames(container, vstream, info, gop, seek=seek,
                                          name=request.name)
            try:
                frames = _decode_span(request, ordered, int(keyframes[gop]), estimated)
            except SeekMissed:
                continue
        missing = [int(i) for i in indices if int(i) not in frames]
        if not missing:
            return frames
    if not frames:
        raise EmptyVideoError("no frame could be decoded", source=request.name,
                              frame=int(keyframes[gop]))
    raise CorruptVideoError(
        f"the decoder never returns frame {missing[0]}, also when decoding from the start "
        f"({len(frames)} frames decoded from keyframe {int(keyframes[gop])}): the stream is "
        "damaged there", source=request.name, frame=missing[0],
        hint="probe(..., decode=True) counts the frames by decoding them all; skip this "
             "video with handler='skip'")


@dataclass(frozen=True)
class _Needs:
    """What each frame index needs, decided from the request before decoding."""

    wanted: frozenset
    keyframes: frozenset
    last: int
    rgb: bool  # requested frames need RGB (rgb, or residual against their own pixels)
    residual: bool
    iframe: bool
    accumulate: bool
    vectors: bool  # exported vectors are read (not estimated)
    estimated: bool

    @classmethod
    def of(cls, request: "_Request", estimated: bool) -> "_Needs":
        streams = request.streams
        return cls(frozenset(request.indices.tolist()), frozenset(request.info.keyframes),
                   int(request.indices[-1]), "rgb" in streams or "residual" in streams,
                   "residual" in streams, "iframe" in streams, request.accumulate,
                   request.want_mv and not estimated, estimated)

    def rgb_of(self, index: int) -> bool:
        """RGB converted as soon as decoded: requested frames, and keyframes that give
        I-frames or the base that accumulated residuals warp (plain residuals convert
        their references lazily, see :class:`_References`)."""
        if index in self.wanted and self.rgb:
            return True
        return index in self.keyframes and (self.iframe or (self.residual and self.accumulate))

    def motion_of(self, index: int) -> bool:
        """Vectors (or luma to estimate them): requested frames, and with
        ``accumulate`` every frame of the chain."""
        return index in self.wanted or self.accumulate


class _References:
    """Plain residuals need the RGB of the references their requested frames predict
    from; those are converted only when such a frame turns up (a requested B-frame also
    waits for its future reference)."""

    def __init__(self, needs: _Needs) -> None:
        self.active = needs.residual and not needs.accumulate
        self.estimated = needs.estimated
        self.reference = None  # (record, decoded frame) of the latest possible reference
        self.future_needed = False

    def update(self, record: FrameRecord, frame, requested: bool) -> None:
        if not self.active:
            return
        kind = record.type
        if requested and self.reference is not None and kind != "I":
            ref_record, ref_frame = self.reference
            if ref_record.rgb is None:
                ref_record.rgb = to_rgb(ref_frame)
        if self.future_needed and kind != "B":  # the future reference of a requested B
            if record.rgb is None:
                record.rgb = to_rgb(frame)
            self.future_needed = False
        if requested and kind == "B" and not self.estimated:
            self.future_needed = True
        if self.estimated or kind != "B":
            self.reference = (record, frame)


def _decode_span(request: _Request, ordered, first_key: int,
                 estimated: bool) -> dict[int, FrameRecord]:
    """The frames from ``first_key`` to the last one needed (``ordered`` gives ``(index,
    frame)`` in presentation order), each holding only what the request uses of it."""
    info = request.info
    needs = _Needs.of(request, estimated)
    undecided = needs.vectors and _exports(info) is None
    zero_b_vectors = info.codec in ZERO_BFRAME_VECTOR_CODECS
    references = _References(needs)
    frames: dict[int, FrameRecord] = {}
    previous = None  # (record, decoded frame) just before this one
    for index, frame in ordered:
        if index > needs.last and not references.future_needed:
            break
        requested = index in needs.wanted
        record = FrameRecord(pict_letter(frame), -1 if frame.pts is None else int(frame.pts))
        if needs.rgb_of(index):
            record.rgb = to_rgb(frame)
        if needs.motion_of(index) and estimated:
            record.luma = to_gray(frame)
            if previous is not None and previous[0].luma is None:
                previous[0].luma = to_gray(previous[1])
        elif needs.motion_of(index) and needs.vectors:
            if requested and record.type == "B" and zero_b_vectors:
                raise _BFrameWithoutVectors(index)  # its vectors would be silent zeros
            side_data = motion_side_data(frame)
            if undecided:
                _learn_exports(info, frame, side_data)
                undecided = _undecided(info)
            record.vectors = vectors_from_side_data(side_data)
            del side_data
        elif undecided:
            _learn_exports(info, frame, motion_side_data(frame))
            undecided = _undecided(info)
        frames[index] = record
        references.update(record, frame, requested)
        previous = (record, frame)
        del frame
        if index >= needs.last and not references.future_needed:
            break
    return frames
