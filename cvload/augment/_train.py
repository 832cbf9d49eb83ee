"""Training an augmentation network against a frozen codec (``cvload train-augnet``).

The loss is the L2 between ``A(embed(encode(x)), θ)`` and ``embed(encode(aug(x, θ)))``:
the network learns to produce, from the codes of a clip, the codes its transformed
version would have had. Each sample of a batch gets one of the ops, drawn uniformly, with
its own random parameters.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from cvload._training import TrainClock, load_checkpoint, save_checkpoint, warmup_cosine
from cvload._util import resolve_device
from cvload.augment._network import AugmentationNetwork, AugNetConfig
from cvload.augment._ops import Op, make_op
from cvload.errors import InvalidArgumentError

__all__ = ["AugTrainResult", "apply_ops", "train"]

CHECKPOINT_FORMAT = "cvload-augnet-checkpoint"


@dataclass
class AugTrainResult:
    """``path`` written, the codec id it serves, steps done, seconds, loss history
    ``(step, loss)``, validation history ``(step, loss)`` on held-out frames, the
    validation loss of the identity (no network: ``z`` against the target) and the step
    it resumed from."""

    path: str
    codec_id: str
    ops: tuple[str, ...]
    steps: int
    seconds: float
    losses: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    identity_val_loss: float = float("nan")
    resumed_from: int = 0


def apply_ops(config: AugNetConfig, video: torch.Tensor, which: torch.Tensor,
              params: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``i`` transformed by op ``which[i]`` with ``params[which[i]][i]``: the pixel
    targets ``(B, T, H, W, 3)`` and the network's ``(B, param_dim)`` vectors."""
    out = video.clone()
    vectors = torch.zeros(len(video), config.param_dim)
    for k, op in enumerate(config.ops):
        mask = which == k
        if not bool(mask.any()):
            continue
        out[mask.to(video.device)] = op.apply(video[mask.to(video.device)],
                                              params[k][mask].to(video.device))
        vectors[mask] = config.vector(op, params[k][mask])
    return out, vectors


def _draw(config: AugNetConfig, n: int, generator: torch.Generator):
    which = torch.randint(len(config.ops), (n,), generator=generator)
    return which, [op.sample(n, generator) for op in config.ops]


@torch.no_grad()
def _targets(codec, net: AugmentationNetwork, clips: torch.Tensor, generator: torch.Generator):
    """The network's inputs (``base(z, θ)``), parameter vectors and targets of one batch
    of uint8 clips, and ``z`` itself."""
    config = net.config
    video = clips.to(codec.device).float() / 255.0
    which, params = _draw(config, len(video), generator)
    augmented, vectors = apply_ops(config, video, which, params)
    z = codec.embed(codec.encode(video))
    target = codec.embed(codec.encode(augmented))
    inputs = z.clone()
    for k, op in enumerate(config.ops):
        mask = (which == k).to(z.device)
        if bool(mask.any()):
            inputs[mask] = net.base(z[mask], op, params[k][which == k])
    return inputs, vectors.to(z.device), target, z


def _network_config(codec, ops: Sequence, **overrides) -> AugNetConfig:
    c = codec.config
    grid = c.latent_shape(c.clip_frames, *c.size)
    return AugNetConfig(channels=c.latent_channels, grid=grid, ops=tuple(ops), **overrides)


