"""Clips for codec training and evaluation: every frame decoded once into memory, random
space-time windows drawn from it.

Training draws *random resized crops* (a random box of a random frame window, resized to the
codec's clip size, flipped half the time), so a few videos give many distinct clips at many
scales; validation and evaluation draw whole frames resized to the clip size, which is how
``cvload pack`` encodes them.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cvload.codec._config import CodecConfig
from cvload.errors import CvloadError, InvalidArgumentError

__all__ = ["CropPolicy", "FramePool", "clip_loader", "NO_CROP"]

Sampling = Literal["random", "center", "spread"]


@dataclass(frozen=True)
class CropPolicy:
    """Random resized crops for training.

    ``scale``: the box's share of the frame area, drawn uniformly; ``ratio``: the box's
    aspect ratio relative to the clip's, drawn log-uniformly (frames that are squashed into
    a square clip and crops that are not both occur); ``flip``: probability of a horizontal
    flip; ``pool_scale``: frames are kept with a short side of at most ``pool_scale`` times
    the clip's, so that small boxes still have real pixels behind them.
    """

    scale: tuple[float, float] = (0.15, 1.0)
    ratio: tuple[float, float] = (0.6, 1.8)
    flip: float = 0.5
    pool_scale: float = 2.0
    enabled: bool = True


NO_CROP = CropPolicy(enabled=False, pool_scale=1.0)


class FramePool(torch.utils.data.Dataset):
    """Every frame of every video decoded once and kept in memory; items are
    ``clip_frames`` windows as ``(T, H, W, 3)`` uint8 at the codec's size: ``"random"``
    (video and start seeded by ``(seed, epoch, index)``, random resized crops when ``crop``
    is enabled), ``"center"`` (item ``i``: the centre of video ``i mod n``) or ``"spread"``
    (the videos in turn, each visit at the next of evenly spaced starts).

    On a CPU this is what makes training steps cheap: a random clip of a long-GOP file
    would otherwise decode up to a whole GOP each time. Videos that fail to decode are
    skipped and listed in ``skipped``; ``frame_range=(a, b)`` keeps the frames from
    fraction ``a`` to ``b`` of every video (temporal splits).
    """

    def __init__(self, videos: Sequence[str], config: CodecConfig, *, clips_per_epoch: int,
                 sampling: Sampling = "random", seed: int = 0, crop: CropPolicy = NO_CROP,
                 frame_range: tuple[float, float] = (0.0, 1.0),
                 infos: dict | None = None) -> None:
        from cvload.video import probe, read_clip

        self.frames: list[np.ndarray] = []
        self.sources: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        infos = infos or {}
        for video in videos:
            try:
                info = infos.get(video) or probe(video)
                size = _pool_size(info.height, info.width, config.size, crop)
                clip = read_clip(video, start=0, num_frames=info.num_frames, streams=("rgb",),
                                 size=size, info=info)
            except CvloadError as err:
                self.skipped.append((video, str(err).splitlines()[0]))
                continue
            lo, hi = (int(round(f * len(clip))) for f in frame_range)
            if hi - lo >= config.clip_frames:
                self.frames.append(np.ascontiguousarray(clip.rgb[lo:hi]))
                self.sources.append(video)
        if not self.frames:
            raise InvalidArgumentError(
                f"none of the {len(videos)} videos has {config.clip_frames} decodable frames"
                + (f" in the frame range {frame_range}" if tuple(frame_range) != (0, 1) else ""))
        self.clip_frames, self.size, self.sampling = config.clip_frames, config.size, sampling
        self.seed, self.crop, self.clips_per_epoch = seed, crop, clips_per_epoch
        self.epoch = 0

    @property
    def num_frames(self) -> int:
        return sum(len(f) for f in self.frames)

    def hold_out(self, fraction: float = 0.1, *, clips: int = 8) -> "FramePool":
        """Split off the last ``fraction`` of every video's frames (at least one clip's
        worth) as a validation pool of ``clips`` fixed clips, and train on the rest only.

        A video shorter than two clips stays whole in training (and is not validated);
        raises InvalidArgumentError when no video is long enough to hold anything out.
        """
        if not 0.0 < fraction < 1.0:
            raise InvalidArgumentError(f"hold-out fraction must be in (0, 1), got {fraction}")
        train, tails, sources = [], [], []
        for frames, source in zip(self.frames, self.sources):
            keep = len(frames) - max(self.clip_frames, int(round(fraction * len(frames))))
            if keep >= self.clip_frames:
                train.append(frames[:keep])
                tails.append(frames[keep:])
                sources.append(source)
            else:
                train.append(frames)
        if not tails:
            raise InvalidArgumentError(
                f"no video has the {2 * self.clip_frames} frames needed to hold out a "
                "validation clip", hint="pass validation videos (--val) or longer videos")
        held = copy.copy(self)
        held.frames, held.sources, held.skipped = tails, sources, []
        held.sampling, held.crop, held.clips_per_epoch = "spread", NO_CROP, int(clips)
        self.frames = train
        return held

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.clips_per_epoch

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        video = self.frames[int(rng.integers(len(self.frames)))] if self.sampling == "random" \
            else self.frames[index % len(self.frames)]
        room = len(video) - self.clip_frames
        if self.sampling == "random":
            start = int(rng.integers(0, room + 1))
        elif self.sampling == "spread":  # the k-th visit of a video: evenly spaced starts
            visits = -(-self.clips_per_epoch // len(self.frames))
            start = room * (2 * (index // len(self.frames)) + 1) // (2 * visits)
        else:
            start = room // 2
        clip = torch.from_numpy(video[start:start + self.clip_frames])
        if self.crop.enabled and self.sampling == "random":
            clip = self._random_crop(clip, rng)
        return _resize(clip, self.size)

    def _random_crop(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        _, h, w, _ = clip.shape
        target_aspect = self.size[1] / self.size[0]
        area = h * w * rng.uniform(*self.crop.scale)
        aspect = target_aspect * float(np.exp(rng.uniform(*np.log(self.crop.ratio))))
        box_w = int(round(min(w, max(8, (area * aspect) ** 0.5))))
        box_h = int(round(min(h, max(8, (area / aspect) ** 0.5))))
        y, x = int(rng.integers(0, h - box_h + 1)), int(rng.integers(0, w - box_w + 1))
        clip = clip[:, y:y + box_h, x:x + box_w]
        return clip.flip(2) if rng.random() < self.crop.flip else clip

    @staticmethod
    def collate(items):
        return torch.stack(items)


def _pool_size(height: int, width: int, size: tuple[int, int],
               crop: CropPolicy) -> tuple[int, int]:
    """Frames are pooled at the clip size, or (for crops) with a short side up to
    ``pool_scale`` times the clip's, never larger than the video."""
    if not crop.enabled:
        return tuple(size)
    scale = min(1.0, crop.pool_scale * max(size) / max(1, min(height, width)))
    return max(size[0], int(round(height * scale))), max(size[1], int(round(width * scale)))


