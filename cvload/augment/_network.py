"""``AugmentationNetwork``: codes' latents and a transform's parameters -> the latents of
the transformed clip (Compressed Vision, 2022, section 3.3 and appendix).

An MLP maps the parameter vector (a one-hot op id when the network serves several ops,
then the op's parameters, zero-padded to the longest op) to C channels; that embedding is
broadcast over the token grid and concatenated with the latents; a learned absolute
positional embedding ``(t, h*w, 2C)`` is added and two transformer layers (each attention
over time, then over space, then an MLP) map the result back to C channels. The output is
the input latents plus that correction, with the last projection zero-initialised: an
untrained network is the identity.

One departure from the paper, measured (see ``cvload eval-augnet``) and switchable: with
``base="resampled"`` (the default) a geometric op first moves the token grid as it moves
pixels (a bilinear resampling of the latents by the op's affine, :meth:`Op.grid_theta`),
and the network learns the correction on top: what changes inside each token (a
flipped token's content, sub-token offsets, rescaling). ``base="identity"`` is the
paper's formulation, where the network learns the whole mapping from ``z``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from cvload.augment._ops import Op, affine_resample, make_op, op_from_dict
from cvload.errors import CodecMismatchError, InvalidArgumentError

__all__ = ["AugmentationNetwork", "AugNetConfig"]

FILE_FORMAT = "cvload-augnet"
FILE_VERSION = 1


@dataclass(frozen=True)
class AugNetConfig:
    """Shape and width of an :class:`AugmentationNetwork`.

    ``channels`` (C) and ``grid`` ``(t, h, w)``: the latents it takes (the codec's
    ``embed`` output for its trained clip shape; the positional embedding is learned for
    this grid). ``ops``: the ops it serves, in order (their ranges travel with the file).
    Defaults are the paper's: MLP widths (64, 64, 64), 2 layers, 1 head, key size 128,
    MLP size 128.
    """

    channels: int
    grid: tuple[int, int, int]
    ops: tuple[Op, ...]
    mlp: tuple[int, ...] = (64, 64, 64)
    layers: int = 2
    heads: int = 1
    key_size: int = 128
    mlp_size: int = 128
    base: Literal["resampled", "identity"] = "resampled"
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        object.__setattr__(self, "ops", tuple(make_op(o) for o in self.ops))
        object.__setattr__(self, "mlp", tuple(int(m) for m in self.mlp))
        if not self.ops:
            raise InvalidArgumentError("an augmentation network needs at least one op")
        names = [o.name for o in self.ops]
        if len(set(names)) != len(names):
            raise InvalidArgumentError(f"ops repeat: {names}")
        if self.channels < 1 or len(self.grid) != 3 or min(self.grid) < 1:
            raise InvalidArgumentError(f"channels must be >= 1 and grid (t, h, w) positive, "
                                       f"got {self.channels}, {self.grid}")
        if self.base not in ("resampled", "identity"):
            raise InvalidArgumentError(f"Invalid base {self.base!r}. Supported values are "
                                       "'resampled' and 'identity'.")
        if self.key_size % self.heads or self.layers < 1:
            raise InvalidArgumentError("key_size must be divisible by heads; layers >= 1")

    @property
    def param_dim(self) -> int:
        """Length of the network's parameter vector."""
        one_hot = len(self.ops) if len(self.ops) > 1 else 0
        return one_hot + max(o.num_params for o in self.ops)

    def op_index(self, op: Op | str) -> int:
        name = op if isinstance(op, str) else op.name
        for i, candidate in enumerate(self.ops):
            if candidate.name == name:
                return i
        raise InvalidArgumentError(f"this augmentation network was not trained for op "
                                   f"{name!r}; it serves {[o.name for o in self.ops]}")

    def vector(self, op: Op | str, params: torch.Tensor) -> torch.Tensor:
        """The network's ``(B, param_dim)`` input for op ``op`` with ``params``."""
        index = self.op_index(op)
        params = torch.as_tensor(params, dtype=torch.float32)
        n = params.shape[0]
        out = params.new_zeros(n, self.param_dim)
        start = 0
        if len(self.ops) > 1:
            out[:, index] = 1.0
            start = len(self.ops)
        out[:, start:start + params.shape[1]] = params
        return out

    def to_dict(self) -> dict:
        return {"channels": self.channels, "grid": list(self.grid),
                "ops": [o.to_dict() for o in self.ops], "mlp": list(self.mlp),
                "layers": self.layers, "heads": self.heads, "key_size": self.key_size,
                "mlp_size": self.mlp_size, "base": self.base, "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: dict) -> "AugNetConfig":
        data = dict(data)
        data["ops"] = tuple(op_from_dict(o) for o in data["ops"])
        return cls(**data)


class _Attention(nn.Module):
    def __init__(self, dim: int, key_size: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * key_size)
        self.out = nn.Linear(key_size, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(N, L, D)``: pre-norm attention along L, residual added."""
        n, length, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(n, length, 3, self.heads, -1).permute(
            2, 0, 3, 1, 4)
        if length <= 32:
            # many short sequences (attention over time): plain batched matmuls are faster
            # on the CPU than the fused kernel (measured 1.6x for the whole layer)
            weights = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
            y = weights @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(y.transpose(1, 2).reshape(n, length, -1))


class _Layer(nn.Module):
    """Attention over time (per token position), then over space (per time step), then
    an MLP; pre-norm residual blocks."""

    def __init__(self, dim: int, key_size: int, heads: int, mlp_size: int) -> None:
        super().__init__()
        self.time = _Attention(dim, key_size, heads)
        self.space = _Attention(dim, key_size, heads)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_size), nn.GELU(), nn.Linear(mlp_size, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, s, d = x.shape
        x = self.time(x.transpose(1, 2).reshape(b * s, t, d)).view(b, s, t, d).transpose(1, 2)
        x = self.space(x.reshape(b * t, s, d)).view(b, t, s, d)
        return x + self.mlp(self.norm(x))


class AugmentationNetwork(nn.Module):
    """``A(z, θ) = F(base(z, θ), θ)``: :meth:`apply_op` takes latents ``(B, C, t, h, w)``,
    an op and its parameters ``(B, P)`` and returns latents of the same shape;
    :meth:`forward` is ``F`` (latents already moved by :meth:`base`, parameter vectors
    ``(B, param_dim)`` from :meth:`AugNetConfig.vector`). ``codec_id`` records the codec
    it was trained for (:meth:`check_codec`)."""

    def __init__(self, config: AugNetConfig, codec_id: str | None = None, *,
                 codec_path: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.codec_id = codec_id
        self.codec_path = codec_path  # where the codec was when this was trained, if known
        c = config.channels
        widths = (config.param_dim, *config.mlp, c)
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(nn.GELU())
        self.param_mlp = nn.Sequential(*layers)
        t, h, w = config.grid
        self.position = nn.Parameter(torch.randn(t, h * w, 2 * c) * 0.02)
        self.layers = nn.ModuleList(
            _Layer(2 * c, config.key_size, config.heads, config.mlp_size)
            for _ in range(config.layers))
        self.norm = nn.LayerNorm(2 * c)
        self.head = nn.Linear(2 * c, c)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, latents: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = latents.shape
        if (c, t, h, w) != (self.config.channels, *self.config.grid):
            raise InvalidArgumentError(
                f"latents {tuple(latents.shape)} do not fit this augmentation network: it "
                f"takes (B, {self.config.channels}, {', '.join(map(str, self.config.grid))})",
                hint="train one for this codec and clip shape with `cvload train-augnet`")
        if params.shape != (b, self.config.param_dim):
            raise InvalidArgumentError(f"params must be ({b}, {self.config.param_dim}), got "
                                       f"{tuple(params.shape)}")
        tokens = latents.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, c)
        embedding = self.param_mlp(params.to(latents.dtype))[:, None, None, :]
        x = torch.cat([tokens, embedding.expand(b, t, h * w, c)], -1) + self.position
        for layer in self.layers:
            x = layer(x)
        out = tokens + self.head(self.norm(x))
        return out.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)

    def base(self, latents: torch.Tensor, op: Op | str, params: torch.Tensor) -> torch.Tensor:
        """The latents the network corrects: with ``base="resampled"`` the token grid
        moved as the op moves pixels (bilinear, border values outside), else ``latents``."""
        op = self.config.ops[self.config.op_index(op)]
        if self.config.base == "identity":
            return latents
        theta = op.grid_theta(torch.as_tensor(params, dtype=torch.float32).to(latents.device),
                              latents.shape[3], latents.shape[4])
        if theta is None:
            return latents
        moved = affine_resample(latents.permute(0, 2, 3, 4, 1), theta, padding="border")
        return moved.permute(0, 4, 1, 2, 3).contiguous()

    def apply_op(self, latents: torch.Tensor, op: Op | str, params: torch.Tensor) -> torch.Tensor:
        """``A(z, θ)`` for one op with parameters ``params`` ``(B, P)``."""
        vectors = self.config.vector(op, torch.as_tensor(params).cpu()).to(latents.device)
        return self(self.base(latents, op, params), vectors)

    # -- files ----------------------------------------------------------------------------

    def load_codec(self, codec=None):
        """``codec`` (a :class:`VideoCodec` or its file) or, when ``None``, the codec file
        recorded at training time; checked with :meth:`check_codec`."""
        from cvload.codec import VideoCodec

        if codec is None:
            if not self.codec_path or not os.path.exists(self.codec_path):
                raise InvalidArgumentError(
                    "no codec given and the one this network was trained with is not at "
                    f"{self.codec_path!r}", hint="pass --codec (the file from train-codec)")
            codec = self.codec_path
        if isinstance(codec, (str, os.PathLike)):
            codec = VideoCodec.load(codec)
        self.check_codec(codec)
        return codec

    def check_codec(self, codec) -> None:
        """Raise :class:`CodecMismatchError` unless ``codec`` is the one trained for."""
        if self.codec_id is not None and codec.codec_id != self.codec_id:
            raise CodecMismatchError(
                f"this augmentation network was trained for codec {self.codec_id}, not "
                f"{codec.codec_id}",
                hint="train one for this codec with `cvload train-augnet --codec ...`")

    def save(self, path: str | os.PathLike[str], *, extra: dict | None = None) -> str:
        from cvload._util import atomic_path

        path = os.fspath(path)
        payload = {"format": FILE_FORMAT, "version": FILE_VERSION,
                   "config": self.config.to_dict(), "codec_id": self.codec_id,
                   "codec_path": self.codec_path, "state_dict": self.state_dict(),
                   **(extra or {})}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, map_location="cpu") -> "AugmentationNetwork":
        """A network saved by :meth:`save` or ``cvload train-augnet`` (tensors only:
        ``weights_only=True``, nothing is unpickled)."""
        payload = _read(path, map_location)
        net = cls(AugNetConfig.from_dict(payload["config"]), payload.get("codec_id"),
                  codec_path=payload.get("codec_path"))
        net.load_state_dict(payload["state_dict"])
        return net.eval()


def _read(path, map_location) -> dict:
    from cvload.errors import CvloadError

    path = os.fspath(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as err:
        raise InvalidArgumentError("no such augmentation network file", source=path) from err
    except Exception as err:  # torch raises many types for a damaged file
        raise CvloadError(f"not a readable augmentation network file: {type(err).__name__}: "
                          f"{err}", source=path, hint="train one with `cvload train-augnet`") from err
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise InvalidArgumentError("not an augmentation network file", source=path,
                                   hint="train one with `cvload train-augnet`")
    if payload.get("version") != FILE_VERSION:
        raise InvalidArgumentError(f"augmentation network file version "
                                   f"{payload.get('version')!r} is not {FILE_VERSION}",
                                   source=path, hint="retrain with this cvload version")
    return payload
