"""Augmentation ops: parameter samplers and batched pixel-space reference transforms.

Every op has a fixed-length parameter vector (what the augmentation network is told),
samples it from a seeded ``torch.Generator`` (the same seed gives the same parameters on
any device), knows its identity parameters, and applies itself to a batch of clips
``(B, T, H, W, 3)`` float in [0, 1] on the clips' device (CPU or CUDA), each clip with its
own parameters. The pixel transforms are the ground truth the network learns to imitate on
codes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from cvload.errors import InvalidArgumentError

__all__ = ["OP_NAMES", "Brightness", "affine_resample", "HorizontalFlip", "Op", "OpName", "RandomResizedCrop",
           "Rotation", "Saturation", "make_op", "op_from_dict"]

OpName = Literal["crop", "flip", "brightness", "saturation", "rotation"]
OP_NAMES: tuple[str, ...] = ("crop", "flip", "brightness", "saturation", "rotation")


def _check_video(video: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(video) or video.ndim != 5 or video.shape[-1] != 3:
        raise InvalidArgumentError(
            f"augmentation ops take clips (B, T, H, W, 3) float in [0, 1], got "
            f"{tuple(video.shape) if torch.is_tensor(video) else type(video).__name__}")
    return video if video.is_floating_point() else video.float() / 255.0


def _check_params(op: "Op", video: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    params = torch.as_tensor(params, dtype=torch.float32, device=video.device)
    if params.shape != (video.shape[0], op.num_params):
        raise InvalidArgumentError(
            f"{op.name}: parameters must be ({video.shape[0]}, {op.num_params}) for "
            f"{video.shape[0]} clips, got {tuple(params.shape)}")
    return params


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def affine_resample(video: torch.Tensor, theta: torch.Tensor, *,
                    padding: str = "zeros") -> torch.Tensor:
    """Resample every frame of clip ``b`` (``(B, T, H, W, C)``) with the ``(2, 3)`` affine
    ``theta[b]`` (output normalised coordinates -> input normalised coordinates, pixel
    centres at ``align_corners=False``); bilinear, ``padding`` outside."""
    b, t, h, w, c = video.shape
    frames = video.permute(0, 1, 4, 2, 3).reshape(b * t, c, h, w)
    grid = F.affine_grid(theta.repeat_interleave(t, 0).to(video.dtype), (b * t, c, h, w),
                         align_corners=False)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode=padding,
                        align_corners=False)
    return out.reshape(b, t, c, h, w).permute(0, 1, 3, 4, 2)


_affine = affine_resample


@dataclass(frozen=True)
class Op:
    """Base of the augmentation ops (see the module docstring)."""

    name: ClassVar[str] = ""
    num_params: ClassVar[int] = 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, num_params)`` float32 parameters on the CPU, drawn from ``generator``."""
        raise NotImplementedError

    def identity(self, n: int) -> torch.Tensor:
        """``(n, num_params)`` parameters that leave a clip unchanged."""
        raise NotImplementedError

    def apply(self, video: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """The transformed clips ``(B, T, H, W, 3)`` float in [0, 1]."""
        raise NotImplementedError

    def grid_theta(self, params: torch.Tensor, height: int, width: int) -> torch.Tensor | None:
        """For geometric ops, the ``(B, 2, 3)`` affine of :func:`affine_resample` that
        moves a ``height x width`` grid as the op moves pixels; ``None`` for photometric
        ops (they move nothing)."""
        return None

    def to_dict(self) -> dict:
        return {"name": self.name, **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in asdict(self).items()}}


@dataclass(frozen=True)
class RandomResizedCrop(Op):
    """A box of ``scale`` of the frame's area and aspect ratio (width/height, relative to
    the frame's) in ``ratio`` (drawn log-uniformly), resized back to the full frame.
    Parameters: the normalised box ``(x0, y0, width, height)`` in [0, 1]."""

    name: ClassVar[str] = "crop"
    num_params: ClassVar[int] = 4
    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        object.__setattr__(self, "ratio", tuple(float(r) for r in self.ratio))
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise InvalidArgumentError(f"RandomResizedCrop: need 0 < scale[0] <= scale[1] <= 1 "
                                       f"and 0 < ratio[0] <= ratio[1], got {self.scale}, "
                                       f"{self.ratio}")

    def sample(self, n, generator=None):
        area = _uniform(n, *self.scale, generator)
        log_ratio = _uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), generator)
        ratio = torch.exp(log_ratio)
        width = torch.sqrt(area * ratio).clamp(max=1.0)
        height = torch.sqrt(area / ratio).clamp(max=1.0)
        x0 = torch.rand(n, generator=generator) * (1 - width)
        y0 = torch.rand(n, generator=generator) * (1 - height)
        return torch.stack([x0, y0, width, height], 1)

    def identity(self, n):
        return torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(n, 1)

    def grid_theta(self, params, height, width):
        params = torch.as_tensor(params, dtype=torch.float32)
        x0, y0, box_w, box_h = params.unbind(1)
        theta = torch.zeros(len(params), 2, 3, device=params.device)
        theta[:, 0, 0], theta[:, 1, 1] = box_w, box_h
        theta[:, 0, 2] = 2 * x0 + box_w - 1  # box centre, normalised to [-1, 1]
        theta[:, 1, 2] = 2 * y0 + box_h - 1
        return theta

    def apply(self, video, params):
        video = _check_video(video)
        params = _check_params(self, video, params)
        return _affine(video, self.grid_theta(params, video.shape[2], video.shape[3]))