def train(
    codec,
    videos: Sequence[str | os.PathLike[str]],
    *,
    out: str | os.PathLike[str],
    ops: Sequence[Op | str] = ("crop", "flip"),
    steps: int = 1000,
    batch_size: int = 8,
    lr: float = 1e-3,
    device: str = "auto",
    seed: int = 0,
    resume: bool = False,
    checkpoint_every: int = 100,
    val_every: int = 100,
    val_fraction: float = 0.1,
    val_clips: int = 8,
    max_seconds: float | None = None,
    progress: bool = True,
    mlp: tuple[int, ...] = (64, 64, 64),
    layers: int = 2,
    key_size: int = 128,
    mlp_size: int = 128,
    base: str = "resampled",
) -> AugTrainResult:
    """Train an :class:`AugmentationNetwork` for ``codec`` (a :class:`VideoCodec` or its
    file; frozen) on random clips of ``videos`` at the codec's clip shape; save it to
    ``out``.

    Validation: the last ``val_fraction`` of every video's frames is held out of training;
    ``val_clips`` fixed clips of it, with fixed parameters, are measured before the first
    step and every ``val_every`` steps. Every ``checkpoint_every`` steps the network,
    optimiser, step and histories go to ``out + ".ckpt"``; ``resume=True`` continues from
    there. ``max_seconds``: a budget of training time (across resumes) over which the
    learning rate decays. AdamW with 5% warm-up, then cosine decay.
    """
    from tqdm.auto import tqdm

    from cvload.codec import FramePool, VideoCodec, clip_loader

    codec_path = (os.path.abspath(os.fspath(codec)) if isinstance(codec, (str, os.PathLike))
                  else None)
    if codec_path is not None:
        codec = VideoCodec.load(codec_path)
    videos = [os.fspath(v) for v in videos]
    if not videos:
        raise InvalidArgumentError("no training videos given")
    if steps < 1 or batch_size < 1:
        raise InvalidArgumentError("steps and batch_size must be >= 1")
    ops = tuple(make_op(o) for o in ops)
    out = os.fspath(out)
    device_t = resolve_device(device)
    codec = codec.to(device_t).eval().requires_grad_(False)
    torch.manual_seed(seed)
    ckpt = f"{out}.ckpt"
    payload = _load_checkpoint(ckpt) if resume and os.path.exists(ckpt) else None
    if payload is not None:
        config = AugNetConfig.from_dict(payload["config"])
        if payload.get("codec_id") != codec.codec_id:
            from cvload.errors import CodecMismatchError

            raise CodecMismatchError(f"the checkpoint was trained for codec "
                                     f"{payload.get('codec_id')}, not {codec.codec_id}",
                                     source=ckpt, hint="resume with the same --codec, or "
                                                       "start over without --resume")
    else:
        config = _network_config(codec, ops, mlp=tuple(mlp), layers=layers,
                                 key_size=key_size, mlp_size=mlp_size, base=base)

    dataset, loader = clip_loader(videos, codec.config, batch_size=batch_size, seed=seed,
                                  pool="memory")
    assert isinstance(dataset, FramePool)
    held = dataset.hold_out(val_fraction, clips=val_clips)
    val = torch.cat([b for b in torch.utils.data.DataLoader(
        held, batch_size=batch_size, collate_fn=held.collate) if b is not None])[:val_clips]
    net = AugmentationNetwork(config, codec.codec_id, codec_path=codec_path).to(device_t)
    val_batch = _targets(codec, net, val, torch.Generator().manual_seed(seed + 1))
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    start_step, losses, val_history, spent_before = 0, [], [], 0.0
    if payload is not None:
        net.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        start_step = int(payload["step"])
        losses = [tuple(x) for x in payload["losses"].tolist()]
        val_history = [tuple(x) for x in payload["val_loss"].tolist()]
        spent_before = float(payload.get("seconds", 0.0))

    @torch.no_grad()
    def validate() -> float:
        net.eval()
        inputs, vectors, target, _ = val_batch
        loss = float(F.mse_loss(net(inputs, vectors), target))
        net.train()
        return loss

    identity_loss = float(F.mse_loss(val_batch[3], val_batch[2]))
    clock = TrainClock(spent_before)
    elapsed, started = clock.elapsed, clock.started

    def lr_at(s: int) -> float:
        return warmup_cosine(lr, s, steps, floor=0.05, clock=clock, max_seconds=max_seconds)

    generator = torch.Generator().manual_seed(seed * 7919 + start_step)
    step, epoch = start_step, start_step
    last_val = val_history[-1][1] if val_history else validate()
    if not val_history:
        val_history.append((step, last_val))
    bar = tqdm(total=steps, initial=start_step, disable=not progress, desc="train-augnet",
               unit="step", dynamic_ncols=True)
    net.train()
    try:
        while step < steps and not clock.over(max_seconds):
            dataset.set_epoch(epoch)
            epoch += 1
            for clips in loader:
                if clips is None:
                    continue
                inputs, vectors, target, _ = _targets(codec, net, clips, generator)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                loss = F.mse_loss(net(inputs, vectors), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                step += 1
                losses.append((step, float(loss.detach())))
                out_of_time = clock.over(max_seconds)
                if step % val_every == 0 or step == steps or out_of_time:
                    last_val = validate()
                    val_history.append((step, last_val))
                if step % checkpoint_every == 0 or step == steps or out_of_time:
                    _save_checkpoint(ckpt, net, optimizer, step, losses, val_history,
                                     elapsed())
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val=f"{last_val:.4f}",
                                identity=f"{identity_loss:.4f}")
                bar.update(1)
                if step >= steps or out_of_time:
                    break
    finally:
        bar.close()
    net.eval()
    net.save(out)
    return AugTrainResult(out, codec.codec_id, tuple(o.name for o in config.ops), step,
                          time.perf_counter() - started, losses, val_history, identity_loss,
                          start_step)


def _save_checkpoint(path, net, optimizer, step, losses, val_history, seconds) -> None:
    save_checkpoint(path, {
        "format": CHECKPOINT_FORMAT, "config": net.config.to_dict(), "codec_id": net.codec_id,
        "model": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
        "losses": torch.tensor(losses, dtype=torch.float64).reshape(-1, 2),
        "val_loss": torch.tensor(val_history, dtype=torch.float64).reshape(-1, 2),
        "seconds": float(seconds)})


def _load_checkpoint(path: str) -> dict:
    return load_checkpoint(path, CHECKPOINT_FORMAT, InvalidArgumentError,
                           "an augmentation network checkpoint")
