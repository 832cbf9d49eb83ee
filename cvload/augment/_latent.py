"""Applying augmentations to codes on the device: :class:`LatentAugment` (a batched
``gpu_transforms`` entry of :class:`cvload.DataLoader`), the naive latent baselines, and
test-time views.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from cvload.augment._network import AugmentationNetwork
from cvload.augment._ops import HorizontalFlip, Op, RandomResizedCrop, make_op
from cvload.errors import InvalidArgumentError

__all__ = ["LatentAugment", "naive_crop", "naive_flip", "test_time_views"]


def naive_flip(latents: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
    """Baseline: mirror the token grid (``(B, C, t, h, w)``, along w) where ``params``
    (``(B, 1)`` flags, default all) say so; each token's content stays unflipped."""
    if params is None:
        return latents.flip(-1)
    flipped = torch.as_tensor(params, device=latents.device)[:, 0] > 0.5
    return torch.where(flipped[:, None, None, None, None], latents.flip(-1), latents)


def naive_crop(latents: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Baseline: resample the token grid inside the normalised box ``(x0, y0, w, h)`` back
    to the full grid by nearest neighbour (as Space-Time Crop & Attend does)."""
    b, c, t, h, w = latents.shape
    params = torch.as_tensor(params, dtype=torch.float32, device=latents.device)
    x0, y0, bw, bh = params.unbind(1)
    centres_x = (torch.arange(w, device=latents.device) + 0.5) / w  # output token centres
    centres_y = (torch.arange(h, device=latents.device) + 0.5) / h
    src_x = ((x0[:, None] + bw[:, None] * centres_x) * w).floor().long().clamp(0, w - 1)
    src_y = ((y0[:, None] + bh[:, None] * centres_y) * h).floor().long().clamp(0, h - 1)
    flat = latents.reshape(b, c, t, h * w)
    index = (src_y[:, :, None] * w + src_x[:, None, :]).reshape(b, 1, 1, h * w)
    return torch.gather(flat, 3, index.expand(b, c, t, h * w)).view(b, c, t, h, w)


def test_time_views(augnet: AugmentationNetwork, latents: torch.Tensor, *, crops: int = 3,
                    scale: float = 0.8, flips: bool = True) -> list[torch.Tensor]:
    """Views to average predictions over at evaluation, as the paper does: ``crops``
    boxes of ``scale`` of the width and height, linearly spaced from the top-left to the
    bottom-right corner, each also mirrored when ``flips`` (so ``crops * 2`` views).
    Needs a network serving ``crop`` (and ``flip`` when ``flips``)."""
    if crops < 1 or not 0 < scale <= 1:
        raise InvalidArgumentError("crops must be >= 1 and scale in (0, 1]")
    b = latents.shape[0]
    views = []
    for offset in np.linspace(0.0, 1.0 - scale, crops):
        box = torch.tensor([[offset, offset, scale, scale]], dtype=torch.float32).repeat(b, 1)
        view = augnet.apply_op(latents, "crop", box)
        views.append(view)
        if flips:
            views.append(augnet.apply_op(view, "flip", torch.ones(b, 1)))
    return views


test_time_views.__test__ = False  # not a test, for pytest collecting user modules that import it


class LatentAugment(nn.Module):
    """A device transform: each sample's codes go through the learned augmentation
    network with its own random parameters, batched, in the main process.

    Args:
        augnet: an :class:`AugmentationNetwork` (or the path of its file).
        codec: the :class:`cvload.codec.VideoCodec` (or its file) the network was trained
            for (checked: :class:`cvload.errors.CodecMismatchError` otherwise); it embeds
            the codes. ``None``: the codec file recorded at training time.
        ops: the ops to apply (names or ops with their ranges), each in turn to every
            sample with probability ``p``; default: all the network serves, with the
            ranges it was trained on.
        p: probability that a sample gets each op.
        seed: parameters are drawn from a generator seeded by ``(seed, epoch, the batch's
            sample ids)`` when batches carry ``__index__`` (shard batches do), so the same
            seed gives the same augmentations whatever the workers or a resume; otherwise
            by ``(seed, epoch, batch count)``. :class:`cvload.DataLoader` calls
            :meth:`set_epoch`.
        key: the batch entry holding the codes; output: ``"latents"`` puts the augmented
            latents ``(B, C, t, h, w)`` float under ``"latents"`` (codes kept);
            ``"codes"`` re-quantises them into the codes entry.

    Per batch it also records ``last_params``: ``{op name: (B, P) params, applied mask}``.
    """

    def __init__(self, augnet: AugmentationNetwork | str, codec=None, *, ops: Sequence = (),
                 p: float = 0.5, seed: int = 0, key: str = "codes",
                 output: Literal["latents", "codes"] = "latents") -> None:
        super().__init__()
        if isinstance(augnet, (str, bytes)) or hasattr(augnet, "__fspath__"):
            augnet = AugmentationNetwork.load(augnet)
        codec = augnet.load_codec(codec)
        if output not in ("latents", "codes"):
            raise InvalidArgumentError(f"Invalid output {output!r}. Supported values are "
                                       "'latents' and 'codes'.")
        if not 0 <= float(p) <= 1:
            raise InvalidArgumentError(f"p must lie in [0, 1], got {p}")
        chosen = tuple(make_op(o) for o in ops) or augnet.config.ops
        for op in chosen:
            augnet.config.op_index(op)  # raises for an op the network does not serve
        self.augnet = augnet.eval().requires_grad_(False)
        self.codec = codec.eval().requires_grad_(False)
        self.ops: tuple[Op, ...] = chosen
        self.p, self.seed, self.key, self.output = float(p), int(seed), key, output
        self.epoch, self._calls = 0, 0
        self.last_params: dict = {}

    def check_dataset(self, dataset) -> None:
        """Refuse a dataset of codes made by another codec (its ``codec_id``)."""
        codec_id = getattr(dataset, "codec_id", None)
        if codec_id is not None and codec_id != self.codec.codec_id:
            from cvload.errors import CodecMismatchError

            source = getattr(dataset, "paths", [None])
            raise CodecMismatchError(
                f"the shards hold codes of codec {codec_id}; this LatentAugment serves codec "
                f"{self.codec.codec_id}", source=source[0] if source else None,
                hint="pack the shards with the codec the augmentation network was trained for")

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._calls = int(epoch), 0

    def _generator(self, batch: dict) -> torch.Generator:
        ids = batch.get("__index__")
        if ids is not None:
            entropy = [self.seed, self.epoch, *np.asarray(torch.as_tensor(ids).cpu(), np.int64)
                       .tolist()]
        else:
            entropy = [self.seed, self.epoch, self._calls, 0xA06]
        self._calls += 1
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)
        return torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def forward(self, batch: dict) -> dict:
        if self.key not in batch:
            raise InvalidArgumentError(f"LatentAugment needs codes under {self.key!r}; the "
                                       f"batch has {sorted(batch)}")
        codes = batch[self.key]
        device = codes.device
        if self.augnet.position.device != device:
            self.augnet.to(device)
            self.codec.to(device)
        latents = self.codec.embed(codes)
        generator = self._generator(batch)
        n = latents.shape[0]
        self.last_params = {}
        for op in self.ops:
            params = op.sample(n, generator)
            applied = torch.rand(n, generator=generator) < self.p
            params = torch.where(applied[:, None], params, op.identity(n))
            self.last_params[op.name] = (params, applied)
            chosen = applied.nonzero()[:, 0]
            if len(chosen) == 0:
                continue
            # the network runs on the chosen samples only (half the batch at p=0.5)
            out = self.augnet.apply_op(latents[chosen.to(device)], op,
                                       params[chosen].to(device))
            latents = latents.index_copy(0, chosen.to(device), out)
        batch = dict(batch)
        if self.output == "latents":
            batch["latents"] = latents
        else:
            _, requantised, _ = self.codec.quantizer(latents)
            batch[self.key] = requantised.to(codes.dtype)
        return batch

    def extra_repr(self) -> str:
        return (f"ops={[o.name for o in self.ops]}, p={self.p}, seed={self.seed}, "
                f"output={self.output!r}")


# Keep the names used by the baselines discoverable from the op classes.
NAIVE = {RandomResizedCrop.name: naive_crop, HorizontalFlip.name: naive_flip}
