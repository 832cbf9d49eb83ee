"""``VideoCodec``: a 3D-convolutional autoencoder whose latents are quantised to integers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cvload.codec._config import CodecConfig
from cvload.codec._quantizers import FSQ, EMAVectorQuantizer
from cvload.errors import CodecFileError, CodecMismatchError, InvalidArgumentError

__all__ = ["VideoCodec", "CompressionRatio"]

FORMAT = "cvload-codec"
FORMAT_VERSION = 1


def _norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ChannelNorm(nn.Module):
    """LayerNorm over channels at every (t, y, x) position.

    Bounds the scale of features without removing a clip-wide mean: a GroupNorm here
    erased each clip's brightness, and no normalisation at all let the encoder's outputs
    grow until FSQ's tanh saturated and the codes froze (both seen in training).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x):
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class ResBlock3d(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv3d(channels, channels, 3, padding=1),
            _norm(channels), nn.SiLU(), nn.Conv3d(channels, channels, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


def _stage_strides(config: CodecConfig) -> list[tuple[int, int, int]]:
    """Per downsampling stage (t, h, w) strides: spatial 2 each; temporal 2 first."""
    spatial = int(np.log2(config.spatial_stride))
    temporal = int(np.log2(config.temporal_stride))
    return [(2 if i < temporal else 1, 2, 2) for i in range(spatial)]


def _widths(config: CodecConfig) -> list[int]:
    c = config.channels
    return [c] + [min(2 * c, 4 * c) for _ in _stage_strides(config)]


class Encoder(nn.Module):
    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        widths = _widths(config)
        layers: list[nn.Module] = [nn.Conv3d(3, widths[0], 3, padding=1)]
        for i, stride in enumerate(_stage_strides(config)):
            # kernel 3, padding 1, stride 2: exactly halves an even size ("same" grid)
            layers.append(nn.Conv3d(widths[i], widths[i + 1], 3, stride=stride, padding=1))
            layers += [ResBlock3d(widths[i + 1]) for _ in range(config.res_blocks)]
        layers += [ChannelNorm(widths[-1]), nn.SiLU(),
                   nn.Conv3d(widths[-1], config.latent_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        widths = _widths(config)
        strides = _stage_strides(config)
        self.stem = nn.Conv3d(config.latent_channels, widths[-1], 3, padding=1)
        self.stages = nn.ModuleList()
        for i in reversed(range(len(strides))):
            blocks = [ResBlock3d(widths[i + 1]) for _ in range(config.res_blocks)]
            self.stages.append(nn.ModuleDict({
                "blocks": nn.Sequential(*blocks),
                "conv": nn.Conv3d(widths[i + 1], widths[i], 3, padding=1),
            }))
        self.strides = list(reversed(strides))
        self.out = nn.Sequential(ChannelNorm(widths[0]), nn.SiLU(),
                                 nn.Conv3d(widths[0], 3, 3, padding=1))

    def forward(self, z):
        x = self.stem(z)
        for stage, stride in zip(self.stages, self.strides):
            x = stage["blocks"](x)
            x = F.interpolate(x, scale_factor=stride, mode="nearest")  # no checkerboards
            x = stage["conv"](x)
        return self.out(x)


@dataclass(frozen=True)
class CompressionRatio:
    """``nominal``: the paper's ``(T*H*W*3*8) / (t*h*w*G*log2(K))``; ``stored``: raw RGB
    bytes over the bytes of the ``.npy`` file that stores the codes (header included)."""

    nominal: float
    stored: float
    code_bytes: int
    rgb_bytes: int


class VideoCodec(nn.Module):
    """Learned 3D codec (Compressed Vision, 2022): clip -> small integer tensor -> clip.

    ``encode`` maps ``(B, T, H, W, 3)`` uint8 (or float in [0, 1]) clips to codes
    ``(B, T/ts, H/ss, W/ss, G)`` uint8/uint16; ``decode`` maps codes back to float clips
    in [0, 1]; ``embed`` gives consumers float latents ``(B, G*d, t, h, w)``.
    """

    def __init__(self, config: CodecConfig | None = None) -> None:
        super().__init__()
        self.config = config or CodecConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        c = self.config
        if c.quantizer == "fsq":
            self.quantizer: nn.Module = FSQ(c.fsq_levels, c.groups)
        else:
            self.quantizer = EMAVectorQuantizer(
                c.groups, c.vq_codebook_size, c.vq_dim, decay=c.vq_decay,
                commitment=c.vq_commitment, dead_threshold=c.vq_dead_threshold)
        self._codec_id: str | None = None

    # -- tensors in and out ---------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _to_input(self, video) -> torch.Tensor:
        """``(B, T, H, W, 3)`` uint8 / float [0, 1] -> ``(B, 3, T, H, W)`` float in [-1, 1]."""
        video = torch.as_tensor(video)
        if video.ndim == 4:
            video = video.unsqueeze(0)
        if video.ndim != 5 or video.shape[-1] != 3:
            raise InvalidArgumentError(
                f"video must be (B, T, H, W, 3) or (T, H, W, 3), got {tuple(video.shape)}.")
        self.config.check_clip(*video.shape[1:4])
        x = video.to(self.device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return x.permute(0, 4, 1, 2, 3) * 2.0 - 1.0

    def forward(self, video):
        """Training pass: ``(reconstruction in [-1, 1] (B, 3, T, H, W), target, aux loss, codes)``."""
        x = self._to_input(video)
        quantised, codes, aux = self.quantizer(self.encoder(x))
        return self.decoder(quantised), x, aux, codes

    @torch.no_grad()
    def encode(self, video) -> torch.Tensor:
        """Codes ``(B, t, h, w, G)`` uint8 (uint16 when K > 256). Deterministic: no
        codebook updates, no randomness."""
        was_training = self.training
        self.eval()
        try:
            _, codes, _ = self.quantizer(self.encoder(self._to_input(video)))
        finally:
            self.train(was_training)
        # torch has no uint16 for every op: codes above 255 travel as int32 (uint16 on disk)
        return codes.to(torch.uint8 if self.config.codebook_size <= 256 else torch.int32)

    def _check_codes(self, codes) -> torch.Tensor:
        codes = torch.as_tensor(np.asarray(codes) if not torch.is_tensor(codes) else codes)
        if codes.ndim == 4:
            codes = codes.unsqueeze(0)
        if codes.ndim != 5 or codes.shape[-1] != self.config.groups:
            raise CodecMismatchError(
                f"codes of shape {tuple(codes.shape)} do not fit this codec: expected "
                f"(B, t, h, w, {self.config.groups})")
        if codes.numel() and int(codes.max()) >= self.config.codebook_size:
            raise CodecMismatchError(
                f"codes reach {int(codes.max())}, beyond this codec's "
                f"{self.config.codebook_size} codes per group")
        return codes.long().to(self.device)

    @torch.no_grad()
    def embed(self, codes) -> torch.Tensor:
        """Float latents ``(B, G*d, t, h, w)`` for consumers of codes."""
        return self.quantizer.dequantize(self._check_codes(codes))

    @torch.no_grad()
    def decode(self, codes) -> torch.Tensor:
        """Reconstructed clips ``(B, T, H, W, 3)`` float32 in [0, 1]."""
        out = self.decoder(self.embed(codes))
        return ((out.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).contiguous()

    # -- sizes ----------------------------------------------------------------------------

    def compression_ratio(self, input_shape) -> CompressionRatio:
        """For a ``(T, H, W)`` (or ``(T, H, W, 3)``) clip: nominal and stored ratios."""
        frames, height, width = (int(s) for s in tuple(input_shape)[:3])
        t, h, w = self.config.latent_shape(frames, height, width)
        c = self.config
        rgb_bits = frames * height * width * 3 * 8
        nominal = rgb_bits / (t * h * w * c.groups * c.bits_per_code)
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((t, h, w, c.groups), c.code_dtype), allow_pickle=False)
        code_bytes = buffer.tell()
        return CompressionRatio(nominal, rgb_bits / 8 / code_bytes, code_bytes, rgb_bits // 8)

    # -- files ----------------------------------------------------------------------------

    def _content_hash(self) -> str:
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    @property
    def codec_id(self) -> str:
        """Content hash of config and weights: the id shards record."""
        if self._codec_id is None:
            self._codec_id = self._content_hash()
        return self._codec_id

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write weights, config and codec id (atomically); returns the id."""
        self._codec_id = self._content_hash()
        payload = {"format": FORMAT, "version": FORMAT_VERSION, "config": self.config.to_dict(),
                   "codec_id": self._codec_id,
                   "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}
        path = os.fspath(path)
        tmp = f"{path}.partial"
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return self._codec_id

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, map_location="cpu") -> "VideoCodec":
        """Load a codec written by :meth:`save`; refuses anything else with CodecFileError."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise CodecFileError("no such file", source=path)
        try:
            with warnings.catch_warnings():  # torch warns about foreign pickle protocols
                warnings.simplefilter("ignore", UserWarning)
                payload = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # unpickling refused, truncated zip, not a torch file ...
            raise CodecFileError(f"not a loadable codec file ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:200]})", source=path) from err
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CodecFileError("this file is not a cvload codec", source=path)
        if payload.get("version", 0) > FORMAT_VERSION:
            raise CodecFileError(f"codec format version {payload['version']} is newer than this "
                                 "cvload understands", source=path, hint="upgrade cvload")
        codec = cls(CodecConfig.from_dict(payload["config"]))
        try:
            codec.load_state_dict(payload["state_dict"])
        except RuntimeError as err:
            raise CodecFileError(f"weights do not match the config: {err}", source=path) from err
        if codec._content_hash() != payload.get("codec_id"):
            raise CodecFileError("content hash mismatch: the file is corrupt or was edited",
                                 source=path)
        codec._codec_id = payload["codec_id"]
        return codec.to(map_location) if not isinstance(map_location, dict) else codec
