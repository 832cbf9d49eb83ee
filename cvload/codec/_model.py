"""``VideoCodec``: a learned transform codec for clips, quantised to small integers.

The architecture is a *refined linear transform*. A clip is cut into space-time patches of
``temporal_stride x spatial_stride x spatial_stride`` pixels (one patch per code position);
a linear analysis transform maps each patch to the latent channels and a linear synthesis maps
them back. :meth:`VideoCodec.initialise` sets both to the principal components of patches of
real clips (the Karhunen-Loeve transform, the best linear code of that size), so a codec is a
sensible fixed transform before its first step. Two small residual networks, running at the
code grid's resolution with zero-initialised outputs, learn what the linear transform cannot:
the encoder's spends its bits where they matter, the decoder's predicts detail and removes
block edges from the neighbouring codes. An optional shallow full-resolution tail
(``tail_channels``) smooths what is left, at about four times the CPU cost of a step. All of
it is convolutional: any clip whose shape divides by the strides encodes.

Measured choices (issue 12, 2 CPU cores, unseen real videos, about 4 KB per 16x128x128
clip): fewer, richer codes (4x8x8 pixels per position, 2 groups of 16 bits) beat more,
poorer ones (2x8x8, 3 groups of 8 bits) by 2-3 dB at initialisation; FSQ levels spaced
evenly and including zero (not through tanh) gained 1.1 dB and 0.13 SSIM; channels-last 3D
made steps 1.8x slower on CPU; ``torch.compile`` 11% faster after 45 s of compilation.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cvload._util import atomic_write
from cvload.codec._config import CodecConfig
from cvload.codec._quantizers import FSQ, EMAVectorQuantizer
from cvload.errors import CodecFileError, CodecMismatchError, InvalidArgumentError

__all__ = ["VideoCodec", "CompressionRatio", "patchify", "unpatchify"]

FORMAT = "cvload-codec"
FORMAT_VERSION = 2  # 2: the refined-linear-transform architecture


def patchify(x: torch.Tensor, ts: int, ss: int) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, C*ts*ss*ss, T/ts, H/ss, W/ss)``: one channel vector per
    space-time patch (a 3D pixel unshuffle)."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t // ts, ts, h // ss, ss, w // ss, ss)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * ts * ss * ss, t // ts, h // ss,
                                                      w // ss)


def unpatchify(p: torch.Tensor, ts: int, ss: int, channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    b, _, t, h, w = p.shape
    x = p.reshape(b, channels, ts, ss, ss, t, h, w)
    return x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, channels, t * ts, h * ss, w * ss)


def _norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ResBlock3d(nn.Module):
    """Pre-activation residual block: (norm, SiLU, 3x3x3 conv) twice."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv3d(channels, channels, 3, padding=1),
            _norm(channels), nn.SiLU(), nn.Conv3d(channels, channels, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


def _zero(conv: nn.Conv3d) -> nn.Conv3d:
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _refiner(c_in: int, width: int, c_out: int, blocks: int, kernel: int) -> nn.Sequential:
    """A residual network at the code grid: stem, ``blocks`` residual blocks, a
    zero-initialised projection (so the branch starts as exactly nothing)."""
    return nn.Sequential(
        nn.Conv3d(c_in, width, kernel, padding=kernel // 2),
        *[ResBlock3d(width) for _ in range(blocks)],
        _norm(width), nn.SiLU(), _zero(nn.Conv3d(width, c_out, 1)))


class Encoder(nn.Module):
    """Patch -> latents: ``analysis`` (linear) plus a learned refinement."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.ts, self.ss = config.temporal_stride, config.spatial_stride
        patch = 3 * self.ts * self.ss * self.ss
        self.analysis = nn.Conv3d(patch, config.latent_channels, 1)
        self.refine = _refiner(patch, config.channels, config.latent_channels,
                               config.res_blocks, 1)

    def forward(self, x):
        p = patchify(x, self.ts, self.ss)
        return self.analysis(p) + self.refine(p)


class Decoder(nn.Module):
    """Latents -> clip: ``synthesis`` (linear, per patch) plus a refinement that sees the
    neighbouring codes, then a full-resolution residual tail."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.ts, self.ss = config.temporal_stride, config.spatial_stride
        patch = 3 * self.ts * self.ss * self.ss
        self.synthesis = nn.Conv3d(config.latent_channels, patch, 1)
        self.refine = _refiner(config.latent_channels, config.channels, patch,
                               config.res_blocks, 3)
        tail = config.tail_channels
        self.tail = nn.Sequential(nn.Conv3d(3, tail, 3, padding=1), nn.SiLU(),
                                  _zero(nn.Conv3d(tail, 3, 3, padding=1))) if tail else None

    def forward(self, z):
        x = unpatchify(self.synthesis(z) + self.refine(z), self.ts, self.ss)
        return x + self.tail(x) if self.tail is not None else x


def _flat_colours(config: CodecConfig) -> torch.Tensor:
    """Patches of the 8 corner colours of the RGB cube (and mid grey), ``(9, P)`` in
    [-1, 1], laid out as :func:`patchify` lays out pixels."""
    ts, ss = config.temporal_stride, config.spatial_stride
    colours = torch.tensor([[r, g, b] for r in (-1, 1) for g in (-1, 1) for b in (-1, 1)]
                           + [[0, 0, 0]], dtype=torch.float64)
    clip = colours[:, :, None, None, None].expand(-1, 3, ts, ss, ss)
    return patchify(clip.contiguous(), ts, ss).reshape(len(colours), -1)


def _component_ranges(projections: torch.Tensor, sigma: torch.Tensor, levels: list[int],
                      flat_projections: torch.Tensor) -> torch.Tensor:
    """Per component: the range ``r`` (``[-r, r]`` maps onto its ``levels``) with the
    least uniform-quantisation and clipping error on ``projections`` ``(N, L)``, searched
    from 0.5 to 8 standard deviations, and at least what every flat colour needs."""
    multiples = torch.linspace(0.5, 8.0, 31, dtype=torch.float64)
    ranges = torch.empty(len(levels), dtype=torch.float64)
    for j, count in enumerate(levels):
        half, top = count // 2, (count - 1) // 2  # the FSQ grid: -half .. top steps
        p = projections[:, j:j + 1]
        step = multiples[None] * sigma[j] / half  # (1, S)
        u = (p / step).round().clamp(-half, top)
        error = ((p - u * step) ** 2).mean(0)
        flat = flat_projections[:, j]
        # the grid reaches -range below zero and range * top / half above it (for two
        # levels nothing above zero: a positive projection is clipped whatever the range)
        above = flat * half / top if top else torch.zeros_like(flat)
        needed = float(torch.maximum(-flat, above).max()) * 1.001
        ranges[j] = max(float(multiples[int(error.argmin())] * sigma[j]), needed)
    return ranges


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
    in [0, 1]; ``embed`` gives consumers float latents ``(B, G*d, t, h, w)``. Call
    :meth:`initialise` on real clips before training (``cvload.codec.train`` does).
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

    def linear_parameters(self) -> list[nn.Parameter]:
        """The linear analysis and synthesis transforms (set by :meth:`initialise`)."""
        return [*self.encoder.analysis.parameters(), *self.decoder.synthesis.parameters()]

    @torch.no_grad()
    def initialise(self, clips) -> float:
        """Set the linear transforms from real clips ``(N, T, H, W, 3)``; returns the PSNR
        (dB) that the initialised codec reaches on them.

        The analysis keeps the principal components of the clips' patches, the one with
        most variance on the channel with most quantisation levels. Each component's range
        (what maps to the quantiser's bounds) is the one with the least quantisation and
        clipping error on these clips, widened where needed so that every flat colour (black,
        white, saturated) is coded without clipping: dark or bright regions that the clips
        happen not to show still come out right. The synthesis is then the least-squares
        decoder of the quantised latents. The learned branches are left as they are (zero at
        construction). A VQ codec gets whitened components and codebooks seeded from them.
        """
        was_training = self.training
        self.eval()
        x = self._to_input(clips)
        c = self.config
        patches = patchify(x, c.temporal_stride, c.spatial_stride)
        flat = patches.movedim(1, -1).reshape(-1, patches.shape[1]).double()
        if len(flat) < 2 * c.latent_channels:
            raise InvalidArgumentError(
                f"initialise needs at least {2 * c.latent_channels} patches, got {len(flat)}")
        mean = flat.mean(0)
        eigenvalues, vectors = torch.linalg.eigh(torch.cov((flat - mean).T))
        order = torch.argsort(eigenvalues, descending=True)[: c.latent_channels]
        sigma = eigenvalues[order].clamp_min(1e-8).sqrt()
        basis = vectors[:, order]  # (P, L), strongest first
        projections = (flat - mean) @ basis  # (N, L)
        if c.quantizer == "fsq":
            # channel j belongs to group j // d and quantises with levels[j % d]
            levels = list(c.fsq_levels) * c.groups
            channel_of = sorted(range(c.latent_channels), key=lambda j: (-levels[j], j))
            ranges = _component_ranges(projections, sigma, [levels[ch] for ch in channel_of],
                                       _flat_colours(c) @ basis - mean @ basis)
        else:
            channel_of, ranges = list(range(c.latent_channels)), sigma
        weight = torch.zeros(c.latent_channels, flat.shape[1], dtype=torch.float64)
        for component, channel in enumerate(channel_of):
            weight[channel] = basis[:, component] / ranges[component]
        self.encoder.analysis.weight.copy_(weight.float()[..., None, None, None])
        self.encoder.analysis.bias.copy_((-(weight @ mean)).float())
        if c.quantizer == "vq":  # seed the codebooks from these latents
            self.quantizer.initialized.fill_(False)
            self.quantizer.train()
            self.quantizer(self.encoder(x))
            self.quantizer.eval()
        quantised, _, _ = self.quantizer(self.encoder(x))
        q = quantised.movedim(1, -1).reshape(-1, c.latent_channels).double()
        design = torch.cat([q, torch.ones(len(q), 1, dtype=q.dtype)], 1)
        solution = torch.linalg.lstsq(design, flat).solution  # (L + 1, P)
        error = float(((design @ solution - flat) ** 2).mean())
        self.decoder.synthesis.weight.copy_(solution[:-1].T.float()[..., None, None, None])
        self.decoder.synthesis.bias.copy_(solution[-1].float())
        self._codec_id = None
        self.train(was_training)
        return float(10 * np.log10(4.0 / max(error, 1e-12)))  # signal range 2 ([-1, 1])

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
        codes = codes.long()  # uint16 tensors (16-bit codes from shards) lack most ops
        if codes.numel() and int(codes.max()) >= self.config.codebook_size:
            raise CodecMismatchError(
                f"codes reach {int(codes.max())}, beyond this codec's "
                f"{self.config.codebook_size} codes per group")
        return codes.to(self.device)

    @torch.no_grad()
    def embed(self, codes) -> torch.Tensor:
        """Float latents ``(B, G*d, t, h, w)`` for consumers of codes."""
        return self.quantizer.dequantize(self._check_codes(codes))

    @torch.no_grad()
    def decode(self, codes) -> torch.Tensor:
        """Reconstructed clips ``(B, T, H, W, 3)`` float32 in [0, 1]."""
        return self.decode_latents(self.embed(codes))

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Clips ``(B, T, H, W, 3)`` float32 in [0, 1] from latents ``(B, G*d, t, h, w)``
        (what :meth:`embed` gives, or what an augmentation network made of it)."""
        expected = self.config.latent_channels
        if latents.ndim != 5 or latents.shape[1] != expected:
            raise CodecMismatchError(f"latents of shape {tuple(latents.shape)} do not fit "
                                     f"this codec: expected (B, {expected}, t, h, w)")
        out = self.decoder(latents.to(self.device, torch.float32))
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
        with atomic_write(path, "wb") as f:
            torch.save(payload, f)
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
        if payload.get("version", 0) < FORMAT_VERSION:
            raise CodecFileError(
                f"codec format version {payload.get('version')} holds an older architecture "
                "that this cvload no longer builds", source=path,
                hint="train a new codec with `cvload train-codec` (and re-pack code shards)")
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
