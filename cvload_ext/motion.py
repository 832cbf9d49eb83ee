"""Kernels over motion vectors as FFmpeg exports them.

Vector rows are int32 ``(N, 10)`` with the columns
``source, w, h, src_x, src_y, dst_x, dst_y, motion_x, motion_y, motion_scale``:
``(dst_x, dst_y)`` is the centre of a ``w x h`` block of the current frame, and the block
is predicted from the reference at an offset of ``motion / motion_scale`` pixels.
``source`` is -1 for the past reference (list 0) and +1 for the future one (list 1).
"""

from __future__ import annotations

import numpy as np

from cvload_ext import jit

SOURCE, W, H, SRC_X, SRC_Y, DST_X, DST_Y, MOTION_X, MOTION_Y, MOTION_SCALE = range(10)


@jit
def rasterize_motion(vectors: np.ndarray, grid: int, out: np.ndarray) -> None:
    """Paint block vectors into a dense field.

    Args:
        vectors: ``(N, 10)`` int32 rows as above.
        grid: cell size in pixels; cell ``(i, j)`` takes the vector of the block that
            contains its centre ``(j*grid + grid/2, i*grid + grid/2)``.
        out: ``(ceil(H/grid), ceil(W/grid), 4)`` float32, zeroed by the caller; channels
            ``[L0 dx, L0 dy, L1 dx, L1 dy]`` in pixels. Cells no block covers stay 0.
    """
    rows, cols = out.shape[0], out.shape[1]
    half = grid * 0.5
    for n in range(vectors.shape[0]):
        scale = vectors[n, MOTION_SCALE]
        if scale == 0:
            continue
        channel = 0 if vectors[n, SOURCE] < 0 else 2
        dx = vectors[n, MOTION_X] / scale
        dy = vectors[n, MOTION_Y] / scale
        # Block extent in pixels: [x0, x1) x [y0, y1); dst is the block centre.
        x0 = vectors[n, DST_X] - vectors[n, W] * 0.5
        y0 = vectors[n, DST_Y] - vectors[n, H] * 0.5
        x1 = x0 + vectors[n, W]
        y1 = y0 + vectors[n, H]
        # Cells whose centre lies in the block: j*grid + half in [x0, x1).
        j0 = max(0, int(np.ceil((x0 - half) / grid)))
        j1 = min(cols, int(np.ceil((x1 - half) / grid)))
        i0 = max(0, int(np.ceil((y0 - half) / grid)))
        i1 = min(rows, int(np.ceil((y1 - half) / grid)))
        for i in range(i0, i1):
            for j in range(j0, j1):
                out[i, j, channel] = dx
                out[i, j, channel + 1] = dy


@jit
def _sample_bilinear(img: np.ndarray, x: float, y: float, c: int) -> float:
    """Bilinear sample of ``img[..., c]`` at ``(x, y)``, edges clamped (as codecs pad)."""
    height, width = img.shape[0], img.shape[1]
    if x < 0.0:
        x = 0.0
    elif x > width - 1:
        x = width - 1.0
    if y < 0.0:
        y = 0.0
    elif y > height - 1:
        y = height - 1.0
    x0 = int(x)
    y0 = int(y)
    x1 = min(x0 + 1, width - 1)
    y1 = min(y0 + 1, height - 1)
    fx = x - x0
    fy = y - y0
    top = img[y0, x0, c] * (1.0 - fx) + img[y0, x1, c] * fx
    bottom = img[y1, x0, c] * (1.0 - fx) + img[y1, x1, c] * fx
    return top * (1.0 - fy) + bottom * fy


