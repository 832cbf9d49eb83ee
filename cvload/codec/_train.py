"""Training a :class:`VideoCodec` on random clips of your own videos (nothing downloaded)."""

from __future__ import annotations

import os
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cvload._training import TrainClock, load_checkpoint, save_checkpoint, warmup_cosine
from cvload._util import resolve_device
from cvload.codec._config import CodecConfig
from cvload.codec._data import CropPolicy, FramePool, clip_loader
from cvload.codec._metrics import psnr
from cvload.codec._model import VideoCodec
from cvload.errors import CodecFileError, InvalidArgumentError

__all__ = ["train", "TrainResult"]


@dataclass
class TrainResult:
    """What :func:`train` did: final codec path and id, steps, seconds, loss history
    (``(step, loss)``), validation PSNR history (``(step, dB)``), the step it resumed
    from, the PSNR of the initial transform on its clips (None after a resume) and what
    validation measured."""

    path: str
    codec_id: str
    steps: int
    seconds: float
    losses: list = field(default_factory=list)
    val_psnr: list = field(default_factory=list)
    resumed_from: int = 0
    init_psnr: float | None = None
    val_source: str = ""


def _checkpoint_path(out: str) -> str:
    return f"{out}.ckpt"


def _save_checkpoint(path, codec, optimizer, step, losses, val_psnr, seed,
                     seconds: float) -> None:
    save_checkpoint(path, {
        "format": "cvload-codec-checkpoint", "config": codec.config.to_dict(),
        "model": codec.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
        "losses": torch.tensor(losses, dtype=torch.float64).reshape(-1, 2),
        "val_psnr": torch.tensor(val_psnr, dtype=torch.float64).reshape(-1, 2),
        "seed": seed, "seconds": float(seconds), "torch_rng": torch.get_rng_state()})