@dataclass(frozen=True)
class HorizontalFlip(Op):
    """Mirror left-right with probability ``p``. Parameter: ``(flipped,)`` in {0, 1}."""

    name: ClassVar[str] = "flip"
    num_params: ClassVar[int] = 1
    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= float(self.p) <= 1:
            raise InvalidArgumentError(f"HorizontalFlip: p must lie in [0, 1], got {self.p}")

    def sample(self, n, generator=None):
        return (torch.rand(n, 1, generator=generator) < self.p).float()

    def identity(self, n):
        return torch.zeros(n, 1)

    def grid_theta(self, params, height, width):
        params = torch.as_tensor(params, dtype=torch.float32)
        theta = torch.zeros(len(params), 2, 3, device=params.device)
        theta[:, 0, 0] = torch.where(params[:, 0] > 0.5, -1.0, 1.0)
        theta[:, 1, 1] = 1.0
        return theta

    def apply(self, video, params):
        video = _check_video(video)
        flipped = _check_params(self, video, params)[:, 0] > 0.5
        return torch.where(flipped[:, None, None, None, None], video.flip(-2), video)


@dataclass(frozen=True)
class Brightness(Op):
    """Multiply by a factor drawn uniformly from ``range`` (clipped to [0, 1], as
    torchvision's ``adjust_brightness``). Parameter: ``(factor,)``."""

    name: ClassVar[str] = "brightness"
    num_params: ClassVar[int] = 1
    range: tuple[float, float] = (0.6, 1.4)

    def __post_init__(self) -> None:
        object.__setattr__(self, "range", tuple(float(r) for r in self.range))
        if not 0 <= self.range[0] <= self.range[1]:
            raise InvalidArgumentError(f"{type(self).__name__}: need 0 <= range[0] <= range[1], "
                                       f"got {self.range}")

    def sample(self, n, generator=None):
        return _uniform(n, *self.range, generator)[:, None]

    def identity(self, n):
        return torch.ones(n, 1)

    def apply(self, video, params):
        video = _check_video(video)
        factor = _check_params(self, video, params)[:, 0]
        return (video * factor[:, None, None, None, None]).clamp(0, 1)


@dataclass(frozen=True)
class Saturation(Brightness):
    """Blend with the clip's grey (ITU-R 601 luma) by a factor drawn from ``range``: 0 is
    grey, 1 unchanged, above 1 more saturated (torchvision's ``adjust_saturation``).
    Parameter: ``(factor,)``."""

    name: ClassVar[str] = "saturation"
    range: tuple[float, float] = (0.5, 1.5)

    def apply(self, video, params):
        video = _check_video(video)
        factor = _check_params(self, video, params)[:, 0][:, None, None, None, None]
        weights = torch.tensor([0.299, 0.587, 0.114], device=video.device, dtype=video.dtype)
        grey = (video * weights).sum(-1, keepdim=True)
        return (grey + factor * (video - grey)).clamp(0, 1)


@dataclass(frozen=True)
class Rotation(Op):
    """Rotate about the frame's centre by an angle drawn uniformly from ``[-degrees,
    degrees]`` (counter-clockwise positive; outside the frame is black). Parameter:
    ``(radians,)``."""

    name: ClassVar[str] = "rotation"
    num_params: ClassVar[int] = 1
    degrees: float = 15.0

    def __post_init__(self) -> None:
        if not 0 <= float(self.degrees) <= 180:
            raise InvalidArgumentError(f"Rotation: degrees must lie in [0, 180], got {self.degrees}")

    def sample(self, n, generator=None):
        limit = math.radians(float(self.degrees))
        return _uniform(n, -limit, limit, generator)[:, None]

    def identity(self, n):
        return torch.zeros(n, 1)

    def apply(self, video, params):
        video = _check_video(video)
        params = _check_params(self, video, params)
        return _affine(video, self.grid_theta(params, video.shape[2], video.shape[3]))

    def grid_theta(self, params, height, width):
        angle = torch.as_tensor(params, dtype=torch.float32)[:, 0]
        h, w = height, width
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(len(angle), 2, 3, device=angle.device)
        # output pixel -> input pixel, about the centre, image y pointing down: the
        # inverse of an on-screen counter-clockwise turn is [[cos, -sin], [sin, cos]];
        # normalised coordinates scale x by 2/w and y by 2/h
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
        theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
        return theta


_OPS = {cls.name: cls for cls in (RandomResizedCrop, HorizontalFlip, Brightness, Saturation,
                                  Rotation)}


def make_op(op: "Op | str") -> Op:
    """An op from an instance or its name (``crop``, ``flip``, ``brightness``,
    ``saturation``, ``rotation``) with default ranges."""
    if isinstance(op, Op):
        return op
    if op not in _OPS:
        raise InvalidArgumentError(f"Invalid op {op!r}. Supported values are "
                                   f"{', '.join(map(repr, OP_NAMES))}.")
    return _OPS[op]()


def op_from_dict(data: dict) -> Op:
    """The op :meth:`Op.to_dict` described (as saved in augmentation network files)."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "name"}
    if data.get("name") not in _OPS:
        raise InvalidArgumentError(f"unknown augmentation op {data.get('name')!r}")
    return _OPS[data["name"]](**fields)
