"""Motion vectors per frame: iterating a stream's exported vectors (learning on first use
whether a decoder exports them), dense motion fields, and block-matching estimation for
codecs without vectors.

Frame threading is never used when vectors are exported: it corrupts B-frame vectors (see
``../shared/videos/README.md``); slice threading is safe and is what we use."""


from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

import cvload_ext
from cvload.errors import (
    EmptyVideoError,
    InvalidArgumentError,
    NoMotionVectorsError,
)
from cvload.video._order import presentation_frames
from cvload.video._probe import VideoInfo, pict_letter, probe
from cvload.video._source import Source, open_video, source_name
from cvload.video._side_data import motion_side_data, vectors_from_side_data

__all__ = ["FrameMotion", "estimate_vectors", "iter_motion_vectors", "motion_field"]

@dataclass(frozen=True)
class FrameMotion:
    """Motion vectors of one decoded frame.

    Attributes:
        index: output (presentation) index of the frame.
        pts: presentation timestamp in stream time base, or None (raw streams).
        frame_type: 'I", "P' or 'B' ('S'/'?' for rarer types).
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


def _undecided(info: VideoInfo) -> bool:
    """Whether this process has yet to see an inter frame of ``info.codec``."""
    return info.codec not in _LEARNED_EXPORTS


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