def _resize(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(T, h, w, 3)`` uint8 -> ``(T, H, W, 3)`` uint8 (antialiased bilinear)."""
    if tuple(clip.shape[1:3]) == tuple(size):
        return clip.contiguous()
    x = clip.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def clip_loader(videos: Sequence[str], config: CodecConfig, *, batch_size: int,
                sampling: Sampling = "random", num_workers: int = 0, seed: int = 0,
                shuffle: bool = True, pool: Literal["auto", "memory", "stream"] = "auto",
                clips_per_epoch: int | None = None, crop: CropPolicy = NO_CROP,
                frame_range: tuple[float, float] = (0.0, 1.0)):
    """A DataLoader of ``(B, T, H, W, 3)`` uint8 clips at the codec's shape.

    ``pool="memory"`` decodes every video once into a :class:`FramePool`; ``"stream"``
    reads whole-frame clips through :class:`cvload.VideoDataset` (bad videos skipped);
    ``"auto"`` pools when the decoded frames fit in 2 GiB. ``crop`` (memory pool only):
    random resized crops, for training. Returns ``(dataset, loader)``.
    """
    from cvload.video import VideoDataset, probe

    if pool not in ("auto", "memory", "stream"):
        raise InvalidArgumentError(
            f"Invalid pool {pool!r}. Supported values are 'auto', 'memory' and 'stream'.")
    infos = {}
    if pool == "auto":
        total = 0
        for video in videos:
            try:
                infos[video] = probe(video)  # reused by the pool: each file is probed once
            except CvloadError:
                continue
            info = infos[video]
            h, w = _pool_size(info.height, info.width, config.size, crop)
            total += info.num_frames * h * w * 3
        pool = "memory" if total < 2 << 30 else "stream"
    if pool == "stream" and tuple(frame_range) != (0.0, 1.0):
        raise InvalidArgumentError(
            "frame_range needs pool='memory': the decoded videos must fit in memory",
            hint="train on fewer or shorter videos, or leave the frame range out")
    if pool == "stream" and crop.enabled:
        warnings.warn("the decoded videos do not fit in memory: training on whole-frame clips "
                      "(no random crops)", stacklevel=2)
    generator = torch.Generator().manual_seed(seed)
    if pool == "memory":
        dataset = FramePool(videos, config, sampling=sampling, seed=seed, crop=crop,
                            clips_per_epoch=clips_per_epoch or max(64, 8 * len(videos)),
                            frame_range=tuple(frame_range), infos=infos)
        return dataset, torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=False, collate_fn=dataset.collate,
            num_workers=0)
    dataset = VideoDataset(list(videos), layout="rgb", num_frames=config.clip_frames,
                           size=config.size, sampling="center" if sampling != "random" else
                           "random", handler="skip", seed=seed)

    def collate(items):
        batch = dataset.collate(items)
        return None if batch is None else batch["rgb"].permute(0, 1, 3, 4, 2).contiguous()

    return dataset, torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
        collate_fn=collate, generator=generator, drop_last=False,
        persistent_workers=num_workers > 0)
