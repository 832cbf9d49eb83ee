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
from cvload.video._clip import CompressedClip
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

__all__ = ["CompressedClip", "MvSource", "ReadOptions", "STREAMS", "read_clip", "read_frames"]



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


def _collect(request: _Request, estimated: bool) -> dict[int, dict]:
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


def _decode_span(request: _Request, ordered, first_key: int, estimated: bool) -> dict:
    """Records of the frames from ``first_key`` to the last one needed (``ordered`` gives
    ``(index, frame)`` in presentation order): type, pts, and RGB, vectors or luma only
    where the request uses them."""
    info, streams, accumulate = request.info, request.streams, request.accumulate
    indices = request.indices
    keyset = set(info.keyframes)
    last = int(indices[-1])
    wanted = set(indices.tolist())
    need_residual = "residual" in streams
    need_rgb = "rgb" in streams or need_residual
    want_iframe = "iframe" in streams
    vectors = request.want_mv and not estimated
    undecided = vectors and _exports(info) is None
    frames: dict[int, dict] = {}
    reference = None  # (index, decoded frame) of the latest possible reference
    previous = None  # (index, decoded frame) just before this one
    future_needed = False  # a requested B-frame waits for its future reference
    for index, frame in ordered:
        if index > last and not future_needed:
            break
        kind = pict_letter(frame)
        record = {"type": kind, "pts": -1 if frame.pts is None else int(frame.pts)}
        requested = index in wanted
        if (requested and need_rgb) or (index in keyset and (
                want_iframe or (need_residual and accumulate))):
            # accumulated residuals warp the GOP's I-frame; plain residuals convert their
            # references lazily (see `reference` below)
            record["rgb"] = to_rgb(frame)
        # Vectors (or luma to estimate them) only where they are used: requested frames,
        # and with accumulate=True every frame of the chain.
        if requested or accumulate:
            if estimated:
                record["luma"] = to_gray(frame)
                if previous is not None and "luma" not in frames[previous[0]]:
                    frames[previous[0]]["luma"] = to_gray(previous[1])
            elif vectors:
                if requested and kind == "B" and info.codec in ZERO_BFRAME_VECTOR_CODECS:
                    raise _BFrameWithoutVectors(index)  # its vectors would be silent zeros
                side_data = motion_side_data(frame)
                if undecided:
                    _learn_exports(info, frame, side_data)
                    undecided = _undecided(info)
                record["vectors"] = vectors_from_side_data(side_data)
                del side_data
        elif undecided:
            _learn_exports(info, frame, motion_side_data(frame))
            undecided = _undecided(info)
        previous = (index, frame)
        frames[index] = record
        if need_residual and not accumulate:
            # Convert a reference only when a requested frame predicts from it.
            if requested and reference is not None and kind != "I":
                ref_index, ref_frame = reference
                if "rgb" not in frames[ref_index]:
                    frames[ref_index]["rgb"] = to_rgb(ref_frame)
            if future_needed and kind != "B":  # future reference of a requested B
                if "rgb" not in record:
                    record["rgb"] = to_rgb(frame)
                future_needed = False
            if requested and kind == "B" and not estimated:
                future_needed = True
            if estimated or kind != "B":
                reference = (index, frame)
        del frame
        if index >= last and not future_needed:
            break
    return frames