@jit
def motion_compensate(
    ref0: np.ndarray,
    ref1: np.ndarray,
    vectors: np.ndarray,
    acc: np.ndarray,
    count: np.ndarray,
    out: np.ndarray,
) -> None:
    """Block motion compensation: predict a frame from its references and block vectors.

    Args:
        ref0: ``(H, W, C)`` uint8 past reference (list 0).
        ref1: ``(H, W, C)`` uint8 future reference (list 1); pass ``ref0`` if none.
        vectors: ``(N, 10)`` int32 rows; sub-pel offsets are sampled bilinearly.
        acc: ``(H, W, C)`` float32 scratch; count: ``(H, W)`` int32 scratch (any content).
        out: ``(H, W, C)`` uint8 prediction. Pixels covered by an L0 and an L1 block get
            the rounded average of both predictions; pixels covered by no block are
            predicted with zero motion from ``ref0``.
    """
    height, width, channels = out.shape
    count[:] = 0
    for n in range(vectors.shape[0]):
        scale = vectors[n, MOTION_SCALE]
        if scale == 0:
            continue
        ref = ref0 if vectors[n, SOURCE] < 0 else ref1
        dx = vectors[n, MOTION_X] / scale
        dy = vectors[n, MOTION_Y] / scale
        # One vector per block: the bilinear weights are the same for all its pixels.
        ix = int(np.floor(dx))
        iy = int(np.floor(dy))
        fx = dx - ix
        fy = dy - iy
        w00 = (1.0 - fx) * (1.0 - fy)
        w01 = fx * (1.0 - fy)
        w10 = (1.0 - fx) * fy
        w11 = fx * fy
        bw = vectors[n, W]
        bh = vectors[n, H]
        x0 = vectors[n, DST_X] - bw // 2
        y0 = vectors[n, DST_Y] - bh // 2
        for y in range(max(0, y0), min(height, y0 + bh)):
            ya = min(max(y + iy, 0), height - 1)
            yb = min(max(y + iy + 1, 0), height - 1)
            for x in range(max(0, x0), min(width, x0 + bw)):
                xa = min(max(x + ix, 0), width - 1)
                xb = min(max(x + ix + 1, 0), width - 1)
                k = count[y, x]
                for c in range(channels):
                    v = (w00 * ref[ya, xa, c] + w01 * ref[ya, xb, c]
                         + w10 * ref[yb, xa, c] + w11 * ref[yb, xb, c])
                    if k == 0:
                        acc[y, x, c] = v
                    else:
                        acc[y, x, c] += v
                count[y, x] = k + 1
    for y in range(height):
        for x in range(width):
            k = count[y, x]
            for c in range(channels):
                if k == 0:
                    out[y, x, c] = ref0[y, x, c]
                else:
                    v = acc[y, x, c] / k + 0.5
                    out[y, x, c] = 255 if v >= 255.0 else (0 if v <= 0.0 else int(v))


@jit
def accumulate_motion(
    previous: np.ndarray, field: np.ndarray, out: np.ndarray
) -> None:
    """One step of CoViAR's accumulation: trace each pixel back one more reference.

    Args:
        previous: ``(H, W, 2)`` float32 accumulated offset of the reference frame to the
            GOP's I-frame (zeros for the I-frame itself).
        field: ``(H, W, 2)`` float32 per-pixel offset of this frame to its reference.
        out: ``(H, W, 2)`` float32 ``field + previous`` sampled at the referenced position,
            i.e. the offset of this frame's pixels to the I-frame.
    """
    height, width = field.shape[0], field.shape[1]
    for y in range(height):
        for x in range(width):
            dx = field[y, x, 0]
            dy = field[y, x, 1]
            out[y, x, 0] = dx + _sample_bilinear(previous, x + dx, y + dy, 0)
            out[y, x, 1] = dy + _sample_bilinear(previous, x + dx, y + dy, 1)


@jit
def warp(image: np.ndarray, flow: np.ndarray, out: np.ndarray) -> None:
    """``out[y, x] = image[y + flow_y, x + flow_x]`` (bilinear, edges clamped, rounded).

    image: ``(H, W, C)`` uint8; flow: ``(H, W, 2)`` float32; out: ``(H, W, C)`` uint8.
    """
    height, width, channels = out.shape
    for y in range(height):
        for x in range(width):
            for c in range(channels):
                v = _sample_bilinear(image, x + flow[y, x, 0], y + flow[y, x, 1], c) + 0.5
                out[y, x, c] = 255 if v >= 255.0 else (0 if v <= 0.0 else int(v))


