"""Assembling a clip from decoded frames: references, block motion compensation and
residuals (plain and accumulated back to the I-frame), and resizing."""



import numpy as np

import cvload_ext
from cvload.video._clip import CompressedClip, FrameRecord
from cvload.video._options import ReadOptions
from cvload.video._motion import estimate_vectors, motion_field
from cvload.video._side_data import _EMPTY_MVS

__all__ = ["predict"]

def _references(frames: dict[int, FrameRecord], estimated: bool):
    """For every decoded index: (past reference index, future reference index or None)."""
    order = sorted(frames)
    refs: dict[int, tuple[int | None, int | None]] = {}
    last_ref: int | None = None
    for pos, i in enumerate(order):
        kind = frames[i].type
        if estimated:
            refs[i] = (order[pos - 1] if pos > 0 else None, None)
            continue
        future = None
        if kind == "B":
            future = next((j for j in order[pos + 1:] if frames[j].type != "B"), None)
        refs[i] = (last_ref, future)
        if kind != "B":
            last_ref = i
    return refs


def _assemble(name: str, info, frames: dict[int, FrameRecord], indices: np.ndarray,
              options: ReadOptions, estimated: bool) -> CompressedClip:
    """The clip of ``indices`` from the decoded ``frames`` records, as ``options`` asks."""
    streams, size, mv_grid = options.streams, options.size, options.mv_grid
    accumulate = options.accumulate
    keyframes = np.asarray(info.keyframes, np.int64)
    height, width = info.height, info.width
    any_rgb = next((r.rgb for r in frames.values() if r.rgb is not None), None)
    if any_rgb is not None:
        height, width = any_rgb.shape[:2]
    refs = _references(frames, estimated)
    want_mv = "mv" in streams
    need_residual = "residual" in streams
    t = len(indices)
    gop_ids = np.searchsorted(keyframes, indices, side="right").astype(np.int64) - 1
    types = "".join(frames[int(i)].type for i in indices)
    pts = np.array([frames[int(i)].pts for i in indices], np.int64)

    # Vectors per frame: exported or estimated against the previous frame.
    if estimated:
        requested = set(indices.tolist())
        for i in sorted(frames):
            r = frames[i]
            if i not in requested and not accumulate:
                continue  # only requested frames (and, accumulating, the whole chain)
            past = refs[i][0]
            r.vectors = (_EMPTY_MVS if past is None or r.type == "I" and i in keyframes
                            else estimate_vectors(r.luma, frames[past].luma))

    rgb = np.stack([frames[int(i)].rgb for i in indices]) if "rgb" in streams else None
    mv = residual = None
    if accumulate:
        mv, residual = _accumulated(frames, refs, indices, keyframes, height, width, mv_grid,
                                    need_residual)
        if not want_mv:
            mv = None
    else:
        if want_mv:
            mv = np.empty((t, -(-height // mv_grid), -(-width // mv_grid), 4), np.float32)
            for k, i in enumerate(indices):
                motion_field(frames[int(i)].vectors, height, width, grid=mv_grid, out=mv[k])
        if need_residual:
            residual = np.empty((t, height, width, 3), np.int16)
            scratch: dict = {}
            for k, i in enumerate(indices):
                _residual(frames, refs, int(i), residual[k], scratch)
    iframe = iframe_gops = None
    if "iframe" in streams:
        iframe_gops = np.unique(gop_ids)
        iframe = np.stack([frames[int(keyframes[g])].rgb for g in iframe_gops])
    if size is not None:
        rgb, mv, residual, iframe = _resize(size, rgb, mv, residual, iframe, height, width)
    return CompressedClip(
        source=name, indices=indices, frame_types=types, pts=pts, gop_ids=gop_ids, rgb=rgb,
        mv=mv, residual=residual, iframe=iframe, iframe_gops=iframe_gops,
        mv_estimated=estimated, accumulate=accumulate,
    )


def predict(frames, refs, index: int, scratch: dict | None = None) -> np.ndarray:
    """Motion-compensated prediction of frame ``index`` (``(H, W, 3)`` uint8).

    ``scratch``: a dict kept across the frames of one clip; the prediction and its
    coverage map are written into buffers it holds (fresh multi-megabyte arrays cost a
    page fault per 4 KiB on first touch, which was a third of the kernel's time).
    """
    record = frames[index]
    past, future = refs[index]
    if past is None or record.type == "I":
        return record.rgb  # intra: predicted by itself, residual 0
    ref0 = frames[past].rgb
    ref1 = frames[future].rgb if future is not None else ref0
    scratch = {} if scratch is None else scratch
    out = scratch.get("prediction")
    if out is None or out.shape != ref0.shape:
        out = scratch["prediction"] = np.empty_like(ref0)
        scratch["count"] = np.empty(ref0.shape[:2], np.uint8)
    cvload_ext.motion_compensate(ref0, ref1, record.vectors, scratch["count"], out)
    return out


def _residual(frames, refs, index: int, out: np.ndarray, scratch: dict) -> np.ndarray:
    """``frame - prediction`` into ``out`` (int16), in one pass; 0 for intra frames."""
    record = frames[index]
    if refs[index][0] is None or record.type == "I":
        out.fill(0)  # predicted by itself (see `predict`): nothing to subtract
    else:
        cvload_ext.subtract(record.rgb, predict(frames, refs, index, scratch), out)
    return out


def _pixel_l0(vectors: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-pixel L0 offsets ``(H, W, 2)`` float32 (0 where no L0 block)."""
    dense = motion_field(vectors, height, width, grid=1)
    return np.ascontiguousarray(dense[:, :, :2])


def _accumulated(frames, refs, indices, keyframes, height, width, grid, need_residual):
    """CoViAR: motion traced back to the GOP's I-frame, and the residual against it."""
    acc: dict[int, np.ndarray] = {}
    for i in sorted(frames):
        past = refs[i][0]
        if frames[i].type == "I" or past is None or past not in acc or i in keyframes:
            acc[i] = np.zeros((height, width, 2), np.float32)
            continue
        out = np.empty((height, width, 2), np.float32)
        cvload_ext.accumulate_motion(acc[past], _pixel_l0(frames[i].vectors, height, width),
                                     out)
        acc[i] = out
    # cell centres, as motion_field rasterises them: ceil(H/grid) x ceil(W/grid) cells,
    # the centre of a last partial cell clamped into the frame
    rows = np.minimum(np.arange(-(-height // grid)) * grid + grid // 2, height - 1)
    cols = np.minimum(np.arange(-(-width // grid)) * grid + grid // 2, width - 1)
    mv = np.stack([acc[int(i)][rows][:, cols] for i in indices])
    residual = None
    if need_residual:
        res = []
        for i in indices:
            i = int(i)
            key = int(keyframes[np.searchsorted(keyframes, i, side="right") - 1])
            warped = np.empty_like(frames[i].rgb)
            cvload_ext.warp(frames[key].rgb, acc[i], warped)
            diff = np.empty(warped.shape, np.int16)
            cvload_ext.subtract(frames[i].rgb, warped, diff)
            res.append(diff)
        residual = np.stack(res)
    return mv, residual


def _resize(size, rgb, mv, residual, iframe, height, width):
    import torch
    import torch.nn.functional as F

    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def images(arr, dtype, lo, hi, chunk=16):
        if arr is None:
            return None
        out = np.empty((arr.shape[0], out_h, out_w, arr.shape[3]), dtype)
        for s in range(0, arr.shape[0], chunk):  # bounded memory for long clips
            x = torch.from_numpy(arr[s:s + chunk]).permute(0, 3, 1, 2).float()
            x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", antialias=True,
                              align_corners=False)
            out[s:s + chunk] = x.round().clamp(lo, hi).permute(0, 2, 3, 1).numpy()
        return out

    rgb = images(rgb, np.uint8, 0, 255)
    iframe = images(iframe, np.uint8, 0, 255)
    residual = images(residual, np.int16, -255, 255)
    if mv is not None:
        grid_h = max(1, round(mv.shape[1] * out_h / height))
        grid_w = max(1, round(mv.shape[2] * out_w / width))
        x = torch.from_numpy(mv).permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(grid_h, grid_w), mode="nearest")
        scale = torch.tensor([out_w / width, out_h / height] * (mv.shape[3] // 2))
        mv = (x.permute(0, 2, 3, 1) * scale).contiguous().numpy().astype(np.float32)
    return rgb, mv, residual, iframe
