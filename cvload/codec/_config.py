"""``CodecConfig``: everything that defines a codec's architecture and code format."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from cvload.errors import CodecMismatchError, InvalidArgumentError

__all__ = ["CodecConfig"]


@dataclass(frozen=True)
class CodecConfig:
    """Architecture and code format of a :class:`VideoCodec`.

    Attributes:
        clip_frames, size: the clip shape ``(T, H, W)`` the codec is trained on. The
            network is convolutional, so any T divisible by ``temporal_stride`` and H, W
            divisible by ``spatial_stride`` encode; shards record the trained shape.
        temporal_stride: 1, 2 or 4; spatial_stride: 4 or 8. A ``(T, H, W)`` clip becomes a
            ``(T/ts, H/ss, W/ss)`` grid of codes, each with ``groups`` integers. At a fixed
            budget of bits, fewer, richer codes (stride 4 in time, 2 groups of 16 bits)
            measured better than more, poorer ones (stride 2, 3 groups of 8 bits).
        channels: width of the learned refinement networks (they run at the code grid's
            resolution, so CPU time grows with its square, not with the clip's pixels).
        res_blocks: residual blocks in each refinement network (encoder and decoder).
        tail_channels: width of the decoder's full-resolution residual tail (0: none).
        quantizer: ``"fsq"`` (finite scalar quantisation, the default) or ``"vq"``
            (vector quantisation with EMA codebooks, data-dependent initialisation and
            dead-code restart).
        groups: integers per grid position (G).
        fsq_levels: FSQ levels of one group; their product is the group's codebook size
            (the default ``(64, 16, 8, 8)`` = 65536 codes, 16 bits, stored as uint16;
            ``(8, 6, 5)`` = 240 codes fit uint8). The default 16x128x128 clip becomes
            4x16x16x2 codes: 4096 bytes, a compression ratio of 192.
        vq_codebook_size, vq_dim: entries and dimension of each VQ codebook.
        vq_decay, vq_commitment, vq_dead_threshold: EMA decay, commitment weight, and the
            EMA usage below which a code is restarted from the current batch.
    """

    clip_frames: int = 16
    size: tuple[int, int] = (128, 128)
    temporal_stride: int = 4
    spatial_stride: int = 8
    channels: int = 64
    res_blocks: int = 1
    tail_channels: int = 0
    quantizer: Literal["fsq", "vq"] = "fsq"
    groups: int = 2
    fsq_levels: tuple[int, ...] = (64, 16, 8, 8)
    vq_codebook_size: int = 256
    vq_dim: int = 8
    vq_decay: float = 0.99
    vq_commitment: float = 0.25
    vq_dead_threshold: float = 0.1
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.size, int):
            object.__setattr__(self, "size", (self.size, self.size))
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        object.__setattr__(self, "fsq_levels", tuple(int(x) for x in self.fsq_levels))
        if self.temporal_stride not in (1, 2, 4):
            raise InvalidArgumentError(
                f"Invalid temporal_stride {self.temporal_stride!r}. Supported values are 1, 2 and 4.")
        if self.spatial_stride not in (4, 8):
            raise InvalidArgumentError(
                f"Invalid spatial_stride {self.spatial_stride!r}. Supported values are 4 and 8.")
        if self.quantizer not in ("fsq", "vq"):
            raise InvalidArgumentError(
                f"Invalid quantizer {self.quantizer!r}. Supported values are 'fsq' and 'vq'.")
        if self.groups < 1 or self.channels < 8 or self.res_blocks < 0 or \
                self.tail_channels < 0:
            raise InvalidArgumentError(
                "groups must be >= 1, channels >= 8, res_blocks >= 0, tail_channels >= 0.")
        if self.quantizer == "fsq":
            if not self.fsq_levels or min(self.fsq_levels) < 2:
                raise InvalidArgumentError("fsq_levels must be integers >= 2, e.g. (8, 6, 5).")
            if self.codebook_size > 65536:
                raise InvalidArgumentError(
                    f"fsq_levels {self.fsq_levels} give {self.codebook_size} codes per group; "
                    "at most 65536 fit uint16.")
        elif not 2 <= self.vq_codebook_size <= 65536:
            raise InvalidArgumentError("vq_codebook_size must be between 2 and 65536.")
        self.check_clip(self.clip_frames, *self.size)

    # -- derived ------------------------------------------------------------------------

    @property
    def group_dim(self) -> int:
        """Latent channels per group (FSQ: number of levels; VQ: vq_dim)."""
        return len(self.fsq_levels) if self.quantizer == "fsq" else self.vq_dim

    @property
    def latent_channels(self) -> int:
        return self.groups * self.group_dim

    @property
    def codebook_size(self) -> int:
        """Distinct codes per group (K)."""
        return int(np.prod(self.fsq_levels)) if self.quantizer == "fsq" else self.vq_codebook_size

    @property
    def code_dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.codebook_size <= 256 else np.dtype(np.uint16)

    @property
    def bits_per_code(self) -> float:
        return math.log2(self.codebook_size)

    def check_clip(self, frames: int, height: int, width: int, *, source: object = None) -> None:
        """Raise CodecMismatchError unless a (frames, height, width) clip maps to an exact grid."""
        if frames % self.temporal_stride or height % self.spatial_stride or \
                width % self.spatial_stride:
            raise CodecMismatchError(
                f"a clip of {frames}x{height}x{width} (frames x height x width) does not divide "
                f"into the codec's strides (temporal {self.temporal_stride}, spatial "
                f"{self.spatial_stride})", source=source,
                hint=f"use frames divisible by {self.temporal_stride} and a size divisible by "
                     f"{self.spatial_stride}, e.g. {self.clip_frames}x{self.size[0]}x{self.size[1]}",
            )

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        self.check_clip(frames, height, width)
        return (frames // self.temporal_stride, height // self.spatial_stride,
                width // self.spatial_stride)

    # -- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["fsq_levels"] = list(self.fsq_levels)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "CodecConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v)
                      for k, v in data.items() if k in known})
