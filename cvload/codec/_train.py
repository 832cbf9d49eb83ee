"""Training a :class:`VideoCodec` on random clips of your own videos (nothing downloaded)."""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cvload.codec._config import CodecConfig
from cvload.codec._metrics import psnr
from cvload.codec._model import VideoCodec
from cvload.errors import CodecFileError, InvalidArgumentError

__all__ = ["train", "TrainResult", "resolve_device", "clip_loader"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when usable, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class TrainResult:
    """What :func:`train` did: final codec path and id, steps, seconds, loss history
    (``(step, loss)``) and validation PSNR history (``(step, dB)``)."""

    path: str
    codec_id: str
    steps: int
    seconds: float
    losses: list = field(default_factory=list)
    val_psnr: list = field(default_factory=list)
    resumed_from: int = 0


class FramePool(torch.utils.data.Dataset):
    """Every frame of every video decoded once, at the codec's size, kept in memory;
    items are random ``clip_frames`` windows (seeded by ``(seed, epoch, index)``).

    For codec training on a CPU this is what makes steps cheap: a random 16-frame clip of a
    long-GOP file would otherwise decode up to a whole GOP each time. Videos that fail to
    decode are skipped and listed in ``skipped``.
    """

    def __init__(self, videos: Sequence[str], config: CodecConfig, *, clips_per_epoch: int,
                 sampling: str = "random", seed: int = 0,
                 frame_range: tuple[float, float] = (0.0, 1.0),
                 infos: dict | None = None) -> None:
        from cvload.errors import CvloadError
        from cvload.video import probe, read_clip

        self.frames: list[np.ndarray] = []
        self.skipped: list[tuple[str, str]] = []
        infos = infos or {}
        for video in videos:
            try:
                info = infos.get(video) or probe(video)
                clip = read_clip(video, start=0, num_frames=info.num_frames, streams=("rgb",),
                                 size=config.size, info=info)
            except CvloadError as err:
                self.skipped.append((video, str(err).splitlines()[0]))
                continue
            lo, hi = (int(round(f * len(clip))) for f in frame_range)
            if hi - lo >= config.clip_frames:  # a temporal split: train / held-out frames
                self.frames.append(clip.rgb[lo:hi])
        if not self.frames:
            raise InvalidArgumentError(
                f"none of the {len(videos)} videos has {config.clip_frames} decodable frames")
        self.clip_frames, self.sampling, self.seed = config.clip_frames, sampling, seed
        self.clips_per_epoch = clips_per_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.clips_per_epoch

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        video = self.frames[index % len(self.frames)] if self.sampling == "center" else \
            self.frames[int(rng.integers(len(self.frames)))]
        room = len(video) - self.clip_frames
        start = room // 2 if self.sampling == "center" else int(rng.integers(0, room + 1))
        return torch.from_numpy(video[start:start + self.clip_frames])

    @staticmethod
    def collate(items):
        return torch.stack(items)


def clip_loader(videos: Sequence[str], config: CodecConfig, *, batch_size: int,
                sampling: str = "random", num_workers: int = 0, seed: int = 0,
                shuffle: bool = True, pool: str = "auto", clips_per_epoch: int | None = None,
                frame_range: tuple[float, float] = (0.0, 1.0)):
    """A DataLoader of ``(B, T, H, W, 3)`` uint8 clips at the codec's shape.

    ``pool="memory"`` decodes every video once into a :class:`FramePool`; ``"stream"``
    reads clips through :class:`cvload.VideoDataset` (bad videos skipped); ``"auto"``
    pools when the decoded frames fit in 2 GiB. ``frame_range=(a, b)`` keeps the frames
    from fraction ``a`` to ``b`` of every video (memory pool only), for temporal splits.
    Returns ``(dataset, loader)``.
    """
    from cvload.errors import CvloadError
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
            total += infos[video].num_frames
        pool = "memory" if total * config.size[0] * config.size[1] * 3 < 2 << 30 else "stream"
    if tuple(frame_range) != (0.0, 1.0) and pool == "stream":
        raise InvalidArgumentError("frame_range needs pool='memory' (the videos must fit)")
    generator = torch.Generator().manual_seed(seed)
    if pool == "memory":
        dataset = FramePool(videos, config, sampling=sampling, seed=seed,
                            clips_per_epoch=clips_per_epoch or max(64, 8 * len(videos)),
                            frame_range=tuple(frame_range), infos=infos)
        return dataset, torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=False, collate_fn=dataset.collate,
            num_workers=0)
    dataset = VideoDataset(list(videos), layout="rgb", num_frames=config.clip_frames,
                           size=config.size, sampling=sampling, handler="skip", seed=seed)

    def collate(items):
        batch = dataset.collate(items)
        return None if batch is None else batch["rgb"].permute(0, 1, 3, 4, 2).contiguous()

    return dataset, torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
        collate_fn=collate, generator=generator, drop_last=False,
        persistent_workers=num_workers > 0)


def _checkpoint_path(out: str) -> str:
    return f"{out}.ckpt"


def _save_checkpoint(path, codec, optimizer, step, losses, val_psnr, seed) -> None:
    payload = {"format": "cvload-codec-checkpoint", "config": codec.config.to_dict(),
               "model": codec.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
               "losses": torch.tensor(losses, dtype=torch.float64).reshape(-1, 2),
               "val_psnr": torch.tensor(val_psnr, dtype=torch.float64).reshape(-1, 2),
               "seed": seed, "torch_rng": torch.get_rng_state()}
    tmp = f"{path}.partial"
    torch.save(payload, tmp)
    os.replace(tmp, path)  # an interrupted save never leaves a broken checkpoint


