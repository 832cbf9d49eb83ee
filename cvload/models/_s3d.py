"""S3D (Xie et al., 2018): separable 3D convolutions in an Inception network, for RGB
clips and, with :meth:`S3D.for_codes`, for neural-code latents (Compressed Vision,
appendix E.1.1).

Strides: the RGB network reaches ``Mixed_3b`` at ``(2, 8, 8)`` of its input (stride-2
stem convolution, then two ``(1, 2, 2)`` max pools). A codes network starts from a grid
already ``(ts, ss, ss)`` smaller, so its stem keeps only what is left of those strides:

- stride-8 codecs (ss = 8): no spatial stride in the stem (convolution stride 1, both
  pools stride 1); a 16x128x128 clip's 4x16x16 grid enters ``Mixed_3b`` at 16x16, as the
  RGB network's 8x16x16 does.
- stride-4 codecs (ss = 4): spatial stride 2 (the stem convolution's), no pool stride.
- temporal stride 2 or 4 codecs: no temporal stride in the stem (1 keeps the RGB
  network's 2).

Later pools are as in the RGB network (they pad, so a grid of 1 stays 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cvload.errors import InvalidArgumentError

__all__ = ["S3D", "S3DConfig"]

# (1x1, 3x3 reduce, 3x3, 3x3 reduce, 3x3, pool proj) per Inception block, as in I3D
_BLOCKS = {
    "3b": (64, 96, 128, 16, 32, 32), "3c": (128, 128, 192, 32, 96, 64),
    "4b": (192, 96, 208, 16, 48, 64), "4c": (160, 112, 224, 24, 64, 64),
    "4d": (128, 128, 256, 24, 64, 64), "4e": (112, 144, 288, 32, 64, 64),
    "4f": (256, 160, 320, 32, 128, 128), "5b": (256, 160, 320, 32, 128, 128),
    "5c": (384, 192, 384, 48, 128, 128),
}


@dataclass(frozen=True)
class S3DConfig:
    """``in_channels``: 3 for RGB, the codec's latent channels for codes. ``stem_stride``:
    ``(temporal, spatial)`` stride of the stem (``(2, 8)`` for RGB). ``width``: channel
    multiplier (1.0 is the published network; smaller for quick runs). ``gating``: S3D-G
    feature gating after every separable convolution."""

    num_classes: int
    in_channels: int = 3
    stem_stride: tuple[int, int] = (2, 8)
    width: float = 1.0
    dropout: float = 0.5
    gating: bool = True

    def __post_init__(self) -> None:
        t, s = self.stem_stride
        if t not in (1, 2) or s not in (1, 2, 4, 8) or self.num_classes < 1 or self.width <= 0:
            raise InvalidArgumentError(
                f"S3D: stem_stride (t, s) needs t in (1, 2), s in (1, 2, 4, 8); num_classes "
                f">= 1, width > 0; got {self.stem_stride}, {self.num_classes}, {self.width}")


def _c(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


class _Unit(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride=(1, 1, 1), padding=(0, 0, 0)) -> None:
        super().__init__(nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False),
                         nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))


class _Gate(nn.Module):
    """S3D-G self-gating: channels scaled by a sigmoid of their space-time average."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x):
        weights = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return x * weights[:, :, None, None, None]


class _SepConv(nn.Module):
    """A k x k spatial convolution, then a k temporal one (each with BN and ReLU)."""

    def __init__(self, c_in, c_out, k, stride=(1, 1), gating=False) -> None:
        super().__init__()
        t, s = stride
        self.spatial = _Unit(c_in, c_out, (1, k, k), (1, s, s), (0, k // 2, k // 2))
        self.temporal = _Unit(c_out, c_out, (k, 1, 1), (t, 1, 1), (k // 2, 0, 0))
        self.gate = _Gate(c_out) if gating else nn.Identity()

    def forward(self, x):
        return self.gate(self.temporal(self.spatial(x)))


class _Inception(nn.Module):
    def __init__(self, c_in: int, spec, width: float, gating: bool) -> None:
        super().__init__()
        b0, b1a, b1, b2a, b2, b3 = (_c(c, width) for c in spec)
        self.b0 = _Unit(c_in, b0, 1)
        self.b1 = nn.Sequential(_Unit(c_in, b1a, 1), _SepConv(b1a, b1, 3, gating=gating))
        self.b2 = nn.Sequential(_Unit(c_in, b2a, 1), _SepConv(b2a, b2, 3, gating=gating))
        self.b3 = nn.Sequential(nn.MaxPool3d(3, 1, 1), _Unit(c_in, b3, 1))
        self.out_channels = b0 + b1 + b2 + b3

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(x)], 1)


class S3D(nn.Module):
    """``forward(x)``: ``(B, in_channels, T, H, W)`` float -> logits ``(B, num_classes)``.
    ``features(x)`` gives the pooled ``(B, 1024 * width)`` embedding. RGB clips should be
    normalised by the caller (e.g. to [-1, 1]); code latents come from ``codec.embed`` or
    :class:`cvload.LatentAugment` as they are."""

    def __init__(self, config: S3DConfig) -> None:
        super().__init__()
        self.config = config
        w, g = config.width, config.gating
        t, s = config.stem_stride
        conv_s = min(s, 2)
        pool1_s = min(max(s // conv_s, 1), 2)
        pool2_s = max(s // (conv_s * pool1_s), 1)
        c64, c192 = _c(64, w), _c(192, w)
        self.stem = nn.Sequential(
            _SepConv(config.in_channels, c64, 7, stride=(t, conv_s)),
            nn.MaxPool3d((1, 3, 3), (1, pool1_s, pool1_s), (0, 1, 1)),
            _Unit(c64, c64, 1),
            _SepConv(c64, c192, 3, gating=g),
            nn.MaxPool3d((1, 3, 3), (1, pool2_s, pool2_s), (0, 1, 1)),
        )
        blocks: list[nn.Module] = []
        channels = c192
        for name in ("3b", "3c", "pool", "4b", "4c", "4d", "4e", "4f", "pool2", "5b", "5c"):
            if name == "pool":
                blocks.append(nn.MaxPool3d(3, 2, 1))
                continue
            if name == "pool2":
                blocks.append(nn.MaxPool3d(2, 2, 0, ceil_mode=True))
                continue
            block = _Inception(channels, _BLOCKS[name], w, g)
            blocks.append(block)
            channels = block.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.feature_channels = channels
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(channels, config.num_classes)

    @classmethod
    def for_rgb(cls, num_classes: int, **options) -> "S3D":
        return cls(S3DConfig(num_classes, **options))

    @classmethod
    def for_codes(cls, codec, num_classes: int, **options) -> "S3D":
        """The network for ``codec``'s latents ``(B, G*d, t, h, w)``: its stem takes the
        latent channels and keeps only the strides the code grid has not already taken
        (module docstring)."""
        c = codec.config
        stride = (max(1, 2 // c.temporal_stride), max(1, 8 // c.spatial_stride))
        return cls(S3DConfig(num_classes, in_channels=c.latent_channels, stem_stride=stride,
                             **options))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.config.in_channels:
            raise InvalidArgumentError(
                f"S3D takes (B, {self.config.in_channels}, T, H, W), got {tuple(x.shape)}",
                hint="RGB clips from the loader are (B, T, 3, H, W): permute(0, 2, 1, 3, 4)"
                if x.ndim == 5 and x.shape[2] == self.config.in_channels else None)
        return self.blocks(self.stem(x.float())).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))