def _load_checkpoint(path: str) -> dict:
    return load_checkpoint(path, "cvload-codec-checkpoint", CodecFileError,
                           "a cvload training checkpoint")


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
    batch_size: int = 8,
    lr: float = 1e-3,
    linear_lr_scale: float = 0.03,
    device: str = "auto",
    val_videos: Sequence[str | os.PathLike[str]] | None = None,
    val_fraction: float = 0.1,
    val_clips: int = 8,
    val_every: int = 100,
    checkpoint_every: int = 100,
    resume: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    progress: bool = True,
    max_seconds: float | None = None,
    frame_range: tuple[float, float] = (0.0, 1.0),
    val_frame_range: tuple[float, float] = (0.0, 1.0),
    crop: CropPolicy = CropPolicy(),
    init_clips: int = 64,
    compile: bool = False,
) -> TrainResult:
    """Train a codec on random clips of ``videos``; save it to ``out``.

    A new codec starts as the principal-component transform of ``init_clips`` training
    clips (:meth:`VideoCodec.initialise`), so it is a sensible codec before its first step;
    training then refines it on random resized crops (``crop``) of random frame windows.
    The linear transforms learn at ``lr * linear_lr_scale`` (they start near their optimum),
    the residual networks at ``lr``.

    Validation: on ``val_videos`` (whole-frame centre clips) when given, else on a temporal
    hold-out: the last ``val_fraction`` of every training video's frames (at least one
    clip's worth) is kept out of training and ``val_clips`` fixed clips of it are measured
    every ``val_every`` steps and before the first.

    Every ``checkpoint_every`` steps the model, optimiser, step and histories go to
    ``out + ".ckpt"``; with ``resume=True`` training continues from there to ``steps``.
    bf16 autocast on CUDA; float32 on CPU. ``max_seconds`` is a budget of training time
    (across resumes): the learning rate decays over it and training stops, after a
    checkpoint, when it is spent. ``compile=True`` runs the training step through
    ``torch.compile`` (on 2 CPU cores: about 45 s of compilation, then 11% faster steps; worth
    it for runs longer than about 10 minutes). ``frame_range`` / ``val_frame_range`` train
    and validate on fractions of every video's frames.
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
    start_step, losses, val_history, init_psnr, spent_before = 0, [], [], None, 0.0
    payload = _load_checkpoint(ckpt) if resume and os.path.exists(ckpt) else None
    if payload is not None:
        config = CodecConfig.from_dict(payload["config"])
    config = config or CodecConfig()

    dataset, loader = clip_loader(videos, config, batch_size=batch_size, crop=crop,
                                  num_workers=num_workers, seed=seed, frame_range=frame_range)
    if val_videos:
        _, val_loader = clip_loader([os.fspath(v) for v in val_videos], config,
                                    batch_size=batch_size, sampling="center", shuffle=False,
                                    clips_per_epoch=val_clips, frame_range=val_frame_range)
        val_source = f"{len(val_videos)} validation videos"
    elif isinstance(dataset, FramePool):
        held = dataset.hold_out(val_fraction, clips=val_clips)
        val_loader = torch.utils.data.DataLoader(held, batch_size=batch_size,
                                                 collate_fn=held.collate)
        val_source = (f"the last {val_fraction:.0%} of the frames of {len(held.frames)} "
                      "training videos (held out of training)")
    else:  # streamed: too large to split in memory
        _, val_loader = clip_loader(videos, config, batch_size=batch_size, sampling="center",
                                    shuffle=False, clips_per_epoch=val_clips)
        val_source = "centre clips of the training videos (too large to hold frames out)"
        warnings.warn("validating on the training videos themselves: pass val_videos for a "
                      "held-out measure", stacklevel=2)
    val_batches = [b for b in val_loader if b is not None]
    if not val_batches:
        raise InvalidArgumentError("no validation clip could be read from the videos")
    val_set = torch.cat(val_batches)[:val_clips]

    codec = VideoCodec(config).to(device_t)
    if payload is not None:
        codec.load_state_dict(payload["model"])
    else:
        init_psnr = codec.initialise(_first_clips(dataset, init_clips))
    linear = {id(p) for p in codec.linear_parameters()}
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in codec.parameters() if id(p) not in linear], "scale": 1.0},
         {"params": list(codec.linear_parameters()), "scale": float(linear_lr_scale)}],
        lr=lr, weight_decay=0.0)
    if payload is not None:
        optimizer.load_state_dict(payload["optimizer"])
        start_step = int(payload["step"])
        losses = [tuple(x) for x in payload["losses"].tolist()]
        val_history = [tuple(x) for x in payload["val_psnr"].tolist()]
        spent_before = float(payload.get("seconds", 0.0))
        torch.set_rng_state(payload["torch_rng"])

    use_bf16 = device_t.type == "cuda"
    forward = torch.compile(codec) if compile else codec
    clock = TrainClock(spent_before)  # training seconds, across resumes
    elapsed, started = clock.elapsed, clock.started

    step = start_step
    epoch = start_step  # distinct random clip positions after a resume
    bar = tqdm(total=steps, initial=start_step, disable=not progress, desc="train-codec",
               unit="step", dynamic_ncols=True)
    if val_history:
        last_val = val_history[-1][1]
    else:  # measured before the first step: the progress bar never shows nan
        last_val = validate(codec, val_set)
        val_history.append((start_step, last_val))

    def lr_at(s: int) -> float:
        return warmup_cosine(lr, s, steps, floor=0.1, clock=clock, max_seconds=max_seconds)

    try:
        while step < steps:
            dataset.set_epoch(epoch)
            epoch += 1
            for batch in loader:
                if batch is None:
                    continue
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step) * group["scale"]
                codec.train()
                with torch.autocast(device_t.type, dtype=torch.bfloat16, enabled=use_bf16):
                    recon, target, aux, _ = forward(batch)
                    loss = F.mse_loss(recon.float(), target) + 0.1 * F.l1_loss(
                        recon.float(), target) + aux
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
                optimizer.step()
                step += 1
                losses.append((step, float(loss.detach())))
                if step % val_every == 0 or step == steps:
                    last_val = validate(codec, val_set)
                    val_history.append((step, last_val))
                if step % checkpoint_every == 0 or step == steps:
                    _save_checkpoint(ckpt, codec, optimizer, step, losses, val_history, seed,
                                     elapsed())
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val_psnr=f"{last_val:.2f}dB")
                bar.update(1)
                out_of_time = clock.over(max_seconds)
                if step >= steps or out_of_time:
                    break
            if clock.over(max_seconds):
                if val_history[-1][0] != step:
                    last_val = validate(codec, val_set)
                    val_history.append((step, last_val))
                _save_checkpoint(ckpt, codec, optimizer, step, losses, val_history, seed,
                                     elapsed())
                break
    finally:
        bar.close()
    codec.eval()
    codec_id = codec.save(out)
    return TrainResult(out, codec_id, step, time.perf_counter() - started, losses, val_history,
                       start_step, init_psnr, val_source)


def _first_clips(dataset, count: int) -> torch.Tensor:
    """``count`` training clips (epoch 0's first) for the codec's initial transform."""
    items = []
    for index in range(count):
        item = dataset[index % len(dataset)]
        item = item if torch.is_tensor(item) else None if item is None else item["rgb"]
        if item is not None:
            items.append(item if item.shape[-1] == 3 else item.permute(0, 2, 3, 1))
    if not items:
        raise InvalidArgumentError("no training clip could be read from the videos")
    return torch.stack(items)