def _load_checkpoint(path: str) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CodecFileError(f"cannot read checkpoint: {err}", source=path) from err
    if not isinstance(payload, dict) or payload.get("format") != "cvload-codec-checkpoint":
        raise CodecFileError("not a cvload training checkpoint", source=path)
    return payload


@torch.no_grad()
def validate(codec: VideoCodec, clips: torch.Tensor) -> float:
    """Mean PSNR (dB) of the codec's reconstructions of ``clips`` (uint8)."""
    recon = codec.decode(codec.encode(clips)).cpu()
    return psnr(recon, clips.float() / 255.0)


def train(
    videos: Sequence[str | os.PathLike[str]],
    *,
    out: str | os.PathLike[str],
    config: CodecConfig | None = None,
    steps: int = 1000,
    batch_size: int = 4,
    lr: float = 1e-3,
    device: str = "auto",
    val_videos: Sequence[str | os.PathLike[str]] | None = None,
    val_every: int = 100,
    checkpoint_every: int = 100,
    resume: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    progress: bool = True,
    max_seconds: float | None = None,
    frame_range: tuple[float, float] = (0.0, 1.0),
    val_frame_range: tuple[float, float] = (0.0, 1.0),
) -> TrainResult:
    """Train a codec on random clips of ``videos``; save it to ``out``.

    Every ``checkpoint_every`` steps the model, optimiser, step and histories go to
    ``out + ".ckpt"``; with ``resume=True`` training continues from there to ``steps``.
    Validation PSNR is measured on fixed (centre) clips of ``val_videos`` (default: the
    training videos). bf16 autocast on CUDA; float32 on CPU. ``max_seconds`` stops early
    (after a checkpoint) once that much time has passed. ``frame_range`` /
    ``val_frame_range`` train and validate on fractions of every video's frames (e.g.
    ``(0, 0.8)`` and ``(0.8, 1)``: a temporal hold-out).
    """
    from tqdm.auto import tqdm

    videos = [os.fspath(v) for v in videos]
    if not videos:
        raise InvalidArgumentError("no training videos given")
    out = os.fspath(out)
    device_t = resolve_device(device)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    ckpt = _checkpoint_path(out)
    start_step, losses, val_history = 0, [], []
    if resume and os.path.exists(ckpt):
        payload = _load_checkpoint(ckpt)
        config = CodecConfig.from_dict(payload["config"])
        codec = VideoCodec(config).to(device_t)
        codec.load_state_dict(payload["model"])
        optimizer = torch.optim.AdamW(codec.parameters(), lr=lr, weight_decay=0.0)
        optimizer.load_state_dict(payload["optimizer"])
        start_step = int(payload["step"])
        losses = [tuple(x) for x in payload["losses"].tolist()]
        val_history = [tuple(x) for x in payload["val_psnr"].tolist()]
        torch.set_rng_state(payload["torch_rng"])
    else:
        config = config or CodecConfig()
        codec = VideoCodec(config).to(device_t)
        optimizer = torch.optim.AdamW(codec.parameters(), lr=lr, weight_decay=0.0)

    dataset, loader = clip_loader(videos, config, batch_size=batch_size,
                                  num_workers=num_workers, seed=seed, frame_range=frame_range)
    _, val_loader = clip_loader([os.fspath(v) for v in (val_videos or videos)], config,
                                batch_size=batch_size, sampling="center", shuffle=False,
                                clips_per_epoch=max(batch_size, 4),
                                frame_range=val_frame_range)
    val_clips = [b for b in val_loader if b is not None]
    val_clips = torch.cat(val_clips)[: max(batch_size, 4)] if val_clips else None
    if val_clips is None:
        raise InvalidArgumentError("no validation clip could be read from the videos")

    use_bf16 = device_t.type == "cuda"
    started = time.perf_counter()
    step = start_step
    epoch = start_step  # distinct random clip positions after a resume
    bar = tqdm(total=steps, initial=start_step, disable=not progress, desc="train-codec",
               unit="step", dynamic_ncols=True)
    if val_history:
        last_val = val_history[-1][1]
    else:  # measured before the first step: the progress bar never shows nan
        last_val = validate(codec, val_clips)
        val_history.append((start_step, last_val))

    def lr_at(s: int) -> float:  # short warm-up, cosine decay to 10%
        warm = max(1, min(100, steps // 20))
        if s < warm:
            return lr * (s + 1) / warm
        progress_frac = (s - warm) / max(1, steps - warm)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_frac)))

    try:
        while step < steps:
            dataset.set_epoch(epoch)
            epoch += 1
            for batch in loader:
                if batch is None:
                    continue
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                codec.train()
                with torch.autocast(device_t.type, dtype=torch.bfloat16, enabled=use_bf16):
                    recon, target, aux, _ = codec(batch)
                    loss = F.mse_loss(recon.float(), target) + 0.1 * F.l1_loss(
                        recon.float(), target) + aux
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
                optimizer.step()
                step += 1
                losses.append((step, float(loss.detach())))
                if step % val_every == 0 or step == steps:
                    last_val = validate(codec, val_clips)
                    val_history.append((step, last_val))
                if step % checkpoint_every == 0 or step == steps:
                    _save_checkpoint(ckpt, codec, optimizer, step, losses, val_history, seed)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val_psnr=f"{last_val:.2f}dB")
                bar.update(1)
                out_of_time = max_seconds is not None and \
                    time.perf_counter() - started > max_seconds
                if step >= steps or out_of_time:
                    break
            if max_seconds is not None and time.perf_counter() - started > max_seconds:
                _save_checkpoint(ckpt, codec, optimizer, step, losses, val_history, seed)
                break
    finally:
        bar.close()
    codec.eval()
    codec_id = codec.save(out)
    return TrainResult(out, codec_id, step, time.perf_counter() - started, losses, val_history,
                       start_step)
