"""``cvload viz``: a contact sheet of what cvload reads from a video.

Columns are frames sampled across the video; rows are the decoded frame (titled with its
index and type, I/P/B), its motion field in the flow colour wheel (hue: the direction the
content moves, brightness: how far; the wheel is drawn beside the sheet) and the residual
(absolute, amplified). With a codec, two more rows show one clip's originals beside the
codec's reconstructions with per-frame PSNR.

Motion is shown as the content's own movement: an exported L0 vector points back into the
past reference (content moving +d px/frame sits -d px away there), so the field drawn is
the negated L0 vector, or the L1 vector where a block has only a future reference.
Lengths are displacements to the reference frame, which for a B-frame may lie several
frames away (FFmpeg exports no reference distance), so B-frames can show longer vectors
than the P-frames around them for the same motion.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from cvload.errors import InvalidArgumentError

__all__ = ["Sheet", "content_motion", "flow_colours", "render_sheet"]

TYPE_COLOURS = {"I": "#d03030", "P": "#3060c0", "B": "#30a040"}


def content_motion(mv: np.ndarray) -> np.ndarray:
    """``(..., 4)`` exported fields ``[L0 dx, L0 dy, L1 dx, L1 dy]`` -> ``(..., 2)`` the
    direction the content moves (``-L0``, or ``L1`` where a block has no L0 vector);
    ``(..., 2)`` accumulated (CoViAR) fields are offsets to the I-frame and also negated."""
    mv = np.asarray(mv, dtype=np.float32)
    if mv.shape[-1] == 2:
        return -mv
    if mv.shape[-1] != 4:
        raise InvalidArgumentError(f"motion fields end in 2 or 4 values, not {mv.shape[-1]}")
    l0, l1 = mv[..., :2], mv[..., 2:]
    has_l0 = np.any(l0 != 0, axis=-1, keepdims=True)
    return np.where(has_l0, -l0, l1)


def flow_colours(motion: np.ndarray, *, max_magnitude: float | None = None) -> np.ndarray:
    """``(h, w, 2)`` ``(dx, dy)`` in pixels (y down) -> ``(h, w, 3)`` uint8 colours: hue
    from the direction (right red, down yellow-green, left cyan, up violet), value from
    the magnitude over ``max_magnitude`` (default: the field's 99th percentile), full
    saturation; no motion is black."""
    from cvload._util import pyplot

    mcolors = pyplot("flow colours").matplotlib.colors
    motion = np.asarray(motion, dtype=np.float32)
    if motion.ndim != 3 or motion.shape[-1] != 2:
        raise InvalidArgumentError(f"motion must be (h, w, 2), not {motion.shape}")
    dx, dy = motion[..., 0], motion[..., 1]
    magnitude = np.hypot(dx, dy)
    if max_magnitude is None:
        moving = magnitude[magnitude > 0]
        max_magnitude = float(np.percentile(moving, 99)) if moving.size else 1.0
    hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
    value = np.clip(magnitude / max(max_magnitude, 1e-6), 0, 1)
    hsv = np.stack([hue, np.ones_like(hue), value], axis=-1)
    return (mcolors.hsv_to_rgb(hsv) * 255).round().astype(np.uint8)


def _wheel(size: int = 96) -> np.ndarray:
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    motion = np.stack([x, y], axis=-1).astype(np.float32)
    image = flow_colours(motion, max_magnitude=1.0)
    image[np.hypot(x, y) > 1] = 255
    return image


@dataclass
class Sheet:
    """What :func:`render_sheet` drew. ``boxes``: row name -> one ``(x0, y0, x1, y1)``
    pixel box per column in the saved image (origin top-left); ``psnr``: per
    reconstructed frame (dB) with a codec."""

    path: str
    frames: list[int]
    frame_types: str
    mv_estimated: bool
    boxes: dict = field(default_factory=dict)
    psnr: list = field(default_factory=list)
    codec_frames: list = field(default_factory=list)


def _codec_rows(source, info, codec_path, columns):
    """One clip of the codec's length from the middle of the video, at the codec's size:
    ``(frame indices, originals, reconstructions, per-frame PSNR)`` for ``columns`` of
    its frames."""
    import torch

    from cvload.codec import VideoCodec, psnr
    from cvload.video import read_clip

    codec = VideoCodec.load(codec_path).eval()
    length, size = codec.config.clip_frames, tuple(codec.config.size)
    if info.num_frames < length:
        raise InvalidArgumentError(
            f"the video has {info.num_frames} frames, fewer than the codec's clip of {length}",
            source=source, hint="run viz without --codec, or use a codec of shorter clips")
    start = (info.num_frames - length) // 2
    clip = read_clip(source, start=start, num_frames=length, streams=("rgb",), size=size,
                     info=info).rgb
    with torch.no_grad():
        recon = codec.decode(codec.encode(torch.from_numpy(clip)[None]))[0].numpy()
    frame_psnr = [psnr(recon[i], clip[i]) for i in range(length)]
    pick = np.linspace(0, length - 1, min(columns, length)).round().astype(int)
    return ([start + int(i) for i in pick], clip[pick], (recon[pick] * 255).round()
            .clip(0, 255).astype(np.uint8), [frame_psnr[i] for i in pick],
            float(np.mean(frame_psnr)))


def render_sheet(source: str | os.PathLike[str], out: str | os.PathLike[str], *,
                 codec: str | os.PathLike[str] | None = None, columns: int = 6,
                 mv_grid: int = 8, size: tuple[int, int] | int | None = None,
                 dpi: int = 100) -> Sheet:
    """Draw the contact sheet of ``source`` to ``out`` (PNG by suffix). ``size`` resizes
    the frames (default: the video's, capped to 320 px wide for the sheet)."""
    from cvload._util import pyplot
    from cvload.video import probe, read_frames

    plt = pyplot("cvload viz")

    if columns < 1:
        raise InvalidArgumentError(f"columns must be >= 1, not {columns}")
    source = os.fspath(source)
    info = probe(source)
    if size is None and info.width > 320:
        size = (max(2, round(info.height * 320 / info.width / 2) * 2), 320)
    n = info.num_frames
    frames = np.unique(np.linspace(0, n - 1, min(columns, n)).round().astype(np.int64))
    clip = read_frames(source, frames, streams=("rgb", "mv", "residual"), info=info,
                       mv_grid=mv_grid, size=size, mv_source="auto")
    motion = content_motion(clip.mv)
    magnitudes = np.hypot(motion[..., 0], motion[..., 1])
    moving = magnitudes[magnitudes > 0]
    scale = float(np.percentile(moving, 99)) if moving.size else 1.0
    residual = np.abs(clip.residual.astype(np.float32)).mean(-1)
    residual_scale = max(float(np.percentile(residual, 99.5)), 1.0)
    codec_rows = _codec_rows(source, info, codec, columns) if codec is not None else None
    names = ["frame", "motion", "residual"] + (["original", "reconstruction"]
                                               if codec_rows else [])
    cols = max(len(frames), len(codec_rows[0]) if codec_rows else 0)
    aspect = clip.rgb.shape[1] / clip.rgb.shape[2]
    fig, axes = plt.subplots(len(names), cols + 1, squeeze=False, dpi=dpi,
                             figsize=(2.3 * (cols + 1), 2.3 * aspect * len(names) + 1.0),
                             gridspec_kw={"width_ratios": [1] * cols + [0.8]})
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for j, index in enumerate(frames):
        kind = clip.frame_types[j]
        axes[0, j].imshow(clip.rgb[j])
        axes[0, j].set_title(f"frame {index} · {kind}", fontsize=9, color=TYPE_COLOURS[kind])
        axes[1, j].imshow(flow_colours(motion[j], max_magnitude=scale), interpolation="nearest",
                          aspect="auto")
        axes[1, j].set_title(f"median |v| {np.median(magnitudes[j]):.1f} px", fontsize=8)
        axes[2, j].imshow(np.sqrt(residual[j] / residual_scale).clip(0, 1), cmap="magma",
                          vmin=0, vmax=1)
        axes[2, j].set_title(f"mean |r| {residual[j].mean():.1f}", fontsize=8)
    for j in range(len(frames), cols):
        for i in range(3):
            axes[i, j].axis("off")
    if codec_rows:
        picked, originals, recons, psnrs, mean_psnr = codec_rows
        for j in range(cols):
            if j >= len(picked):
                axes[3, j].axis("off")
                axes[4, j].axis("off")
                continue
            axes[3, j].imshow(originals[j])
            axes[3, j].set_title(f"frame {picked[j]}", fontsize=8)
            axes[4, j].imshow(recons[j])
            axes[4, j].set_title(f"{psnrs[j]:.1f} dB", fontsize=8)
    for i, name in enumerate(names):
        axes[i, 0].set_ylabel(name, fontsize=10)
    legend = axes[:, -1]
    for ax in legend:
        ax.axis("off")
    legend[1].imshow(_wheel())
    legend[1].set_title(f"direction; full\nbrightness {scale:.1f} px", fontsize=8)
    legend[0].text(0, 0.5, "sampled frames\n" + "\n".join(
        f"{k}: {clip.frame_types.count(k)}" for k in "IPB")
                   + ("\n\nmotion estimated\n(no vectors in\nthe bitstream)"
                      if clip.mv_estimated else ""), fontsize=9, va="center")
    if codec_rows:
        legend[4].text(0, 0.5, f"clip PSNR\n{mean_psnr:.2f} dB", fontsize=9, va="center")
    estimated = ", motion estimated" if clip.mv_estimated else ""
    fig.suptitle(f"{os.path.basename(source)}: {info.codec} {info.width}x{info.height}, "
                 f"{n} frames, GOPs {len(info.keyframes)}{estimated}", fontsize=11)
    fig.tight_layout()
    fig.canvas.draw()
    height = fig.canvas.get_width_height()[1]
    boxes = {}
    for i, name in enumerate(names):
        boxes[name] = []
        for j in range(cols):
            b = axes[i, j].get_window_extent()
            boxes[name].append((int(round(b.x0)), int(round(height - b.y1)),
                                int(round(b.x1)), int(round(height - b.y0))))
    out = os.fspath(out)
    from cvload._util import atomic_path

    with atomic_path(out) as tmp:  # a sheet is whole or absent
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return Sheet(out, [int(f) for f in frames], clip.frame_types, bool(clip.mv_estimated),
                 boxes, codec_rows[3] if codec_rows else [],
                 codec_rows[0] if codec_rows else [])
