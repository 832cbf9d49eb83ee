"""MVCGC (Huo et al., 2021): contrastive learning across the RGB and motion-vector views
of the same clips, with momentum encoders, queues of keys, and a multi-instance InfoNCE
whose extra positives are mined in the other view (top-k hard positives)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from cvload.models._resnet3d import ResNet3d18

__all__ = ["MVCGC"]

MV_SCALE = 8.0


def _projection(c_in: int, dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(c_in, c_in), nn.ReLU(inplace=True), nn.Linear(c_in, dim))


class MVCGC(nn.Module):
    """``forward(batch)`` takes an ``mvcgc`` layout batch (``rgb`` ``(B, T, 3, H, W)``
    uint8, ``mv`` ``(B, T, 4, h, w)`` float) and, in training, returns ``{"loss",
    "rgb", "mv"}``: the symmetric cross-view multi-instance InfoNCE and the normalised
    query embeddings (``(B, dim)``); it then updates the momentum encoders and enqueues
    this batch's keys. In eval mode it returns the embeddings only (no loss, no update).

    For an RGB query the positives are its own clip's MV key and the ``top_k`` MV-queue
    entries most similar to that key (hard positives mined in the MV view), and the other
    way round; every other queue entry is a negative. ``top_k=0`` is plain cross-view
    InfoNCE.
    """

    def __init__(self, *, dim: int = 128, queue_size: int = 2048, momentum: float = 0.99,
                 temperature: float = 0.07, top_k: int = 5, width: float = 1.0) -> None:
        super().__init__()
        self.rgb_encoder = ResNet3d18(3, width=width)
        self.mv_encoder = ResNet3d18(4, width=width, stem_stride=1)
        c = self.rgb_encoder.out_channels
        self.rgb_head, self.mv_head = _projection(c, dim), _projection(c, dim)
        self.momentum_rgb = copy.deepcopy(nn.Sequential(self.rgb_encoder, self.rgb_head))
        self.momentum_mv = copy.deepcopy(nn.Sequential(self.mv_encoder, self.mv_head))
        for p in [*self.momentum_rgb.parameters(), *self.momentum_mv.parameters()]:
            p.requires_grad_(False)
        self.momentum, self.temperature, self.top_k = momentum, temperature, int(top_k)
        self.register_buffer("queue_rgb", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_mv", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_at", torch.zeros((), dtype=torch.int64))

    @staticmethod
    def _views(batch: dict):
        rgb = batch["rgb"].float().div(255.0).permute(0, 2, 1, 3, 4)
        mv = (batch["mv"].float() / MV_SCALE).permute(0, 2, 1, 3, 4)
        return rgb, mv

    def embed(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised query embeddings of both views."""
        rgb, mv = self._views(batch)
        return (F.normalize(self.rgb_head(self.rgb_encoder(rgb)), dim=1),
                F.normalize(self.mv_head(self.mv_encoder(mv)), dim=1))

    def _loss(self, query, key, queue):
        """Multi-instance InfoNCE of ``query`` (one view) against ``key`` (its clip's key
        in the other view) and that view's ``queue``; the extra positives are mined in
        the other view: the queue entries nearest to ``key`` there."""
        positive = (query * key).sum(1, keepdim=True)
        logits = torch.cat([positive, query @ queue.T], 1) / self.temperature
        mask = torch.zeros_like(logits, dtype=torch.bool)
        mask[:, 0] = True
        if self.top_k > 0:
            mined = (key @ queue.T).topk(self.top_k, dim=1).indices
            mask[:, 1:].scatter_(1, mined, True)
        return (torch.logsumexp(logits, 1)
                - torch.logsumexp(logits.masked_fill(~mask, float("-inf")), 1)).mean()

    @torch.no_grad()
    def _momentum_update(self) -> None:
        online = [*self.rgb_encoder.parameters(), *self.rgb_head.parameters(),
                  *self.mv_encoder.parameters(), *self.mv_head.parameters()]
        target = [*self.momentum_rgb.parameters(), *self.momentum_mv.parameters()]
        for p, q in zip(online, target):
            q.mul_(self.momentum).add_(p.detach(), alpha=1 - self.momentum)

    @torch.no_grad()
    def _enqueue(self, keys_rgb, keys_mv) -> None:
        n, size = len(keys_rgb), len(self.queue_rgb)
        at = int(self.queue_at)
        index = (torch.arange(n, device=keys_rgb.device) + at) % size
        self.queue_rgb[index] = keys_rgb
        self.queue_mv[index] = keys_mv
        self.queue_at.fill_((at + n) % size)

    def forward(self, batch: dict) -> dict:
        q_rgb, q_mv = self.embed(batch)
        if not self.training:
            return {"rgb": q_rgb, "mv": q_mv}
        with torch.no_grad():
            self._momentum_update()
            rgb, mv = self._views(batch)
            k_rgb = F.normalize(self.momentum_rgb(rgb), dim=1)
            k_mv = F.normalize(self.momentum_mv(mv), dim=1)
        # the loss keeps the queues for backward: enqueueing writes into copies' originals
        loss = 0.5 * (self._loss(q_rgb, k_mv, self.queue_mv.clone())
                      + self._loss(q_mv, k_rgb, self.queue_rgb.clone()))
        self._enqueue(k_rgb, k_mv)
        return {"loss": loss, "rgb": q_rgb, "mv": q_mv}
