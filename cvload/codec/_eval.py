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

from cvload._util import resolve_device
from cvload.codec._metrics import mae, perplexity, psnr, ssim
from cvload.codec._model import VideoCodec
from cvload.codec._data import clip_loader
from cvload.errors import InvalidArgumentError

__all__ = ["evaluate", "jpeg_at_bytes", "h264_at_bytes", "thumbnail_at_bytes",
           "block_mean_at_bytes", "format_report"]


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


def thumbnail_at_bytes(clip: np.ndarray, target_bytes: int) -> dict:
    """The equal-bytes thumbnail: every frame shrunk (antialiased) to the largest size of
    the same aspect ratio whose uint8 RGB pixels, all frames together, fit
    ``target_bytes``, then scaled back up bicubically. ``(T, H, W, 3)`` uint8 in and out."""
    import torch.nn.functional as F

    t, h, w, _ = clip.shape
    scale = min(1.0, (target_bytes / (t * h * w * 3)) ** 0.5)
    small_h, small_w = max(1, int(h * scale)), max(1, int(w * scale))
    while t * small_h * small_w * 3 > target_bytes and (small_h > 1 or small_w > 1):
        small_h, small_w = max(1, small_h - 1), max(1, int(round(small_h * w / h)) or 1)
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float()
    small = F.interpolate(x, size=(small_h, small_w), mode="bilinear", antialias=True,
                          align_corners=False).round().clamp(0, 255)  # what is stored
    up = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)
    recon = up.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return {"size": (small_h, small_w), "bytes": t * small_h * small_w * 3, "recon": recon}


def block_mean_at_bytes(clip: np.ndarray, target_bytes: int) -> dict:
    """Block-mean coding: the uint8 mean of every ``bt x b x b`` space-time block and
    channel, shown as a constant block. The finest blocking (fewest pixels per block,
    square blocks, ``bt`` a power of two up to 8) that fits ``target_bytes`` is used."""
    t, h, w, _ = clip.shape
    best = None
    for bt in (1, 2, 4, 8):
        if bt > t:
            break
        for b in range(1, max(h, w) + 1):
            size = -(-t // bt) * -(-h // b) * -(-w // b) * 3
            if size <= target_bytes:
                if best is None or bt * b * b < best[0] * best[1] ** 2:
                    best = (bt, b, size)
                break
    if best is None:
        best = (t, max(h, w), 3)
    bt, b, size = best
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2)[None].float()
    means = torch.nn.functional.avg_pool3d(x, (bt, b, b), ceil_mode=True,
                                           count_include_pad=False).round()
    up = means.repeat_interleave(bt, 2).repeat_interleave(b, 3).repeat_interleave(b, 4)
    recon = up[0, :, :t, :h, :w].permute(1, 2, 3, 0).byte().numpy()
    return {"block": (bt, b, b), "bytes": size, "recon": recon}


def evaluate(codec: VideoCodec, videos: Sequence[str | os.PathLike[str]], *,
             clips: int = 8, batch_size: int = 4, device: str = "auto",
             baselines: bool = True, frame_range: tuple[float, float] = (0.0, 1.0)) -> dict:
    """Reconstruction quality, code usage, compression and speed on clips of ``videos``
    at the codec's clip shape, and at the same bytes per clip: JPEG, H.264, the
    equal-bytes thumbnail and block-mean coding. The clips are deterministic: evenly
    spaced whole-frame clips of every video in turn (nothing is drawn at random)."""
    dev = resolve_device(device)
    codec = codec.to(dev).eval()
    config = codec.config
    # evenly spaced whole-frame clips of every video, in turn: distinct clips wherever the
    # videos are long enough
    dataset, loader = clip_loader([os.fspath(v) for v in videos], config, batch_size=batch_size,
                                  sampling="spread", shuffle=False,
                                  clips_per_epoch=clips, frame_range=frame_range)
    data = [b for b in loader if b is not None]
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
        settings = {  # what each baseline chose, for the report
            "jpeg": lambda rows: f"quality {np.mean([r['quality'] for r in rows]):.1f}",
            "h264": lambda rows: f"crf {np.mean([r['crf'] for r in rows]):.1f}",
            "thumbnail": lambda rows: "{}x{} bicubic up".format(*rows[0]["size"]),
            "block_mean": lambda rows: "{}x{}x{} blocks".format(*rows[0]["block"]),
        }
        for name, fn in (("jpeg", jpeg_at_bytes), ("h264", h264_at_bytes),
                         ("thumbnail", thumbnail_at_bytes), ("block_mean", block_mean_at_bytes)):
            rows = [fn(clip.numpy(), target) for clip in batch]
            rec = np.stack([r["recon"] for r in rows])
            report[name] = {"psnr": psnr(rec, batch), "ssim": ssim(rec, batch),
                            "mae": mae(rec, batch),
                            "bytes": float(np.mean([r["bytes"] for r in rows])),
                            "setting": settings[name](rows)}
    return report


def format_report(report: dict) -> str:
    from cvload._util import format_table

    rows = []
    raw = int(np.prod(report["clip_shape"])) * 3
    for name, label in (("neural", "neural codes"), ("jpeg", "JPEG per frame"), ("h264", "H.264"),
                        ("thumbnail", "thumbnail"), ("block_mean", "block means")):
        if name not in report:
            continue
        r = report[name]
        setting = (f"{report['quantizer']} G={report['groups']} K={report['codebook_size']}"
                   if name == "neural" else str(r.get("setting", "")))
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
