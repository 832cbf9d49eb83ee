"""How good an augmentation network is (``cvload eval-augnet``), beside the identity and
the naive latent ops."""

from __future__ import annotations

import os
from typing import Sequence

import torch

from cvload.augment._latent import NAIVE
from cvload.augment._network import AugmentationNetwork
from cvload.errors import InvalidArgumentError

__all__ = ["evaluate", "format_report"]

METHODS = ("learned", "naive", "identity")


def _params(op, n: int, generator: torch.Generator) -> torch.Tensor:
    """Parameters that do transform: a flip is always applied (p would leave half of
    the clips unflipped and flatter the identity)."""
    if op.name == "flip":
        return torch.ones(n, 1)
    return op.sample(n, generator)


@torch.no_grad()
def evaluate(augnet: AugmentationNetwork | str, codec=None,
             videos: Sequence[str | os.PathLike[str]] = (),
             *, clips: int = 8, ops: Sequence[str] = (), seed: int = 0, batch_size: int = 4,
             device: str = "auto") -> dict:
    """Per op, SSIM and PSNR of ``decode(A(z, θ))`` against ``aug(decode(z))`` (the
    network's own error: ``vs_decoded``) and against ``aug(x)`` (end to end:
    ``vs_pixels``), beside the identity (``decode(z)``) and, for crop and flip, the naive
    latent op. ``codec_bound``: ``decode(encode(aug(x)))`` against ``aug(x)``, what the
    codec itself reaches on the transformed clips (the best any latent op can do end to
    end). Clips: evenly spaced whole-frame clips of ``videos``; parameters drawn from
    ``seed``. ``codec``: a :class:`VideoCodec` or its file; ``None``: the file recorded
    when the network was trained.
    """
    from cvload._util import resolve_device
    from cvload.codec import clip_loader, psnr, ssim

    if isinstance(augnet, (str, os.PathLike)):
        augnet = AugmentationNetwork.load(augnet)
    codec = augnet.load_codec(codec)
    if not videos:
        raise InvalidArgumentError("no evaluation videos given")
    dev = resolve_device(device)
    codec, augnet = codec.to(dev).eval(), augnet.to(dev).eval()
    chosen = [augnet.config.ops[augnet.config.op_index(o)] for o in ops] or list(augnet.config.ops)
    _, loader = clip_loader([os.fspath(v) for v in videos], codec.config, batch_size=batch_size,
                            sampling="spread", shuffle=False, clips_per_epoch=clips)
    data = [b for b in loader if b is not None]
    if not data:
        raise InvalidArgumentError("no clip could be read from the evaluation videos")
    x = torch.cat(data)[:clips].to(dev).float() / 255.0
    z = torch.cat([codec.embed(codec.encode(x[i:i + batch_size]))
                   for i in range(0, len(x), batch_size)])
    decoded = codec.decode_latents(z)
    generator = torch.Generator().manual_seed(seed)
    report: dict = {"clips": len(x), "clip_shape": list(x.shape[1:4]),
                    "codec_id": codec.codec_id, "ops": {}}
    for op in chosen:
        params = _params(op, len(x), generator).to(dev)
        target_pixels = op.apply(x, params)
        target_decoded = op.apply(decoded, params)
        outputs = {"learned": codec.decode_latents(augnet.apply_op(z, op, params)),
                   "identity": decoded}
        if op.name in NAIVE:
            outputs["naive"] = codec.decode_latents(NAIVE[op.name](z, params))
        bound = codec.decode(codec.encode(target_pixels))
        row = {}
        for method, video in outputs.items():
            video = video.cpu()
            row[method] = {
                "vs_decoded": {"ssim": ssim(video, target_decoded.cpu()),
                               "psnr": psnr(video, target_decoded.cpu())},
                "vs_pixels": {"ssim": ssim(video, target_pixels.cpu()),
                              "psnr": psnr(video, target_pixels.cpu())}}
        row["codec_bound"] = {"ssim": ssim(bound.cpu(), target_pixels.cpu()),
                              "psnr": psnr(bound.cpu(), target_pixels.cpu())}
        report["ops"][op.name] = row
    return report


def format_report(report: dict) -> str:
    lines = [f"{report['clips']} clips {'x'.join(map(str, report['clip_shape']))}, codec "
             f"{report['codec_id']}",
             f"{'op':<11s} {'method':<9s} {'SSIM vs aug(decode(z))':>23s} {'PSNR':>7s} "
             f"{'SSIM vs aug(x)':>15s} {'PSNR':>7s}"]
    for name, row in report["ops"].items():
        for method in METHODS:
            if method not in row:
                continue
            d, p = row[method]["vs_decoded"], row[method]["vs_pixels"]
            lines.append(f"{name:<11s} {method:<9s} {d['ssim']:23.3f} {d['psnr']:7.2f} "
                         f"{p['ssim']:15.3f} {p['psnr']:7.2f}")
        bound = row["codec_bound"]
        lines.append(f"{name:<11s} {'codec':<9s} {'':>23s} {'':>7s} {bound['ssim']:15.3f} "
                     f"{bound['psnr']:7.2f}   (decode(encode(aug(x))): the codec's own bound)")
    return "\n".join(lines)
