"""Decoding in the compressed domain: motion vectors, residuals, I-frames, RGB.

Motion vectors come from FFmpeg's ``flags2=+export_mvs`` while decoding. Frame threading
is never used when vectors are exported: it corrupts B-frame vectors (see
``../shared/videos/README.md``); slice threading is safe and is what we use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Literal, Sequence

import numpy as np

import cvload_ext
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

__all__ = [
    "FrameMotion",
    "CompressedClip",
    "iter_motion_vectors",
    "motion_field",
    "read_clip",
    "STREAMS",
]

MV_COLUMNS = ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y",
              "motion_scale")
STREAMS = ("rgb", "mv", "residual", "iframe")
MvSource = Literal["bitstream", "estimate", "auto"]
_EMPTY_MVS = np.zeros((0, 10), np.int32)


# FFmpeg's AVMotionVector, as PyAV's ``MotionVectors.to_ndarray`` describes it (aligned).
# The kernel that unpacks records (``cvload_ext.unpack_motion_vectors``) has the same
# layout compiled in; PyAV's description is compared with this once, on first use.
AV_MOTION_VECTOR = np.dtype(
    [("source", "int32"), ("w", "uint8"), ("h", "uint8"), ("src_x", "int16"),
     ("src_y", "int16"), ("dst_x", "int16"), ("dst_y", "int16"), ("flags", "uint64"),
     ("motion_x", "int32"), ("motion_y", "int32"), ("motion_scale", "uint16")],
    align=True,
)
if not (AV_MOTION_VECTOR.itemsize == cvload_ext.motion.AV_MOTION_VECTOR_SIZE and all(
    AV_MOTION_VECTOR.fields[name][1] == offset and AV_MOTION_VECTOR.fields[name][0] == kind
    for name, offset, kind in cvload_ext.motion.AV_MOTION_VECTOR_FIELDS
) and tuple(f[0] for f in cvload_ext.motion.AV_MOTION_VECTOR_FIELDS) == MV_COLUMNS):
    raise ImportError("cvload_ext.unpack_motion_vectors and AV_MOTION_VECTOR disagree")
_PYAV_LAYOUT_MATCHES: bool | None = None  # checked against PyAV once, on first use

try:  # PyAV >= 14: a container over a frame's side data that the frame does not keep
    from av.sidedata.sidedata import SideDataContainer as _SideDataContainer
    from av.sidedata.sidedata import Type as _SideDataType

    _MOTION_VECTORS = _SideDataType.MOTION_VECTORS
except (ImportError, AttributeError):  # pragma: no cover - other PyAV versions
    _SideDataContainer = None
    _MOTION_VECTORS = "MOTION_VECTORS"


def motion_side_data(frame):
    """The frame's motion-vector side data (PyAV ``MotionVectors``), or None.

    ``frame.side_data`` caches its container on the frame, and the container points back
    at the frame: a reference cycle, so the frame and its FFmpeg picture buffers would
    be freed only when Python's cyclic collector next runs, tens of frames later, and the
    decoder would keep allocating fresh buffers instead of reusing warm ones (MV-only
    decoding of a 320x240 B-frame video ran at ~0.8x of plain decoding). A container
    built here points at the frame without the frame pointing back, so reference
    counting frees both as soon as the caller drops them.
    """
    if _SideDataContainer is None:  # pragma: no cover - other PyAV versions
        return frame.side_data.get(_MOTION_VECTORS)
    return _SideDataContainer(frame).get(_MOTION_VECTORS)


def vectors_from_side_data(side_data) -> np.ndarray:
    """FFmpeg's AVMotionVector records as an ``(N, 10)`` int32 array (columns MV_COLUMNS)."""
    global _PYAV_LAYOUT_MATCHES
    if side_data is None:
        return _EMPTY_MVS
    if _PYAV_LAYOUT_MATCHES is None:
        _PYAV_LAYOUT_MATCHES = side_data.to_ndarray().dtype == AV_MOTION_VECTOR
    if not _PYAV_LAYOUT_MATCHES:  # a PyAV with another record layout: the slow, sure way
        records = side_data.to_ndarray()
        return np.stack([records[name].astype(np.int32) for name in MV_COLUMNS], axis=1)
    out = np.empty((side_data.buffer_size // AV_MOTION_VECTOR.itemsize, 10), np.int32)
    if len(out):
        cvload_ext.unpack_motion_vectors(side_data.buffer_ptr, out)
    return out


@dataclass(frozen=True)
class FrameMotion:
    """Motion vectors of one decoded frame.

    Attributes:
        index: output (presentation) index of the frame.
        pts: presentation timestamp in stream time base, or None (raw streams).
        frame_type: 'I', 'P' or 'B' ('S'/'?' for rarer types).
        vectors: ``(N, 10)`` int32, columns ``source, w, h, src_x, src_y, dst_x, dst_y,
            motion_x, motion_y, motion_scale``; empty for I-frames.
    """

    index: int
    pts: int | None
    frame_type: str
    vectors: np.ndarray = field(repr=False)

    def __repr__(self) -> str:
        return (f"FrameMotion(index={self.index}, pts={self.pts}, type={self.frame_type!r}, "
                f"vectors={self.vectors.shape} {self.vectors.dtype})")


def _configure(vstream, *, export_mvs: bool, pixels_needed: bool, threads: int) -> None:
    ctx = vstream.codec_context
    options = {}
    if export_mvs:
        options["flags2"] = "+export_mvs"
    if export_mvs and not pixels_needed:
        # Vectors are parsed from the bitstream and never depend on reconstructed pixels:
        # they stay bit-identical without the loop filter and the inverse transform
        # (checked against the golden files), and decoding gets faster.
        options["skip_loop_filter"] = "all"
        options["skip_idct"] = "all"
    ctx.options = options
    ctx.thread_type = "SLICE"  # never FRAME: it corrupts exported B-frame vectors
    ctx.thread_count = threads


#: Codecs whose export was unknown in advance, learned from their first inter frame.
_LEARNED_EXPORTS: dict[str, bool] = {}


def _exports(info: VideoInfo) -> bool | None:
    known = info.exports_motion_vectors
    return known if known is not None else _LEARNED_EXPORTS.get(info.codec)


def _no_vectors(info: VideoInfo, name: str) -> NoMotionVectorsError:
    return NoMotionVectorsError(
        f"the {info.codec} decoder ({info.decoder}) exports no motion vectors", source=name,
        hint="pass mv_source='estimate' (block matching on the decoded frames) or "
             "mv_source='auto' (the bitstream's vectors where the codec has them)")


def _is_inter(frame) -> bool:
    """A predicted frame: P/B/S, or a non-key frame of a codec that sets no type."""
    kind = int(frame.pict_type)
    return kind in (2, 3, 4, 6, 7) or (kind == 0 and not frame.key_frame)


class _NoVectorsAfterAll(Exception):
    """The first inter frame of a codec not known in advance carried no vectors."""


class _BFrameWithoutVectors(Exception):
    """A requested B-frame of a codec whose decoder exports zeros for B-frames."""


def _learn_exports(info: VideoInfo, frame, side_data) -> None:
    """Decide an unknown codec's export on its first inter frame (remembered per process)."""
    if info.codec in _LEARNED_EXPORTS or not _is_inter(frame):
        return
    _LEARNED_EXPORTS[info.codec] = side_data is not None
    if side_data is None:
        raise _NoVectorsAfterAll()


def iter_motion_vectors(
    source: Source, *, stream: int | None = None, threads: int = 1,
    info: VideoInfo | None = None,
) -> Iterator[FrameMotion]:
    """Yield the motion vectors of every frame, in presentation order (see
    :attr:`VideoInfo.frame_order`).

    Equals mv-extractor's reference output frame for frame, B-frames included, and is
    identical from run to run (slice threading only, never frame threading). The loop
    filter and inverse transform are skipped: they change pixels, never vectors.

    ``threads``: FFmpeg slice threads (1 by default: parallelism belongs to DataLoader
    workers, and decoder threads alive in a process that forks workers can deadlock them).
    ``info``: a :func:`probe` result of ``source`` (probed here when not given).

    This is FFmpeg's export as it is: MPEG-4 Part 2 B-frames come with a zero vector per
    block (FFmpeg exports no B-frame motion for that codec); :func:`read_clip` refuses
    them under ``mv_source="bitstream"`` and estimates them under ``"auto"``.

    Raises:
        NoMotionVectorsError: the codec's decoder exports none (HEVC, VP9, AV1, Cinepak,
            MJPEG ...), known in advance or from the first inter frame.
        CorruptVideoError: decoding failed; names the frame reached.
        EmptyVideoError: the stream yielded no frame at all.
    """
    name = source_name(source)
    info = info if info is not None else probe(source, stream=stream)
    if _exports(info) is False:
        raise _no_vectors(info, name)
    undecided = _exports(info) is None
    count = 0
    with open_video(source, info.stream_index) as (container, vstream):
        _configure(vstream, export_mvs=True, pixels_needed=False, threads=threads)
        for index, frame in presentation_frames(container, vstream, info, 0, seek=False,
                                                name=name):
            side_data = motion_side_data(frame)
            if undecided:
                try:
                    _learn_exports(info, frame, side_data)
                except _NoVectorsAfterAll:
                    raise _no_vectors(info, name) from None
                undecided = info.codec not in _LEARNED_EXPORTS
            motion = FrameMotion(index, frame.pts, pict_letter(frame),
                                 vectors_from_side_data(side_data))
            del frame, side_data
            yield motion
            count += 1
    if count == 0:
        raise EmptyVideoError("no frame could be decoded", source=name)


def motion_field(vectors: np.ndarray, height: int, width: int, *, grid: int = 4,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Rasterise block vectors into a dense field.

    Args:
        vectors: ``(N, 10)`` int32 rows as from :func:`iter_motion_vectors`.
        height, width: frame size in pixels.
        grid: cell size in pixels.
        out: optional ``(ceil(H/grid), ceil(W/grid), 4)`` float32 buffer, overwritten
            entirely; reusing one avoids a fresh allocation per frame.

    Returns:
        ``(ceil(H/grid), ceil(W/grid), 4)`` float32 ``[L0 dx, L0 dy, L1 dx, L1 dy]``:
        offsets in pixels (``motion / motion_scale``, sub-pel kept) from each cell to where
        its content lies in the past (L0) and future (L1) reference. 0 where no block.
    """
    if grid < 1:
        raise InvalidArgumentError(f"Invalid grid {grid!r}: must be a positive integer.")
    if vectors.dtype != np.int32 or not vectors.flags.c_contiguous:
        vectors = np.ascontiguousarray(vectors, dtype=np.int32)
    if vectors.ndim != 2 or vectors.shape[1] != 10:
        raise InvalidArgumentError(f"vectors must be (N, 10) int32, got {vectors.shape}.")
    shape = (-(-height // grid), -(-width // grid), 4)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise InvalidArgumentError(
            f"out must be a C-contiguous float32 array of shape {shape}, got "
            f"{out.shape} {out.dtype}.")
    cvload_ext.rasterize_motion(vectors, int(grid), out)
    return out


def estimate_vectors(cur_luma: np.ndarray, ref_luma: np.ndarray, *, block: int = 16,
                     search: int = 16) -> np.ndarray:
    """Block-matching motion vectors of ``cur_luma`` against ``ref_luma`` (``(H, W)`` uint8).

    Returns ``(N, 10)`` int32 in the FFmpeg layout (``source=-1``, integer-pel,
    ``motion_scale=1``), one row per whole ``block x block`` block.
    """
    if block not in (8, 16):
        raise InvalidArgumentError(f"Invalid block {block!r}. Supported values are 8 and 16.")
    if search < 1:
        raise InvalidArgumentError(f"Invalid search range {search!r}: must be >= 1 pixel.")
    cur = np.ascontiguousarray(cur_luma, np.uint8)
    ref = np.ascontiguousarray(ref_luma, np.uint8)
    out = np.empty(((cur.shape[0] // block) * (cur.shape[1] // block), 10), np.int32)
    n = cvload_ext.block_match(cur, ref, block, search, out)
    return out[:n]


@dataclass(frozen=True, repr=False)
class CompressedClip:
    """What :func:`read_clip` returns; only the requested arrays are set (others None).

    Attributes (T requested frames, G GOPs they touch, h = ceil(H/mv_grid) ...):
        source: printable name of the source.
        indices: ``(T,)`` int64 output indices of the frames.
        frame_types: T letters, 'I', 'P' or 'B'.
        pts: ``(T,)`` int64 timestamps (-1 where the stream has none).
        gop_ids: ``(T,)`` int64 index of each frame's GOP in the file (from keyframes).
        rgb: ``(T, H, W, 3)`` uint8 decoded frames.
        mv: ``(T, h, w, 4)`` float32 motion fields ``[L0 dx, L0 dy, L1 dx, L1 dy]`` in
            pixels; with ``accumulate=True`` ``(T, h, w, 2)``, the offset to the GOP's
            I-frame (CoViAR).
        residual: ``(T, H, W, 3)`` int16, frame minus motion-compensated prediction (with
            ``accumulate=True``: minus the I-frame warped by the accumulated motion);
            0 for I-frames.
        iframe: ``(G, H, W, 3)`` uint8 the keyframes of the GOPs in ``gop_ids`` order:
            ``iframe[np.searchsorted(iframe_gops, gop_ids)]`` gives each frame's I-frame.
        iframe_gops: ``(G,)`` int64 GOP ids of the rows of ``iframe``.
        mv_estimated: True when vectors come from block matching, not the bitstream.
        accumulate: whether ``mv``/``residual`` are CoViAR's accumulated forms.
    """

    source: str
    indices: np.ndarray
    frame_types: str
    pts: np.ndarray
    gop_ids: np.ndarray
    rgb: np.ndarray | None = None
    mv: np.ndarray | None = None
    residual: np.ndarray | None = None
    iframe: np.ndarray | None = None
    iframe_gops: np.ndarray | None = None
    mv_estimated: bool = False
    accumulate: bool = False

    def __post_init__(self) -> None:
        t = len(self.indices)
        if len(self.frame_types) != t or len(self.pts) != t or len(self.gop_ids) != t:
            raise ValueError("indices, frame_types, pts and gop_ids must have the same length")
        for name in ("rgb", "mv", "residual"):
            arr = getattr(self, name)
            if arr is not None and arr.shape[0] != t:
                raise ValueError(f"{name} has {arr.shape[0]} frames, expected {t}")

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        parts = [f"source={self.source!r}", f"frames={len(self)}",
                 f"types={self.frame_types!r}"]
        for name in ("rgb", "mv", "residual", "iframe"):
            arr = getattr(self, name)
            if arr is not None:
                parts.append(f"{name}={tuple(arr.shape)} {arr.dtype}")
        if self.mv_estimated:
            parts.append("mv_estimated=True")
        if self.accumulate:
            parts.append("accumulate=True")
        return f"CompressedClip({', '.join(parts)})"


def read_clip(
    source: Source,
    *,
    start: int,
    num_frames: int,
    step: int = 1,
    streams: Sequence[str] = STREAMS,
    size: tuple[int, int] | int | None = None,
    mv_grid: int = 4,
    accumulate: bool = False,
    stream: int | None = None,
    mv_source: MvSource = "bitstream",
    info: VideoInfo | None = None,
    threads: int = 1,
) -> CompressedClip:
    """Decode ``num_frames`` frames ``start, start+step, ...`` in the requested ``streams``.

    Seeks to the keyframe at or before ``start`` and decodes no further than needed (for
    a B-frame residual, up to its future reference). RGB is converted only for the frames
    that need it. ``size=(H, W)`` (or one int for square) resizes rgb, residual and
    I-frames, and scales the motion fields to the new size.

    ``mv_source``: ``"bitstream"`` uses the exported vectors and raises
    :class:`NoMotionVectorsError` when the decoder has none; ``"estimate"`` runs block
    matching on decoded luma against the previous frame (16x16 blocks, +-16 px);
    ``"auto"`` uses the bitstream where it can, else estimates.

    Residual model: the past reference of a P/B-frame is the nearest I/P-frame before it
    in output order, the future reference of a B-frame the nearest I/P-frame after it
    (FFmpeg does not export reference indices); with estimated vectors the reference is
    the previous frame. ``prediction + residual`` equals the decoded frame exactly.

    ``info`` may pass a :func:`probe` result to avoid probing again.
    """
    streams = tuple(streams)
    bad = [s for s in streams if s not in STREAMS]
    if bad or not streams:
        raise InvalidArgumentError(
            f"Invalid streams {streams!r}. Supported values are {', '.join(map(repr, STREAMS))}."
        )
    if mv_source not in ("bitstream", "estimate", "auto"):
        raise InvalidArgumentError(
            f"Invalid mv_source {mv_source!r}. Supported values are 'bitstream', 'estimate' "
            "and 'auto'."
        )
    if num_frames < 1 or step < 1 or start < 0:
        raise InvalidArgumentError(
            f"Invalid clip start={start}, num_frames={num_frames}, step={step}: need start >= 0, "
            "num_frames >= 1 and step >= 1."
        )
    indices = start + step * np.arange(num_frames, dtype=np.int64)
    return read_frames(source, indices, streams=streams, size=size, mv_grid=mv_grid,
                       accumulate=accumulate, stream=stream, mv_source=mv_source, info=info,
                       threads=threads)


def read_frames(
    source: Source,
    indices: Sequence[int] | np.ndarray,
    *,
    streams: Sequence[str] = STREAMS,
    size: tuple[int, int] | int | None = None,
    mv_grid: int = 4,
    accumulate: bool = False,
    stream: int | None = None,
    mv_source: MvSource = "bitstream",
    info: VideoInfo | None = None,
    threads: int = 1,
) -> CompressedClip:
    """Like :func:`read_clip` for any non-decreasing frame ``indices`` (repeats allowed).

    Decoding starts at the keyframe at or before the first index; layouts that need
    frames of several GOPs far apart call it once per GOP. Frames are the ones sequential
    decoding gives, in presentation order (see :attr:`VideoInfo.frame_order`): when a
    seek lands elsewhere than the index expects, or a frame is not returned after it, the
    stream is decoded from its start, and only a frame that decoding from the start does
    not give either is an error.
    """
    streams = tuple(streams)
    name = source_name(source)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or len(indices) == 0 or np.any(np.diff(indices) < 0) or indices[0] < 0:
        raise InvalidArgumentError(
            "indices must be a non-empty, non-decreasing sequence of frame indices >= 0."
        )
    info = info if info is not None else probe(source, stream=stream)
    if indices[-1] >= info.num_frames:
        raise InvalidArgumentError(
            f"frames {int(indices[0])}..{int(indices[-1])} run past the end of the "
            f"video ({info.num_frames} frames)", source=name,
            hint="choose a smaller start, num_frames or step",
        )
    want_mv = "mv" in streams or "residual" in streams or accumulate
    estimated = want_mv and mv_source == "estimate"
    if want_mv and not estimated and _exports(info) is False:
        if mv_source == "bitstream":
            raise _no_vectors(info, name)
        estimated = True
    request = _Request(source, name, info, indices, streams, accumulate, want_mv, threads)
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
    keyframes = np.asarray(info.keyframes, np.int64)
    return _assemble(name, info, frames, indices, streams, size, mv_grid, accumulate,
                     estimated, keyframes)


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
                    undecided = info.codec not in _LEARNED_EXPORTS
                record["vectors"] = vectors_from_side_data(side_data)
                del side_data
        elif undecided:
            _learn_exports(info, frame, motion_side_data(frame))
            undecided = info.codec not in _LEARNED_EXPORTS
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


def _references(frames: dict[int, dict], estimated: bool):
    """For every decoded index: (past reference index, future reference index or None)."""
    order = sorted(frames)
    refs: dict[int, tuple[int | None, int | None]] = {}
    last_ref: int | None = None
    for pos, i in enumerate(order):
        kind = frames[i]["type"]
        if estimated:
            refs[i] = (order[pos - 1] if pos > 0 else None, None)
            continue
        future = None
        if kind == "B":
            future = next((j for j in order[pos + 1:] if frames[j]["type"] != "B"), None)
        refs[i] = (last_ref, future)
        if kind != "B":
            last_ref = i
    return refs


def _assemble(name, info, frames, indices, streams, size, mv_grid, accumulate, estimated,
              keyframes) -> CompressedClip:
    height, width = info.height, info.width
    any_rgb = next((r["rgb"] for r in frames.values() if "rgb" in r), None)
    if any_rgb is not None:
        height, width = any_rgb.shape[:2]
    refs = _references(frames, estimated)
    want_mv = "mv" in streams
    need_residual = "residual" in streams
    t = len(indices)
    gop_ids = np.searchsorted(keyframes, indices, side="right").astype(np.int64) - 1
    types = "".join(frames[int(i)]["type"] for i in indices)
    pts = np.array([frames[int(i)]["pts"] for i in indices], np.int64)

    # Vectors per frame: exported or estimated against the previous frame.
    if estimated:
        requested = set(indices.tolist())
        for i in sorted(frames):
            r = frames[i]
            if i not in requested and not accumulate:
                continue  # only requested frames (and, accumulating, the whole chain)
            past = refs[i][0]
            r["vectors"] = (_EMPTY_MVS if past is None or r["type"] == "I" and i in keyframes
                            else estimate_vectors(r["luma"], frames[past]["luma"]))

    rgb = np.stack([frames[int(i)]["rgb"] for i in indices]) if "rgb" in streams else None
    mv = residual = None
    if accumulate:
        mv, residual = _accumulated(frames, refs, indices, keyframes, height, width, mv_grid,
                                    need_residual)
        if not want_mv:
            mv = None
    else:
        if want_mv:
            mv = np.empty((t, -(-height // mv_grid), -(-width // mv_grid), 4), np.float32)
            for k, i in enumerate(indices):
                motion_field(frames[int(i)]["vectors"], height, width, grid=mv_grid, out=mv[k])
        if need_residual:
            residual = np.empty((t, height, width, 3), np.int16)
            scratch: dict = {}
            for k, i in enumerate(indices):
                _residual(frames, refs, int(i), residual[k], scratch)
    iframe = iframe_gops = None
    if "iframe" in streams:
        iframe_gops = np.unique(gop_ids)
        iframe = np.stack([frames[int(keyframes[g])]["rgb"] for g in iframe_gops])
    if size is not None:
        rgb, mv, residual, iframe = _resize(size, rgb, mv, residual, iframe, height, width)
    return CompressedClip(
        source=name, indices=indices, frame_types=types, pts=pts, gop_ids=gop_ids, rgb=rgb,
        mv=mv, residual=residual, iframe=iframe, iframe_gops=iframe_gops,
        mv_estimated=estimated, accumulate=accumulate,
    )


def predict(frames, refs, index: int, scratch: dict | None = None) -> np.ndarray:
    """Motion-compensated prediction of frame ``index`` (``(H, W, 3)`` uint8).

    ``scratch``: a dict kept across the frames of one clip; the prediction and its
    coverage map are written into buffers it holds (fresh multi-megabyte arrays cost a
    page fault per 4 KiB on first touch, which was a third of the kernel's time).
    """
    record = frames[index]
    past, future = refs[index]
    if past is None or record["type"] == "I":
        return record["rgb"]  # intra: predicted by itself, residual 0
    ref0 = frames[past]["rgb"]
    ref1 = frames[future]["rgb"] if future is not None else ref0
    scratch = {} if scratch is None else scratch
    out = scratch.get("prediction")
    if out is None or out.shape != ref0.shape:
        out = scratch["prediction"] = np.empty_like(ref0)
        scratch["count"] = np.empty(ref0.shape[:2], np.uint8)
    cvload_ext.motion_compensate(ref0, ref1, record["vectors"], scratch["count"], out)
    return out


def _residual(frames, refs, index: int, out: np.ndarray, scratch: dict) -> np.ndarray:
    """``frame - prediction`` into ``out`` (int16), in one pass; 0 for intra frames."""
    record = frames[index]
    if refs[index][0] is None or record["type"] == "I":
        out.fill(0)  # predicted by itself (see `predict`): nothing to subtract
    else:
        cvload_ext.subtract(record["rgb"], predict(frames, refs, index, scratch), out)
    return out


def _pixel_l0(vectors: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-pixel L0 offsets ``(H, W, 2)`` float32 (0 where no L0 block)."""
    dense = motion_field(vectors, height, width, grid=1)
    return np.ascontiguousarray(dense[:, :, :2])


def _accumulated(frames, refs, indices, keyframes, height, width, grid, need_residual):
    """CoViAR: motion traced back to the GOP's I-frame, and the residual against it."""
    acc: dict[int, np.ndarray] = {}
    for i in sorted(frames):
        past = refs[i][0]
        if frames[i]["type"] == "I" or past is None or past not in acc or i in keyframes:
            acc[i] = np.zeros((height, width, 2), np.float32)
            continue
        out = np.empty((height, width, 2), np.float32)
        cvload_ext.accumulate_motion(acc[past], _pixel_l0(frames[i]["vectors"], height, width),
                                     out)
        acc[i] = out
    # cell centres, as motion_field rasterises them: ceil(H/grid) x ceil(W/grid) cells,
    # the centre of a last partial cell clamped into the frame
    rows = np.minimum(np.arange(-(-height // grid)) * grid + grid // 2, height - 1)
    cols = np.minimum(np.arange(-(-width // grid)) * grid + grid // 2, width - 1)
    mv = np.stack([acc[int(i)][rows][:, cols] for i in indices])
    residual = None
    if need_residual:
        res = []
        for i in indices:
            i = int(i)
            key = int(keyframes[np.searchsorted(keyframes, i, side="right") - 1])
            warped = np.empty_like(frames[i]["rgb"])
            cvload_ext.warp(frames[key]["rgb"], acc[i], warped)
            diff = np.empty(warped.shape, np.int16)
            cvload_ext.subtract(frames[i]["rgb"], warped, diff)
            res.append(diff)
        residual = np.stack(res)
    return mv, residual


def _resize(size, rgb, mv, residual, iframe, height, width):
    import torch
    import torch.nn.functional as F

    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def images(arr, dtype, lo, hi, chunk=16):
        if arr is None:
            return None
        out = np.empty((arr.shape[0], out_h, out_w, arr.shape[3]), dtype)
        for s in range(0, arr.shape[0], chunk):  # bounded memory for long clips
            x = torch.from_numpy(arr[s:s + chunk]).permute(0, 3, 1, 2).float()
            x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", antialias=True,
                              align_corners=False)
            out[s:s + chunk] = x.round().clamp(lo, hi).permute(0, 2, 3, 1).numpy()
        return out

    rgb = images(rgb, np.uint8, 0, 255)
    iframe = images(iframe, np.uint8, 0, 255)
    residual = images(residual, np.int16, -255, 255)
    if mv is not None:
        grid_h = max(1, round(mv.shape[1] * out_h / height))
        grid_w = max(1, round(mv.shape[2] * out_w / width))
        x = torch.from_numpy(mv).permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(grid_h, grid_w), mode="nearest")
        scale = torch.tensor([out_w / width, out_h / height] * (mv.shape[3] // 2))
        mv = (x.permute(0, 2, 3, 1) * scale).contiguous().numpy().astype(np.float32)
    return rgb, mv, residual, iframe
