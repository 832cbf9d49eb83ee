"""What ``cvload bench`` measures on: the videos, the clips cut from them, and the same
clips packed as ``rgb``, ``video`` and ``codes`` shards (cached between runs).

Clips of ``T`` frames start every ``stride`` frames of each video (``cvload pack``'s rule
for ``rgb`` and ``codes`` shards), so file pipelines and those shards hold the same clips.
``video`` shards store GOP-aligned spans (a clip cannot be cut between keyframes without
re-encoding); their pipelines decode the centred ``T`` frames of each span.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from cvload.errors import InvalidArgumentError

__all__ = ["BenchVideo", "ShardSet", "Workload", "describe_videos", "generated_videos", "prepare"]


@dataclass(frozen=True)
class BenchVideo:
    path: str
    num_frames: int
    bytes: int
    width: int
    height: int
    codec: str

    @property
    def bytes_per_frame(self) -> float:
        return self.bytes / max(1, self.num_frames)


@dataclass(frozen=True)
class ShardSet:
    """One format's shards of a workload: where, how many clips, how many bytes."""

    directory: str
    clips: int
    bytes: int

    @property
    def bytes_per_clip(self) -> float:
        return self.bytes / max(1, self.clips)


@dataclass(frozen=True)
class Workload:
    """The clips of one length: ``(video, start)`` pairs and their shards per format."""

    length: int
    size: tuple[int, int]
    stride: int
    videos: tuple[BenchVideo, ...]
    clips: tuple[tuple[BenchVideo, int], ...]
    shards: dict  # format -> ShardSet

    @property
    def file_bytes_per_clip(self) -> float:
        """The compressed bytes a clip takes in its video file (the file's average)."""
        return sum(v.bytes_per_frame for v, _ in self.clips) * self.length / max(1, len(self.clips))


def generated_videos(root: str | os.PathLike[str], *, count: int = 4, num_frames: int = 96,
                     width: int = 176, height: int = 144) -> list[str]:
    """H.264 videos with B-frames (GOP 16) of moving textures, for a run without videos of
    the user's; written once and reused."""
    from cvload.synthetic import write_video

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = root / f"generated-{i}-{num_frames}f-{width}x{height}.mp4"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.partial.mp4")
            write_video(tmp, width=width, height=height, num_frames=num_frames, gop=16, bframes=2,
                        motion=(1 + i % 3, (i % 2) * 2 - 1), seed=100 + i)
            os.replace(tmp, path)
        paths.append(str(path))
    return paths


def describe_videos(paths: Sequence[str], print_fn) -> list[BenchVideo]:
    """Probe every video; one that cannot be read is left out, named, and counted."""
    from cvload.errors import CvloadError
    from cvload.video import probe

    out, bad = [], []
    for path in paths:
        try:
            info = probe(path)
        except CvloadError as err:
            bad.append(f"{path}: {str(err).splitlines()[0]}")
            continue
        out.append(BenchVideo(os.fspath(path), int(info.num_frames), os.path.getsize(path),
                              int(info.width), int(info.height), str(info.codec)))
    for line in bad:
        print_fn(f"      skipped (unreadable) {line}")
    if not out:
        raise InvalidArgumentError(
            f"none of the {len(paths)} videos can be read" + (f" ({bad[0]})" if bad else ""),
            hint="check them with `cvload probe`")
    return out


def _stride(videos: Sequence[BenchVideo], length: int, clips: int) -> int:
    """A start spacing (>= the clip length) that cuts about ``clips`` clips in all."""
    room = sum(max(0, v.num_frames - length + 1) for v in videos)
    if room == 0:
        raise InvalidArgumentError(
            f"no video has {length} frames: give longer videos or shorter --lengths")
    return max(length, math.ceil(room / clips))


def _workdir(root: Path, videos: Sequence[BenchVideo], codec_id: str, size, length: int,
             stride: int) -> Path:
    key = json.dumps([[v.path, v.bytes, v.num_frames] for v in videos] +
                     [codec_id, list(size), length, stride])
    return root / hashlib.sha256(key.encode()).hexdigest()[:16]


def prepare(paths: Sequence[str], *, length: int, clips: int, size: tuple[int, int],
            codec_path: str, codec_id: str, root: str | os.PathLike[str],
            print_fn: Callable[[str], None] = print) -> Workload:
    """Cut the clips of ``length`` frames and pack them in the three formats (reused when
    an earlier run packed the same videos the same way)."""
    from cvload.shards import pack

    videos = [v for v in describe_videos(paths, print_fn) if v.num_frames >= length]
    if not videos:
        raise InvalidArgumentError(
            f"none of the {len(paths)} videos has {length} frames: give longer videos or "
            "shorter --lengths")
    stride = _stride(videos, length, clips)
    chosen = tuple((v, start) for v in videos
                   for start in range(0, v.num_frames - length + 1, stride))
    work = _workdir(Path(root), videos, codec_id, size, length, stride)
    shards = {}
    for fmt, options in (("rgb", {"size": size}), ("video", {}), ("codes", {"codec": codec_path})):
        out = work / fmt
        result = pack([v.path for v in videos], out=str(out), format=fmt, clip_frames=length,
                      clip_stride=stride, shard_samples=64, progress=False, handler="skip",
                      device="cpu", **options)
        if result.clips == 0:
            raise InvalidArgumentError(
                f"packing {len(videos)} videos as {fmt} shards gave no clip (see "
                f"{result.failure_log}): the benchmark needs clips of {length} frames")
        shards[fmt] = ShardSet(str(out), result.clips, result.bytes)
    print_fn(f"      {length}-frame clips: {len(chosen)} from {len(videos)} videos "
             f"(every {stride} frames); shards in {work}")
    return Workload(length, tuple(size), stride, tuple(videos), chosen, shards)
