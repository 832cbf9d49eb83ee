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
