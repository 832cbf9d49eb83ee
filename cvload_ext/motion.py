"""Kernels over motion vectors as FFmpeg exports them.

Vector rows are int32 ``(N, 10)`` with the columns
``source, w, h, src_x, src_y, dst_x, dst_y, motion_x, motion_y, motion_scale``:
``(dst_x, dst_y)`` is the centre of a ``w x h`` block of the current frame, and the block
is predicted from the reference at an offset of ``motion / motion_scale`` pixels.
``source`` is -1 for the past reference (list 0) and +1 for the future one (list 1).
"""

from __future__ import annotations

import numpy as np

from cvload_ext._jit import jit
from cvload_ext.spans import bytes_at

SOURCE, W, H, SRC_X, SRC_Y, DST_X, DST_Y, MOTION_X, MOTION_Y, MOTION_SCALE = range(10)


@jit
def rasterize_motion(vectors: np.ndarray, grid: int, out: np.ndarray) -> None:
    """Paint block vectors into a dense field, overwriting all of ``out``.

    Args:
        vectors: ``(N, 10)`` int32 rows as above.
        grid: cell size in pixels; cell ``(i, j)`` takes the vector of the block that
            contains its centre ``(j*grid + grid/2, i*grid + grid/2)``.
        out: ``(ceil(H/grid), ceil(W/grid), 4)`` float32, C-contiguous; channels
            ``[L0 dx, L0 dy, L1 dx, L1 dy]`` in pixels. Cells no block covers are 0.

    One pass clears the field, one paints it (flat unsigned indices: no negative-index
    wrap checks in the inner loop; shifts instead of divisions when ``grid`` is a power
    of two). A 720p P-frame (~4000 vectors, grid 4) takes about 3% of its decode time.
    """
    rows, cols = out.shape[0], out.shape[1]
    flat = out.reshape(rows * cols * 4)
    for k in range(flat.shape[0]):
        flat[k] = 0.0
    shift = 0
    while (1 << shift) < grid:
        shift += 1
    pow2 = (1 << shift) == grid
    # Block edges are whole pixels, so "centre j*grid + grid/2 inside [x0, x1)" is the
    # same test with the centre rounded down: integer arithmetic only.
    half = grid // 2
    row_len = np.uint64(cols * 4)
    four = np.uint64(4)
    one = np.uint64(1)
    for n in range(vectors.shape[0]):
        scale = vectors[n, MOTION_SCALE]
        if scale == 0:
            continue
        channel = np.uint64(0 if vectors[n, SOURCE] < 0 else 2)
        inverse = np.float32(1.0) / np.float32(scale)
        dx = np.float32(vectors[n, MOTION_X]) * inverse
        dy = np.float32(vectors[n, MOTION_Y]) * inverse
        w = vectors[n, W]
        h = vectors[n, H]
        x0 = vectors[n, DST_X] - (w >> 1) - half + grid - 1
        y0 = vectors[n, DST_Y] - (h >> 1) - half + grid - 1
        if pow2:
            j0 = max(0, x0) >> shift
            i0 = max(0, y0) >> shift
            j1 = min(cols, max(0, x0 + w) >> shift)
            i1 = min(rows, max(0, y0 + h) >> shift)
        else:
            j0 = max(0, x0) // grid
            i0 = max(0, y0) // grid
            j1 = min(cols, max(0, x0 + w) // grid)
            i1 = min(rows, max(0, y0 + h) // grid)
        if j1 <= j0:
            continue
        first = np.uint64(4 * j0) + channel
        stop = np.uint64(4 * j1) + channel
        for i in range(i0, i1):
            base = np.uint64(i) * row_len
            for k in range(base + first, base + stop, four):
                flat[k] = dx
                flat[k + one] = dy


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
def _blend_block(src, a, src_stride, out, o, out_stride, rows, span, channels,
                 w00, w01, w10, w11, shift, average):
    """Bilinear prediction of one block, ``rows`` runs of ``span`` samples.

    Run ``r`` reads ``src`` from ``a + r * src_stride`` (and the next row, and both one
    pixel to the right) and writes ``out`` from ``o + r * out_stride``. Offsets are
    unsigned and arithmetic is 16-bit (weights sum to at most 256), so numba emits no
    negative-index wrap and the compiler vectorises each run. ``average``: blend with
    what ``out`` holds, ``(a + b + 1) >> 1``.
    """
    rounding = np.uint16((np.uint16(1) << shift) >> np.uint16(1))
    one = np.uint16(1)
    for _ in range(rows):
        b = a + src_stride
        if not average:
            for k in range(span):
                out[o + k] = np.uint8(
                    (w00 * np.uint16(src[a + k]) + w01 * np.uint16(src[a + channels + k])
                     + w10 * np.uint16(src[b + k]) + w11 * np.uint16(src[b + channels + k])
                     + rounding) >> shift)
        else:
            for k in range(span):
                v = ((w00 * np.uint16(src[a + k]) + w01 * np.uint16(src[a + channels + k])
                      + w10 * np.uint16(src[b + k]) + w11 * np.uint16(src[b + channels + k])
                      + rounding) >> shift)
                out[o + k] = np.uint8((np.uint16(out[o + k]) + v + one) >> one)
        a += src_stride
        o += out_stride


@jit
def motion_compensate(
    ref0: np.ndarray,
    ref1: np.ndarray,
    vectors: np.ndarray,
    count: np.ndarray,
    out: np.ndarray,
) -> None:
    """Block motion compensation: predict a frame from its references and block vectors.

    A vector ``m / s`` splits into a whole-pixel part and a fraction; the bilinear
    weights ``(s - fx)(s - fy), fx (s - fy), (s - fx) fy, fx fy`` are integers, the same
    for every pixel of a block, and the prediction is their weighted sum divided by
    ``s^2`` and rounded to nearest, in exact integer arithmetic. Each block row is one
    contiguous run in ``out`` and in the reference. A block whose source runs past the
    frame edge reads a small patch of clamped samples first (codecs pad references
    likewise). 720p P-frame: about 1.5 ms.

    Args:
        ref0: ``(H, W, C)`` uint8 past reference (list 0), C-contiguous.
        ref1: ``(H, W, C)`` uint8 future reference (list 1); pass ``ref0`` if none.
        vectors: ``(N, 10)`` int32 rows.
        count: ``(H, W)`` uint8 scratch (any content): how many blocks covered each
            4x4 cell (each pixel, if some block edge is not a multiple of 4).
        out: ``(H, W, C)`` uint8 prediction. Pixels covered by an L0 and an L1 block
            get the rounded average ``(a + b + 1) >> 1`` of both predictions; pixels
            covered by no block are predicted with zero motion from ``ref0``.
    """
    height, width, channels = out.shape
    size = height * width * channels
    flat0 = ref0.reshape(size)
    flat1 = ref1.reshape(size)
    flat_out = out.reshape(size)
    for k in range(size):  # a loop: numba's slice assignment is ~4x slower
        flat_out[k] = flat0[k]
    cell = 4  # every MPEG codec's block edges are multiples of 4 pixels
    for n in range(vectors.shape[0]):
        left = vectors[n, DST_X] - (vectors[n, W] >> 1)
        top = vectors[n, DST_Y] - (vectors[n, H] >> 1)
        if (left | top | vectors[n, W] | vectors[n, H]) & 3:
            cell = 1
            break
    cells_x = (width + cell - 1) // cell
    cells_y = (height + cell - 1) // cell
    flat_covered = count.reshape(height * width)[: cells_y * cells_x]
    for k in range(flat_covered.shape[0]):
        flat_covered[k] = 0
    covered = flat_covered.reshape(cells_y, cells_x)
    stride = np.uint64(width * channels)
    uchannels = np.uint64(channels)
    patch = np.empty(17 * 17 * channels, np.uint8)  # grows for blocks over 16x16
    for n in range(vectors.shape[0]):
        scale = vectors[n, MOTION_SCALE]
        if scale <= 0:
            continue
        bw = vectors[n, W]
        bh = vectors[n, H]
        bx0 = max(0, vectors[n, DST_X] - bw // 2)
        by0 = max(0, vectors[n, DST_Y] - bh // 2)
        bx1 = min(width, vectors[n, DST_X] - bw // 2 + bw)
        by1 = min(height, vectors[n, DST_Y] - bh // 2 + bh)
        if bx0 >= bx1 or by0 >= by1:
            continue
        src = flat0 if vectors[n, SOURCE] < 0 else flat1
        mx = vectors[n, MOTION_X]
        my = vectors[n, MOTION_Y]
        ix = mx // scale  # floor
        iy = my // scale
        fx = mx - ix * scale
        fy = my - iy * scale
        w00 = (scale - fx) * (scale - fy)
        w01 = fx * (scale - fy)
        w10 = (scale - fx) * fy
        w11 = fx * fy
        den = scale * scale
        shift = 0
        while (1 << shift) < den:
            shift += 1
        average = covered[by0 // cell, bx0 // cell] != 0
        o = np.uint64(by0 * width * channels + bx0 * channels)
        span = np.uint64((bx1 - bx0) * channels)
        rows = by1 - by0
        cols = bx1 - bx0
        if (1 << shift) == den and shift <= 8:
            u00 = np.uint16(w00)
            u01 = np.uint16(w01)
            u10 = np.uint16(w10)
            u11 = np.uint16(w11)
            ushift = np.uint16(shift)
            if (bx0 + ix >= 0 and by0 + iy >= 0 and bx1 + ix < width
                    and by1 + iy < height):
                a = np.uint64((by0 + iy) * width * channels + (bx0 + ix) * channels)
                _blend_block(src, a, stride, flat_out, o, stride, rows, span, uchannels,
                             u00, u01, u10, u11, ushift, average)
            else:  # the source runs past an edge: a patch of clamped samples
                pstride = (cols + 1) * channels
                if patch.shape[0] < (rows + 1) * pstride:
                    patch = np.empty((rows + 1) * pstride, np.uint8)
                for r in range(rows + 1):
                    sy = min(max(by0 + iy + r, 0), height - 1)
                    for x in range(cols + 1):
                        sx = min(max(bx0 + ix + x, 0), width - 1)
                        for c in range(channels):
                            patch[r * pstride + x * channels + c] = src[
                                (sy * width + sx) * channels + c]
                _blend_block(patch, np.uint64(0), np.uint64(pstride), flat_out, o, stride,
                             rows, span, uchannels, u00, u01, u10, u11, ushift, average)
        else:  # a scale that is not a power of two (no FFmpeg decoder uses one): scalar
            rounding = den >> 1
            for y in range(by0, by1):
                ya = min(max(y + iy, 0), height - 1)
                yb = min(max(y + iy + 1, 0), height - 1)
                for x in range(bx0, bx1):
                    xa = min(max(x + ix, 0), width - 1)
                    xb = min(max(x + ix + 1, 0), width - 1)
                    for c in range(channels):
                        v = (w00 * np.int64(src[(ya * width + xa) * channels + c])
                             + w01 * np.int64(src[(ya * width + xb) * channels + c])
                             + w10 * np.int64(src[(yb * width + xa) * channels + c])
                             + w11 * np.int64(src[(yb * width + xb) * channels + c])
                             + rounding) // den
                        k = (y * width + x) * channels + c
                        if average:
                            v = (np.int64(flat_out[k]) + v + 1) >> 1
                        flat_out[k] = np.uint8(v)
        for cy in range(by0 // cell, (by1 + cell - 1) // cell):
            for cx in range(bx0 // cell, (bx1 + cell - 1) // cell):
                covered[cy, cx] += 1


@jit
def subtract(frame: np.ndarray, prediction: np.ndarray, out: np.ndarray) -> None:
    """``out = frame - prediction`` as int16 (all ``(H, W, C)``; out int16)."""
    flat_f = frame.reshape(-1)
    flat_p = prediction.reshape(-1)
    flat_o = out.reshape(-1)
    for k in range(flat_o.shape[0]):
        flat_o[k] = np.int16(flat_f[k]) - np.int16(flat_p[k])


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
def _pattern_step(cur, ref, bx, by, block, search, px, py, cx, cy, best, bestx, besty):
    """Try the offsets ``(cx + px[k], cy + py[k])`` (k >= 1) within ``+-search``; return
    the best ``(sad, dx, dy)`` so far."""
    for k in range(1, px.shape[0]):
        sx = cx + px[k]
        sy = cy + py[k]
        if abs(sx) > search or abs(sy) > search:
            continue
        s = _block_sad(cur, ref, bx, by, block, sx, sy, best)
        if s < best:
            best, bestx, besty = s, sx, sy
    return best, bestx, besty


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
            # large diamond until the centre is best, then one small diamond step
            for _ in range(4 * search):
                cx, cy = bestx, besty
                best, bestx, besty = _pattern_step(cur, ref, bx, by, block, search, ldsp_x,
                                                   ldsp_y, cx, cy, best, bestx, besty)
                if bestx == cx and besty == cy:
                    break
            best, bestx, besty = _pattern_step(cur, ref, bx, by, block, search, sdsp_x, sdsp_y,
                                               bestx, besty, best, bestx, besty)
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



# FFmpeg's AVMotionVector (libavutil/motion_vector.h, unchanged since 2014), as
# (field, byte offset, numpy type) in a 40-byte record; ``flags`` (uint64 at 16) is not
# read. cvload.video checks PyAV's description of the record against this once.
AV_MOTION_VECTOR_SIZE = 40
AV_MOTION_VECTOR_FIELDS = (
    ("source", 0, "int32"), ("w", 4, "uint8"), ("h", 5, "uint8"), ("src_x", 6, "int16"),
    ("src_y", 8, "int16"), ("dst_x", 10, "int16"), ("dst_y", 12, "int16"),
    ("motion_x", 24, "int32"), ("motion_y", 28, "int32"), ("motion_scale", 32, "uint16"),
)


@jit
def unpack_motion_vectors(address: int, out: np.ndarray) -> None:
    """FFmpeg's AVMotionVector records (``AV_MOTION_VECTOR_FIELDS``) into ``(N, 10)`` int32.

    Args:
        address: where the ``N`` records start (native little-endian), e.g. PyAV's
            ``MotionVectors.buffer_ptr``; the caller keeps them alive during the call.
        out: ``(N, 10)`` int32, C-contiguous; columns in ``AV_MOTION_VECTOR_FIELDS`` order.

    Record by record with the offsets fixed at compile time: about 3 ns per vector,
    5x faster than a field-by-field gather driven by a runtime layout. Reading from the
    address skips the buffer protocol (numpy's ``frombuffer`` first asks PyAV for a
    writable buffer and handles the refusal, ~15 us per frame).
    """
    n = out.shape[0]
    raw = bytes_at(address, n * AV_MOTION_VECTOR_SIZE)
    i32 = raw.view(np.int32)
    i16 = raw.view(np.int16)
    u16 = raw.view(np.uint16)
    flat = out.reshape(n * 10)
    for r in range(n):
        o = r * 10
        flat[o] = i32[r * 10]
        flat[o + 1] = raw[r * 40 + 4]
        flat[o + 2] = raw[r * 40 + 5]
        flat[o + 3] = i16[r * 20 + 3]
        flat[o + 4] = i16[r * 20 + 4]
        flat[o + 5] = i16[r * 20 + 5]
        flat[o + 6] = i16[r * 20 + 6]
        flat[o + 7] = i32[r * 10 + 6]
        flat[o + 8] = i32[r * 10 + 7]
        flat[o + 9] = u16[r * 20 + 16]
