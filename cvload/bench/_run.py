"""``run_bench``: the curated benchmark behind ``cvload bench``."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cvload.bench._pipelines import BASELINE, pipelines
from cvload.bench._timing import interleave, paired_ratio
from cvload.bench._workload import describe_videos, generated_videos, prepare
from cvload.errors import InvalidArgumentError

__all__ = ["BenchOptions", "BenchReport", "BenchRow", "run_bench"]


@dataclass(frozen=True)
class BenchOptions:
    """How much to measure. ``lengths``: clip lengths (frames) to scale over, the
    ``main_length`` among them; ``clips``: about how many clips per pass and length;
    ``rounds``: timed passes per pipeline (after one untimed warm-up pass); ``size``:
    ``(H, W)`` every pipeline delivers (a codec's own size when one is given);
    ``min_seconds``: fast pipelines repeat their pass within a timed call until it lasts
    this long."""

    lengths: tuple[int, ...] = (8, 16, 32)
    main_length: int = 16
    clips: int = 32
    rounds: int = 5
    batch_size: int = 8
    workers: int = 0
    size: tuple[int, int] = (128, 128)
    min_seconds: float = 0.2  # a timed call repeats passes until it lasts this long

    @classmethod
    def quick(cls, **overrides) -> "BenchOptions":
        """About half a minute on 2 CPU cores with the generated videos."""
        return replace(cls(lengths=(8, 16), clips=8, rounds=3, batch_size=4,
                           min_seconds=0.05), **overrides)

    def __post_init__(self) -> None:
        if self.main_length not in self.lengths:
            raise InvalidArgumentError(
                f"main_length {self.main_length} is not among lengths {self.lengths}")
        for length in self.lengths:
            if length < 4 or length % 4:
                raise InvalidArgumentError(
                    f"Invalid clip length {length}: a multiple of 4 (the codec's time stride)")
        if self.clips < 1 or self.rounds < 1 or self.batch_size < 1 or self.workers < 0:
            raise InvalidArgumentError("clips, rounds and batch_size must be >= 1, workers >= 0")


@dataclass(frozen=True)
class BenchRow:
    """One pipeline at one clip length. ``clips_per_s``: median over rounds (``q1``/``q3``
    its quartiles); ``vs_rgb``: paired median speed ratio to ``file:rgb`` at the same
    length; ``bytes_per_clip``: what a clip takes where it is stored (None: no stored
    form of its own); ``mb_per_s``: those bytes at that rate."""

    pipeline: str
    frames: int
    clips: int
    clips_per_s: float
    clips_per_s_q1: float
    clips_per_s_q3: float
    vs_rgb: float
    vs_rgb_q1: float
    vs_rgb_q3: float
    bytes_per_clip: float | None
    mb_per_s: float | None
    output: str


@dataclass
class BenchReport:
    options: BenchOptions
    rows: list[BenchRow]
    meta: dict = field(default_factory=dict)

    def main_rows(self) -> list[BenchRow]:
        return [r for r in self.rows if r.frames == self.options.main_length]

    def row(self, pipeline: str, frames: int | None = None) -> BenchRow:
        frames = self.options.main_length if frames is None else frames
        for r in self.rows:
            if r.pipeline == pipeline and r.frames == frames:
                return r
        raise KeyError((pipeline, frames))

    def to_dict(self) -> dict:
        return {"meta": self.meta, "options": asdict(self.options),
                "rows": [asdict(r) for r in self.rows]}


def _commit() -> str | None:
    here = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _meta(videos: Sequence[str], codec: dict, options: BenchOptions, generated: bool) -> dict:
    import av
    import torch

    import cvload

    return {"date": time.strftime("%Y-%m-%d %H:%M"), "cvload": cvload.__version__,
            "commit": _commit(), "machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
            "torch": torch.__version__, "pyav": av.__version__,
            "videos": list(map(os.fspath, videos)), "generated_videos": generated,
            "codec": codec, "workers": options.workers}


def _codec(codec_path, size, videos, root: Path, length: int,
           print_fn) -> tuple[str, dict, tuple]:
    """The codec whose codes are timed: the user's, or one initialised on the clips
    (principal components; untrained, which changes no speed or size)."""
    from cvload.codec import CodecConfig, VideoCodec
    from cvload.video import probe, read_clip

    if codec_path is not None:
        codec = VideoCodec.load(codec_path)
        return os.fspath(codec_path), {"path": os.fspath(codec_path), "id": codec.codec_id,
                                       "trained": True}, tuple(codec.config.size)
    config = CodecConfig(clip_frames=length, size=tuple(size))
    clips = []
    for path in videos:
        n = probe(path).num_frames
        for start in range(0, max(1, n - length + 1), max(length, n // 2))[:2]:
            if n >= length:
                clips.append(read_clip(path, start=start, num_frames=length, streams=("rgb",),
                                       size=size).rgb)
    if not clips:
        raise InvalidArgumentError(
            f"none of the {len(videos)} videos has {length} frames: give longer videos or "
            "shorter --lengths")

    digest = hashlib.sha256("\n".join(map(str, videos)).encode()).hexdigest()[:12]
    key = f"codec-{length}x{size[0]}x{size[1]}-{digest}.pt"
    path = root / key
    if not path.exists():
        codec = VideoCodec(config)
        codec.initialise(np.stack(clips[:8]))
        codec.save(path)
        print_fn(f"      codec: default format initialised on {len(clips[:8])} clips, "
                 f"untrained (speed and bytes do not depend on training) -> {path}")
    codec = VideoCodec.load(path)
    return str(path), {"path": str(path), "id": codec.codec_id, "trained": False}, tuple(size)


def run_bench(videos: Sequence[str | os.PathLike[str]] = (), *,
              options: BenchOptions | None = None, codec: str | os.PathLike[str] | None = None,
              workdir: str | os.PathLike[str] | None = None,
              print_fn: Callable[[str], None] = print) -> BenchReport:
    """Time every pipeline of :mod:`cvload.bench._pipelines` on ``videos`` (generated
    H.264 videos when none are given) at each clip length; returns the rows."""
    from cvload._util import cache_dir

    options = options or BenchOptions()
    root = Path(workdir) if workdir is not None else cache_dir("bench-cli")
    root.mkdir(parents=True, exist_ok=True)
    generated = not videos
    given = [os.fspath(v) for v in videos] or generated_videos(root / "videos")
    paths = [v.path for v in describe_videos(given, print_fn)]  # unreadable ones left out
    codec_path, codec_meta, size = _codec(codec, options.size, paths, root,
                                          min(options.lengths), print_fn)
    options = replace(options, size=size)
    rows: list[BenchRow] = []
    for length in options.lengths:
        work = prepare(paths, length=length, clips=options.clips, size=size,
                       codec_path=codec_path, codec_id=codec_meta["id"], root=root,
                       print_fn=print_fn)
        chosen = pipelines(work, batch_size=options.batch_size, workers=options.workers,
                           main=length == options.main_length)
        start = time.perf_counter()
        for p in chosen:
            p.calibrate(options.min_seconds)
        timings = interleave({p.name: p.run for p in chosen}, rounds=options.rounds, warmup=0)
        base = next(p for p in chosen if p.name == BASELINE)
        for p in chosen:
            t = timings[p.name]
            q1, q3 = t.quartiles_s
            ratio = paired_ratio(t, timings[BASELINE], candidate_units=p.clips_per_call,
                                 baseline_units=base.clips_per_call)
            rate = p.clips_per_call / t.median_s
            rows.append(BenchRow(
                p.name, length, p.clips, rate, p.clips_per_call / q3, p.clips_per_call / q1,
                *ratio,
                p.bytes_per_clip, None if p.bytes_per_clip is None else
                p.bytes_per_clip * rate / 1e6, p.output))
        print_fn(f"      timed {len(chosen)} pipelines x {options.rounds} rounds at {length} "
                 f"frames in {time.perf_counter() - start:.1f}s")
    meta = _meta(paths, codec_meta, options, generated)
    meta["skipped_videos"] = sorted(set(given) - set(paths))
    return BenchReport(options, rows, meta)
