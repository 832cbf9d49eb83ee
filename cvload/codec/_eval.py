"""Evaluating a codec on held-out clips, against JPEG and H.264 at the same bytes per clip
(the baselines of Compressed Vision's Table 1)."""

from __future__ import annotations

import io
import os
import time
from fractions import Fraction
from typing import Sequence

import av
import numpy as np
import torch
from PIL import Image

from cvload.codec._metrics import mae, perplexity, psnr, ssim
from cvload.codec._model import VideoCodec
from cvload.codec._train import clip_loader, resolve_device
from cvload.errors import InvalidArgumentError

__all__ = ["evaluate", "jpeg_at_bytes", "h264_at_bytes", "format_report"]


def _jpeg_clip(clip: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    total, frames = 0, []
    for frame in clip:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=int(quality))
        total += buffer.tell()
        buffer.seek(0)
        frames.append(np.asarray(Image.open(buffer).convert("RGB")))
    return total, np.stack(frames)


def jpeg_at_bytes(clip: np.ndarray, target_bytes: int) -> dict:
    """Per-frame JPEG (Pillow) at the highest quality whose clip total fits ``target_bytes``
    (quality 1 when none fits: then ``bytes`` exceeds the target)."""
    lo, hi, best = 1, 95, None
    while lo <= hi:
        mid = (lo + hi) // 2
        size, recon = _jpeg_clip(clip, mid)
        if size <= target_bytes:
            best, lo = (mid, size, recon), mid + 1
        else:
            hi = mid - 1
    if best is None:
        size, recon = _jpeg_clip(clip, 1)
        best = (1, size, recon)
    quality, size, recon = best
    return {"quality": quality, "bytes": size, "recon": recon}


def _h264_clip(clip: np.ndarray, crf: int, fps: int = 25) -> tuple[int, np.ndarray]:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = clip.shape[2], clip.shape[1], "yuv420p"
        stream.options = {"preset": "medium", "crf": str(crf), "x264-params": "threads=1:log=-1"}
        for i, frame in enumerate(clip):
            f = av.VideoFrame.from_ndarray(frame, format="rgb24")
            f.pts = i
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = buffer.getvalue()
    with av.open(io.BytesIO(data), format="h264") as inp:
        frames = [f.to_ndarray(format="rgb24", threads=1) for f in inp.decode(video=0)]
    return len(data), np.stack(frames)


def h264_at_bytes(clip: np.ndarray, target_bytes: int) -> dict:
    """H.264 (libx264, medium) at the lowest CRF whose raw bitstream fits ``target_bytes``:
    the bitrate matched to the codes' bytes by bisection on the actual size (CRF 51 when
    none fits: then ``bytes`` exceeds the target)."""
    lo, hi, best = 0, 51, None
    while lo <= hi:
        mid = (lo + hi) // 2
        size, recon = _h264_clip(clip, mid)
        if size <= target_bytes:
            best, hi = (mid, size, recon), mid - 1
        else:
            lo = mid + 1
    if best is None:
        size, recon = _h264_clip(clip, 51)
        best = (51, size, recon)
    crf, size, recon = best
    return {"crf": crf, "bytes": size, "recon": recon}


def evaluate(codec: VideoCodec, videos: Sequence[str | os.PathLike[str]], *,
             clips: int = 8, batch_size: int = 4, device: str = "auto", seed: int = 0,
             baselines: bool = True, frame_range: tuple[float, float] = (0.0, 1.0)) -> dict:
    """Reconstruction quality, code usage, compression and speed on clips of ``videos``
    at the codec's clip shape, and JPEG / H.264 at the same bytes per clip."""
    dev = resolve_device(device)
    codec = codec.to(dev).eval()
    config = codec.config
    dataset, loader = clip_loader([os.fspath(v) for v in videos], config, batch_size=batch_size,
                                  sampling="random", seed=seed, shuffle=False,
                                  frame_range=frame_range)
    data = []
    epoch = 0
    while sum(len(b) for b in data) < clips and epoch < max(4, clips):
        dataset.set_epoch(epoch)
        data += [b for b in loader if b is not None]
        epoch += 1
    if not data:
        raise InvalidArgumentError("no clip could be read from the evaluation videos")
    batch = torch.cat(data)[:clips]
    start = time.perf_counter()
    codes = torch.cat([codec.encode(batch[i:i + batch_size]) for i in range(0, len(batch),
                                                                            batch_size)])
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    recon = torch.cat([codec.decode(codes[i:i + batch_size]).cpu()
                       for i in range(0, len(codes), batch_size)])
    decode_s = time.perf_counter() - start
    clip_shape = tuple(batch.shape[1:4])
    ratio = codec.compression_ratio(clip_shape)
    target = ratio.code_bytes
    report = {
        "codec_id": codec.codec_id, "clips": len(batch), "clip_shape": list(clip_shape),
        "quantizer": config.quantizer, "groups": config.groups,
        "codebook_size": config.codebook_size,
        "nominal_compression": ratio.nominal, "stored_compression": ratio.stored,
        "bytes_per_clip": target,
        "neural": {"psnr": psnr(recon, batch), "ssim": ssim(recon, batch), "mae": mae(recon, batch),
                   "bytes": target},
        "perplexity": perplexity(codes.cpu().numpy(), config.codebook_size),
        "encode_clips_per_s": len(batch) / encode_s, "decode_clips_per_s": len(batch) / decode_s,
    }
    if baselines:
        for name, fn in (("jpeg", jpeg_at_bytes), ("h264", h264_at_bytes)):
            rows = [fn(clip.numpy(), target) for clip in batch]
            rec = np.stack([r["recon"] for r in rows])
            report[name] = {"psnr": psnr(rec, batch), "ssim": ssim(rec, batch), "mae": mae(rec, batch),
                            "bytes": float(np.mean([r["bytes"] for r in rows])),
                            "setting": float(np.mean([r.get("quality", r.get("crf")) for r in rows]))}
    return report


def format_report(report: dict) -> str:
    from cvload._util import format_table

    rows = []
    raw = int(np.prod(report["clip_shape"])) * 3
    for name, label in (("neural", "neural codes"), ("jpeg", "JPEG per frame"), ("h264", "H.264")):
        if name not in report:
            continue
        r = report[name]
        setting = {"neural": f"{report['quantizer']} G={report['groups']} K={report['codebook_size']}",
                   "jpeg": f"quality {r.get('setting', 0):.1f}",
                   "h264": f"crf {r.get('setting', 0):.1f}"}[name]
        rows.append((label, setting, f"{r['bytes']:.0f}", f"{raw / r['bytes']:.1f}",
                     f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", f"{r['mae']:.4f}"))
    table = format_table(["method", "setting", "bytes/clip", "compression", "PSNR dB", "SSIM",
                          "MAE"], rows)
    extra = (f"\nclips {report['clips']} of {'x'.join(map(str, report['clip_shape']))}; "
             f"nominal compression {report['nominal_compression']:.1f}, stored "
             f"{report['stored_compression']:.1f}; code perplexity {report['perplexity']:.1f} "
             f"of {report['codebook_size']}; encode {report['encode_clips_per_s']:.1f} clips/s, "
             f"decode {report['decode_clips_per_s']:.1f} clips/s; codec {report['codec_id']}")
    return table + extra
