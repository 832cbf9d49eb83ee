"""IMRNet (Yu et al., ICLR 2021): I-frame, motion-vector and residual streams (3D
ResNet-18 each) joined by bidirectional dynamic connections, with heads for
classification and the two pretext tasks (PMSP and CTP, labels from
:mod:`cvload.tasks`).

A connection joins the I stream with each P stream (motion vectors, residuals) after
conv1, res2, res3 and res4: P -> I is a time-strided convolution (the P streams hold K
frames per GOP, the I stream one), I -> P the matching transposed convolution, both
resized to the other stream's spatial grid, and each is added in proportion to a gate:
the multimodal gated attention, a sigmoid over the channel statistics of both streams.
The residual layers stride space only, so every stream keeps its frame count.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvload.errors import InvalidArgumentError
from cvload.models._resnet3d import ResNet3d18
from cvload.tasks import CTP_KINDS, pmsp_classes

__all__ = ["IMRNet"]

MV_SCALE = 8.0  # motion in pixels -> about unit scale


class _Connection(nn.Module):
    """Bidirectional dynamic connection between the I stream and one P stream."""

    def __init__(self, c_i: int, c_p: int, ratio: int) -> None:
        super().__init__()
        self.to_i = nn.Conv3d(c_p, c_i, (ratio, 1, 1), (ratio, 1, 1))
        self.to_p = nn.ConvTranspose3d(c_i, c_p, (ratio, 1, 1), (ratio, 1, 1))
        self.gate = nn.Linear(c_i + c_p, c_i + c_p)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, -2.0)  # connections start nearly closed
        self.c_i = c_i

    def forward(self, x_i, x_p):
        stats = torch.cat([x_i.mean(dim=(2, 3, 4)), x_p.mean(dim=(2, 3, 4))], 1)
        gates = torch.sigmoid(self.gate(stats))[:, :, None, None, None]
        g_i, g_p = gates[:, :self.c_i], gates[:, self.c_i:]
        into_i = self.to_i(F.interpolate(x_p, size=(x_p.shape[2], *x_i.shape[3:]),
                                         mode="trilinear", align_corners=False))
        into_p = F.interpolate(self.to_p(x_i), size=x_p.shape[2:], mode="trilinear",
                               align_corners=False)
        return x_i + g_i * into_i, x_p + g_p * into_p


class IMRNet(nn.Module):
    """``forward(batch)`` takes an ``imrnet`` layout batch as the loader gives it
    (``iframe`` ``(B, T, 3, H, W)`` uint8, ``mv`` ``(B, T, K, 4, h, w)`` float,
    ``residual`` ``(B, T, K, 3, H, W)`` int16) and returns ``{"features", "logits",
    "pmsp", "ctp"}``: pooled features of the three streams, class logits, one logit
    tensor per PMSP level (:func:`cvload.tasks.pmsp_classes`) and CTP logits over
    :data:`cvload.tasks.CTP_KINDS`. ``frames_per_gop`` is K."""

    def __init__(self, num_classes: int, *, frames_per_gop: int, width: float = 1.0,
                 pmsp_spatial: Sequence[int] = (2, 3, 4),
                 pmsp_temporal: Sequence[int] = (1, 3, 5), dropout: float = 0.5) -> None:
        super().__init__()
        if frames_per_gop < 1:
            raise InvalidArgumentError("frames_per_gop must be >= 1")
        self.k = int(frames_per_gop)
        self.iframe = ResNet3d18(3, width=width)
        self.mv = ResNet3d18(4, width=width, stem_stride=1)  # the field is already coarse
        self.residual = ResNet3d18(3, width=width)
        channels = self.iframe.channels
        joined = (channels[0], channels[0], channels[1], channels[2])  # conv1, res2..res4
        self.mv_links = nn.ModuleList(_Connection(c, c, self.k) for c in joined)
        self.residual_links = nn.ModuleList(_Connection(c, c, self.k) for c in joined)
        features = 3 * channels[-1]
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(features, num_classes)
        self.pmsp_sizes = pmsp_classes(pmsp_spatial, pmsp_temporal)
        self.pmsp_head = nn.Linear(2 * channels[-1], sum(self.pmsp_sizes))
        self.ctp_head = nn.Linear(features, len(CTP_KINDS))

    def _inputs(self, batch: dict):
        iframe, mv, residual = batch["iframe"], batch["mv"], batch["residual"]
        if mv.ndim != 6 or mv.shape[2] != self.k or residual.shape[2] != self.k:
            raise InvalidArgumentError(
                f"IMRNet(frames_per_gop={self.k}) takes mv (B, T, {self.k}, 4, h, w) and "
                f"residual (B, T, {self.k}, 3, H, W), got {tuple(mv.shape)} and "
                f"{tuple(residual.shape)}", hint="frames_per_gop is the layout's gop_frames - 1")
        b, t = mv.shape[:2]
        x_i = iframe.float().div(255.0).permute(0, 2, 1, 3, 4)
        x_m = (mv.float() / MV_SCALE).reshape(b, t * self.k, *mv.shape[3:]).permute(0, 2, 1, 3, 4)
        x_r = (residual.float() / 255.0).reshape(b, t * self.k, *residual.shape[3:]) \
            .permute(0, 2, 1, 3, 4)
        return x_i, x_m, x_r

    def forward(self, batch: dict) -> dict:
        x_i, x_m, x_r = self._inputs(batch)
        x_i, x_m, x_r = self.iframe.stem(x_i), self.mv.stem(x_m), self.residual.stem(x_r)
        for depth in range(4):
            if depth > 0:  # res2..res5
                x_i = self.iframe.layers[depth - 1](x_i)
                x_m = self.mv.layers[depth - 1](x_m)
                x_r = self.residual.layers[depth - 1](x_r)
            x_i, x_m = self.mv_links[depth](x_i, x_m)  # after conv1, res2, res3, res4
            x_i, x_r = self.residual_links[depth](x_i, x_r)
        x_i = self.iframe.layers[3](x_i)
        x_m, x_r = self.mv.layers[3](x_m), self.residual.layers[3](x_r)
        pooled = [x.mean(dim=(2, 3, 4)) for x in (x_i, x_m, x_r)]
        features = torch.cat(pooled, 1)
        pmsp = self.pmsp_head(torch.cat(pooled[1:], 1)).split(self.pmsp_sizes, 1)
        return {"features": features, "logits": self.classifier(self.dropout(features)),
                "pmsp": list(pmsp), "ctp": self.ctp_head(features)}

    @staticmethod
    def pmsp_loss(pmsp_logits: list, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the PMSP levels; ``labels`` ``(B, levels)`` from
        :func:`cvload.tasks.pmsp_labels`."""
        return torch.stack([F.cross_entropy(logits, labels[:, i])
                            for i, logits in enumerate(pmsp_logits)]).mean()