@jit
def _block_sad(cur, ref, bx, by, block, dx, dy, best):
    """Sum of absolute differences of a block against ``ref`` shifted by (dx, dy).

    Positions outside ``ref`` are clamped. Stops early once the sum exceeds ``best``.
    """
    height, width = ref.shape
    total = 0
    for y in range(by, by + block):
        ry = min(max(y + dy, 0), height - 1)
        for x in range(bx, bx + block):
            rx = min(max(x + dx, 0), width - 1)
            d = np.int32(cur[y, x]) - np.int32(ref[ry, rx])
            total += d if d >= 0 else -d
        if total >= best:
            return total
    return total


@jit
def block_match(
    cur: np.ndarray, ref: np.ndarray, block: int, search: int, out: np.ndarray
) -> int:
    """Estimate block motion of luma ``cur`` against luma ``ref`` (both ``(H, W)`` uint8).

    Predictive diamond search, as encoders do: start from the best of zero motion and the
    left, upper and upper-right neighbours' vectors; refine with the large diamond
    pattern until its centre wins, then with the small diamond; candidates are limited to
    ``|dx|, |dy| <= search``. A coarse grid scan (step 4 over the full range) guards
    against local minima from the predictors.

    Writes one row per full block into ``out`` (``(rows*cols, 10)`` int32, the FFmpeg
    layout, ``source=-1``, ``motion_scale=1``) and returns the number of rows.
    """
    height, width = cur.shape
    rows = height // block
    cols = width // block
    mvx = np.zeros((rows, cols), np.int32)
    mvy = np.zeros((rows, cols), np.int32)
    ldsp_x = np.array([0, 2, 1, 0, -1, -2, -1, 0, 1], np.int32)
    ldsp_y = np.array([0, 0, 1, 2, 1, 0, -1, -2, -1], np.int32)
    sdsp_x = np.array([0, 1, 0, -1, 0], np.int32)
    sdsp_y = np.array([0, 0, 1, 0, -1], np.int32)
    big = np.int64(1) << 40
    n = 0
    for r in range(rows):
        for q in range(cols):
            bx = q * block
            by = r * block
            best = _block_sad(cur, ref, bx, by, block, 0, 0, big)
            bestx = 0
            besty = 0
            # predictors: neighbours already estimated
            for p in range(3):
                if p == 0 and q > 0:
                    px, py = mvx[r, q - 1], mvy[r, q - 1]
                elif p == 1 and r > 0:
                    px, py = mvx[r - 1, q], mvy[r - 1, q]
                elif p == 2 and r > 0 and q + 1 < cols:
                    px, py = mvx[r - 1, q + 1], mvy[r - 1, q + 1]
                else:
                    continue
                s = _block_sad(cur, ref, bx, by, block, px, py, best)
                if s < best:
                    best, bestx, besty = s, px, py
            # coarse scan over the whole window
            for sy in range(-search, search + 1, 4):
                for sx in range(-search, search + 1, 4):
                    s = _block_sad(cur, ref, bx, by, block, sx, sy, best)
                    if s < best:
                        best, bestx, besty = s, sx, sy
            # large diamond until the centre is best
            for _ in range(4 * search):
                cx, cy = bestx, besty
                for k in range(1, 9):
                    sx = cx + ldsp_x[k]
                    sy = cy + ldsp_y[k]
                    if abs(sx) > search or abs(sy) > search:
                        continue
                    s = _block_sad(cur, ref, bx, by, block, sx, sy, best)
                    if s < best:
                        best, bestx, besty = s, sx, sy
                if bestx == cx and besty == cy:
                    break
            # small diamond
            cx, cy = bestx, besty
            for k in range(1, 5):
                sx = cx + sdsp_x[k]
                sy = cy + sdsp_y[k]
                if abs(sx) > search or abs(sy) > search:
                    continue
                s = _block_sad(cur, ref, bx, by, block, sx, sy, best)
                if s < best:
                    best, bestx, besty = s, sx, sy
            mvx[r, q] = bestx
            mvy[r, q] = besty
            out[n, SOURCE] = -1
            out[n, W] = block
            out[n, H] = block
            out[n, DST_X] = bx + block // 2
            out[n, DST_Y] = by + block // 2
            out[n, SRC_X] = bx + block // 2 + bestx
            out[n, SRC_Y] = by + block // 2 + besty
            out[n, MOTION_X] = bestx
            out[n, MOTION_Y] = besty
            out[n, MOTION_SCALE] = 1
            n += 1
    return n
