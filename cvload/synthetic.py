"""Real encoded videos with known motion, for demos, tests and benchmarks.

A smooth random texture translates by ``(dx, dy)`` pixels per frame, and the frames are
encoded by a real encoder (libx264, mpeg4, libx265, ...) through PyAV, so the motion a
decoder exports can be checked against ground truth.

Sign convention: content moving by ``(dx, dy)`` per frame means each block of frame ``t``
is found in frame ``t-1`` at an offset of ``(-dx, -dy)``; that offset is what FFmpeg
exports (``motion_x / motion_scale``) and what :func:`cvload.motion_field` returns.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image

from cvload._util import atomic_path, atomic_write
from cvload.errors import InvalidArgumentError, UnsupportedCodecError

__all__ = [
    "MOTION_CLASSES",
    "ENCODERS",
    "SyntheticVideo",
    "texture",
    "translating_frames",
    "encode_frames",
    "write_video",
    "make_dataset",
]

#: The demo's motion classes: name -> (dx, dy) pixels per frame.
MOTION_CLASSES: dict[str, tuple[int, int]] = {
    "still": (0, 0),
    "right": (3, 0),
    "left": (-3, 0),
    "down": (0, 2),
    "up": (0, -2),
}

#: Codec name -> the encoder PyAV uses for it.
ENCODERS: dict[str, str] = {
    "h264": "libx264",
    "mpeg4": "mpeg4",
    "mpeg2video": "mpeg2video",
    "hevc": "libx265",
    "vp9": "libvpx-vp9",
    "av1": "libsvtav1",
}

_RAW_FORMATS = {".264": "h264", ".h264": "h264", ".265": "hevc", ".h265": "hevc", ".hevc": "hevc"}


@dataclass(frozen=True)
class SyntheticVideo:
    """A written synthetic video and the ground truth it was made from."""

    path: str
    codec: str
    width: int
    height: int
    num_frames: int
    fps: int
    gop: int
    bframes: int
    motion: tuple[int, int]
    seed: int
    label: int | None = None
    label_name: str | None = None


def texture(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """A smooth, richly detailed random colour texture, ``(height, width, 3)`` uint8.

    Octaves of upsampled noise: structure at many scales so block matching (the encoder's
    and ours) locks onto the true motion instead of drifting on flat areas.
    """
    rng = np.random.default_rng(seed)
    acc = np.zeros((height, width, 3), np.float32)
    weight = 0.0
    for cell, amp in ((64, 1.0), (24, 0.7), (8, 0.5), (3, 0.35)):
        gh, gw = max(2, height // cell + 2), max(2, width // cell + 2)
        coarse = (rng.random((gh, gw, 3)) * 255).astype(np.uint8)
        up = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        acc += amp * np.asarray(up, np.float32)
        weight += amp
    acc /= weight
    # Stretch contrast so every region has texture worth matching.
    lo, hi = np.percentile(acc, 1), np.percentile(acc, 99)
    return np.clip((acc - lo) * (255.0 / max(hi - lo, 1.0)), 0, 255).astype(np.uint8)


def translating_frames(
    num_frames: int,
    height: int,
    width: int,
    *,
    motion: tuple[int, int] = (2, 1),
    seed: int = 0,
) -> np.ndarray:
    """``(num_frames, height, width, 3)`` uint8 frames of a texture moving ``motion`` px/frame."""
    dx, dy = int(motion[0]), int(motion[1])
    pad_x, pad_y = abs(dx) * num_frames + 8, abs(dy) * num_frames + 8
    canvas = texture(height + pad_y, width + pad_x, seed=seed)
    # Start where the whole path stays inside the canvas.
    x0 = pad_x - 4 if dx > 0 else 4
    y0 = pad_y - 4 if dy > 0 else 4
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        # Content moves by +d per frame, so the window moves by -d over the canvas.
        x, y = x0 - dx * t, y0 - dy * t
        frames[t] = canvas[y : y + height, x : x + width]
    return frames


def _codec_context_setup(stream, codec: str, gop: int, bframes: int, quality: int) -> None:
    ctx = stream.codec_context
    ctx.gop_size = gop
    if codec == "h264":
        stream.options = {
            "preset": "veryfast",
            "crf": str(quality),
            "x264-params": (
                f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:b-adapt=0"
                ":threads=1"
            ),
        }
    elif codec == "hevc":
        stream.options = {
            "preset": "ultrafast",
            "crf": str(quality),
            "x265-params": (
                f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:b-adapt=0"
                ":log-level=error:pools=1:frame-threads=1"
            ),
        }
    elif codec in ("mpeg4", "mpeg2video"):
        ctx.max_b_frames = bframes
        ctx.bit_rate = 4_000_000
        ctx.options = {"qmax": str(max(2, quality // 6))}
    elif codec == "vp9":
        if bframes:
            raise InvalidArgumentError("VP9 has no B-frames; pass bframes=0 for codec='vp9'.")
        stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": str(quality + 12)}
        ctx.bit_rate = 0
    elif codec == "av1":
        if bframes:
            raise InvalidArgumentError("AV1 encoding here has no B-frames; pass bframes=0.")
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner at info level
        stream.options = {"preset": "12", "crf": str(quality + 12)}


def encode_frames(
    frames: np.ndarray,
    path: str | os.PathLike[str],
    *,
    codec: Literal["h264", "mpeg4", "mpeg2video", "hevc", "vp9", "av1"] = "h264",
    fps: int = 25,
    gop: int = 12,
    bframes: int = 0,
    quality: int = 18,
) -> None:
    """Encode ``(T, H, W, 3)`` uint8 RGB ``frames`` to ``path`` (container from its suffix).

    ``.264``/``.h265`` suffixes write raw elementary streams without timestamps.
    H and W must be even (4:2:0 chroma). ``quality`` is a CRF-like value (lower is better).
    """
    if codec not in ENCODERS:
        raise InvalidArgumentError(
            f"Invalid codec {codec!r}. Supported values are {', '.join(map(repr, ENCODERS))}."
        )
    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InvalidArgumentError(
            f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}."
        )
    num, height, width = frames.shape[:3]
    if height % 2 or width % 2:
        raise InvalidArgumentError(f"height and width must be even for 4:2:0, got {height}x{width}.")
    path = os.fspath(path)
    fmt = _RAW_FORMATS.get(Path(path).suffix.lower())
    # the temporary name keeps the suffix, so FFmpeg picks the same container; a reader
    # never sees a half-written video
    with atomic_path(path) as tmp:
        with av.open(tmp, mode="w", format=fmt) as out:
            try:
                stream = out.add_stream(ENCODERS[codec], rate=Fraction(fps))
            except (av.error.FFmpegError, ValueError) as err:  # pragma: no cover
                raise UnsupportedCodecError(f"no encoder {ENCODERS[codec]}: {err}") from err
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            _codec_context_setup(stream, codec, gop, bframes, quality)
            for index in range(num):
                frame = av.VideoFrame.from_ndarray(frames[index], format="rgb24")
                frame.pts = index
                if codec in ("mpeg4", "mpeg2video") and index % gop == 0:
                    # FFmpeg's MPEG encoders count the GOP in coded order; force the I-frame
                    # so keyframes sit exactly every `gop` frames, as with the other codecs.
                    frame.pict_type = av.video.frame.PictureType.I
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)


def write_video(
    path: str | os.PathLike[str],
    *,
    codec: Literal["h264", "mpeg4", "mpeg2video", "hevc", "vp9", "av1"] = "h264",
    width: int = 128,
    height: int = 96,
    num_frames: int = 24,
    fps: int = 25,
    gop: int = 12,
    bframes: int = 0,
    motion: tuple[int, int] = (2, 1),
    seed: int = 0,
    quality: int = 18,
    label: int | None = None,
    label_name: str | None = None,
) -> SyntheticVideo:
    """Write a texture translating by ``motion`` px/frame, encoded with ``codec``.

    Returns the ground truth as a :class:`SyntheticVideo`. Deterministic: the same
    arguments give the same frames (and, with the bundled encoders, the same bytes).
    """
    frames = translating_frames(num_frames, height, width, motion=motion, seed=seed)
    encode_frames(frames, path, codec=codec, fps=fps, gop=gop, bframes=bframes, quality=quality)
    return SyntheticVideo(
        path=os.fspath(path), codec=codec, width=width, height=height, num_frames=num_frames,
        fps=fps, gop=gop, bframes=bframes, motion=(int(motion[0]), int(motion[1])), seed=seed,
        label=label, label_name=label_name,
    )


def make_dataset(
    root: str | os.PathLike[str],
    *,
    videos_per_class: int = 2,
    classes: dict[str, tuple[int, int]] | None = None,
    width: int = 160,
    height: int = 120,
    num_frames: int = 48,
    fps: int = 25,
    gop: int = 12,
    codec: Literal["h264", "mpeg4", "hevc"] = "h264",
) -> list[SyntheticVideo]:
    """A small labelled set: ``videos_per_class`` videos per motion class, half with B-frames.

    Writes ``root/<class>/<class>_<i>.mp4``, ``root/labels.csv`` (``path,label``) and
    ``root/manifest.json``. Reuses what is there when the parameters are unchanged.
    """
    classes = dict(MOTION_CLASSES if classes is None else classes)
    root = Path(root)
    params = dict(videos_per_class=videos_per_class, classes=classes, width=width, height=height,
                  num_frames=num_frames, fps=fps, gop=gop, codec=codec, av=av.__version__)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    manifest = root / "manifest.json"
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        if saved.get("digest") == digest and all(
            Path(v["path"]).exists() for v in saved["videos"]
        ):
            return [SyntheticVideo(**{**v, "motion": tuple(v["motion"])}) for v in saved["videos"]]
    videos: list[SyntheticVideo] = []
    for label, (name, motion) in enumerate(sorted(classes.items())):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(videos_per_class):
            videos.append(
                write_video(
                    root / name / f"{name}_{i}.mp4", codec=codec, width=width, height=height,
                    num_frames=num_frames, fps=fps, gop=gop, bframes=2 if i % 2 else 0,
                    motion=motion, seed=1000 * label + i, label=label, label_name=name,
                )
            )
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for v in videos:
            writer.writerow([os.path.relpath(v.path, root), v.label])
    with atomic_write(manifest) as f:
        f.write(json.dumps({"digest": digest, "params": params,
                            "videos": [asdict(v) for v in videos]}, indent=1))
    return videos
