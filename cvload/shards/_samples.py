"""One sample of a shard from one planned clip: cutting a video into clips, remuxing a
clip's packets without re-encoding (``video``), decoding it to frames (``rgb``) or to
neural codes (``codes``)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import av

from cvload.errors import InvalidArgumentError, ShardError

__all__ = ["FORMATS", "Clip", "Format", "PackedVideo"]

Format = Literal["codes", "video", "rgb"]

FORMATS = ("codes", "video", "rgb")

@dataclass(frozen=True)
class PackedVideo:
    """One probed input of a pack run: its sample-key prefix ``id``, path, label (or
    ``None``), :class:`cvload.video.VideoInfo` and file sha256."""

    id: str
    path: str
    label: int | None
    info: object
    sha256: str


@dataclass(frozen=True)
class Clip:
    """One planned sample: frames ``[start, start + frames)`` of video ``video``."""

    video: int
    start: int
    frames: int

def _plan_video(path: str, fmt: str, clip_frames: int, clip_stride: int):
    """Clips of one video: ``(info, [Clip...])``. Raises CvloadError for bad videos."""
    from cvload.video import probe

    info = probe(path)
    if info.num_frames < clip_frames:
        raise InvalidArgumentError(
            f"{info.num_frames} frames, fewer than --clip-frames {clip_frames}", source=path)
    clips = []
    if fmt == "video":
        # GOP-aligned: start at a keyframe, end at the first keyframe that completes the clip
        keys = list(info.keyframes) + [info.num_frames]
        next_start = 0
        for k, key in enumerate(keys[:-1]):
            if key < next_start:
                continue
            end = next((e for e in keys[k + 1:] if e - key >= clip_frames), None)
            if end is None:
                break
            clips.append(Clip(-1, key, end - key))
            next_start = key + clip_stride
    else:
        for start in range(0, info.num_frames - clip_frames + 1, clip_stride):
            clips.append(Clip(-1, start, clip_frames))
    return info, clips


# -- samples -------------------------------------------------------------------------------

def _remux(path: str, info, start: int, frames: int) -> tuple[bytes, str, int]:
    """Packets of frames ``[start, start + frames)`` (a GOP-aligned span: ``start`` is a
    keyframe) copied into a new container without re-encoding. Returns the bytes, the
    member suffix and the number of frames the segment holds.

    Streams ordered by pts go to MP4 (Matroska for codecs MP4 cannot hold: VP8, ProRes,
    FLV1 ...) with their timestamps shifted to start at 0. Streams in decoding order (AVI,
    MP4s storing decode times) keep their packets in that order, numbered 0, 1, ... (AVI
    stays AVI; others go to MP4 or Matroska); raw streams stay raw.

    The cut is made at the next keyframe in decode order. In open-GOP streams the next
    GOP's leading pictures (presented before its keyframe, decoded after it) depend on that
    keyframe and stay out, so the segment may hold fewer frames than planned: the number
    kept is returned, always the first frames of the span, and recorded in the metadata."""
    by_pts = info.frame_order == "pts"
    raw = {"h264": "h264", "hevc": "hevc"}.get(info.codec)
    if not info.has_timestamps:
        if raw is None:
            raise InvalidArgumentError(f"cannot cut {info.codec} without timestamps", source=path)
        candidates = [(raw, {"h264": "264", "hevc": "h265"}[raw])]
    elif by_pts or info.container != "avi":
        # MP4 holds fewer codecs than Matroska, AVI (by FourCC) some neither does (FLV1)
        candidates = [("mp4", "mp4"), ("matroska", "mkv"), ("avi", "avi")]
    else:
        candidates = [("avi", "avi"), ("matroska", "mkv")]
    for fmt, suffix in candidates:
        try:
            data, kept = _copy_packets(path, info, start, frames, fmt)
        except _NoMuxer:
            continue
        if info.frame_order == "decode" and info.has_b_frames:
            # Packets are not frames here: the keyframe's packet comes before B-frames
            # shown ahead of it (which the decoder drops without their past reference),
            # and the B-frames shown before the next keyframe come after the cut.
            # Decoding the segment says how many of the span's frames it holds.
            from cvload.video import probe

            kept = probe(data, decode=True).num_frames
        return data, suffix, kept
    raise ShardError(f"no container here can hold {info.codec} without re-encoding",
                     source=path, hint="pack it as --format rgb or codes instead")

class _NoMuxer(Exception):
    """The container format cannot hold the codec."""

def _copy_packets(path: str, info, start: int, frames: int, fmt: str) -> tuple[bytes, int]:
    from cvload.video import open_video

    gop = info.keyframes.index(start)
    end_gop = info.keyframes.index(start + frames) if start + frames < info.num_frames else None
    target = info.keyframe_seek[gop]
    stop = info.keyframe_seek[end_gop] if end_gop is not None else None
    by_pts = info.frame_order == "pts"
    lo = info.frame_pts[start] if by_pts else None
    hi = info.frame_pts[start + frames] if by_pts and start + frames < info.num_frames else None
    buffer = io.BytesIO()
    with open_video(path, info.stream_index) as (container, vstream), \
            av.open(buffer, "w", format=fmt) as out:
        # opaque: copy the codec parameters without looking up an encoder (a decoder such
        # as libdav1d has no encoder of that name; nothing is re-encoded anyway)
        try:
            ostream = out.add_stream_from_template(vstream, opaque=True)
        except ValueError as err:  # "'mp4' format does not support 'vp8' codec"
            raise _NoMuxer(str(err)) from err
        if target is not None and start > 0:
            container.seek(target, stream=vstream, backward=True, any_frame=False)
        count, kept, shift, landed = 0, 0, None, target is None or start == 0
        for packet in container.demux(vstream):
            if packet.size == 0:
                continue
            at = packet.dts if packet.dts is not None else packet.pts
            if not landed:  # the seek must land on the keyframe (decode order counts from it)
                if at != target and not by_pts:
                    raise ShardError(f"seeking to frame {start} landed elsewhere", source=path)
                landed = True
            if packet.is_discard:
                continue  # an edit list hides it
            if by_pts:
                if packet.pts is None or packet.pts < lo:
                    continue
                if hi is not None and packet.pts >= hi and packet.is_keyframe:
                    break  # the next GOP: cut here (decode order)
                if hi is not None and packet.pts >= hi:
                    continue
                if shift is None:
                    shift = packet.dts if packet.dts is not None else packet.pts
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                if fmt == "avi":  # AVI keeps decode order only (read back in that order)
                    packet.pts = packet.dts = kept
                    packet.time_base = vstream.time_base
            elif not info.has_timestamps:
                if count < start:
                    count += 1
                    continue
                if count >= start + frames:
                    break
                count += 1
            else:
                if stop is not None and at == stop and packet.is_keyframe:
                    break
                packet.pts = packet.dts = kept
                packet.time_base = vstream.time_base
            kept += 1
            packet.stream = ostream
            out.mux(packet)
    if kept == 0:
        raise ShardError(f"no packets for frames {start}..{start + frames}", source=path)
    return buffer.getvalue(), kept

def _make_sample(spec, clip: Clip, video: PackedVideo, codec, size) -> dict:
    from cvload.video import read_clip

    path, info = video.path, video.info
    fps = info.fps or 0.0
    meta = {
        "video_id": video.id, "source": path, "source_sha256": video.sha256,
        "frame_start": clip.start, "frame_end": clip.start + clip.frames,
        "frames": clip.frames, "fps": fps,
        "seconds": [clip.start / fps, (clip.start + clip.frames) / fps] if fps else None,
        "label": video.label, "format": spec.format,
    }
    sample: dict = {}
    if spec.format == "video":
        data, suffix, kept = _remux(path, info, clip.start, clip.frames)
        sample[suffix] = data
        meta.update(frames=kept, frame_end=clip.start + kept,
                    seconds=[clip.start / fps, (clip.start + kept) / fps] if fps else None)
        meta["shapes"] = {"video": [clip.frames, info.height, info.width, 3]}
        meta["codec"] = info.codec
    else:
        target = codec.config.size if codec is not None else size
        rgb = read_clip(path, start=clip.start, num_frames=clip.frames, streams=("rgb",),
                        size=target, info=info).rgb
        if spec.format == "rgb":
            sample["rgb.npy"] = rgb
            meta["shapes"] = {"rgb": list(rgb.shape)}
        else:
            import torch

            codes = codec.encode(torch.from_numpy(rgb)[None])[0].cpu().numpy()
            codes = codes.astype(codec.config.code_dtype)
            sample["codes.npy"] = codes
            ratio = codec.compression_ratio(rgb.shape)
            meta.update(codec_id=codec.codec_id, shapes={"codes": list(codes.shape),
                                                         "rgb": list(rgb.shape)},
                        compression_nominal=ratio.nominal, compression_stored=ratio.stored)
    sample["json"] = meta
    if video.label is not None:
        sample["cls"] = int(video.label)
    return sample


# -- one shard -----------------------------------------------------------------------------

_WORKER_CODEC = None

def _load_codec(codec_path, device):
    global _WORKER_CODEC
    if codec_path is None:
        return None
    if _WORKER_CODEC is None or _WORKER_CODEC[0] != codec_path:
        from cvload.codec import VideoCodec

        _WORKER_CODEC = (codec_path, VideoCodec.load(codec_path, map_location=device).eval())
    return _WORKER_CODEC[1]
