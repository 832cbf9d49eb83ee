"""Kernels over dense motion fields: gradient magnitude and its sums over a grid of cells
(IMRNet's pyramidal motion statistics)."""

from __future__ import annotations

import numpy as np

from cvload_ext._jit import jit


@jit
def cell_gradient_sums(field: np.ndarray, t_edges: np.ndarray, y_edges: np.ndarray,
                       x_edges: np.ndarray, out: np.ndarray) -> None:
    """Sum the Prewitt gradient magnitude of a motion field over a grid of cells.

    Args:
        field: ``(T, C, h, w)`` float32 (C motion components, e.g. L0 dx, dy).
        t_edges, y_edges, x_edges: int64 cell boundaries along time, rows and columns
            (``n + 1`` increasing values from 0 to the axis length).
        out: ``(nt, ny, nx)`` float64, overwritten: for every cell, the sum over its frames
            and pixels of ``sqrt(sum_c (Gx_c^2 + Gy_c^2))``, where ``Gx``/``Gy`` are the 3x3
            Prewitt responses of component ``c`` (edges replicated).
    """
    frames, channels, h, w = field.shape
    nt, ny, nx = out.shape
    out[:] = 0.0
    ti = 0
    for t in range(frames):
        while ti + 1 < nt and t >= t_edges[ti + 1]:
            ti += 1
        yi = 0
        for y in range(h):
            while yi + 1 < ny and y >= y_edges[yi + 1]:
                yi += 1
            y0 = y - 1 if y > 0 else 0
            y1 = y + 1 if y < h - 1 else h - 1
            xi = 0
            for x in range(w):
                while xi + 1 < nx and x >= x_edges[xi + 1]:
                    xi += 1
                x0 = x - 1 if x > 0 else 0
                x1 = x + 1 if x < w - 1 else w - 1
                total = 0.0
                for c in range(channels):
                    f = field[t, c]
                    gx = (f[y0, x1] + f[y, x1] + f[y1, x1]) - (f[y0, x0] + f[y, x0] + f[y1, x0])
                    gy = (f[y1, x0] + f[y1, x] + f[y1, x1]) - (f[y0, x0] + f[y0, x] + f[y0, x1])
                    total += gx * gx + gy * gy
                out[ti, yi, xi] += np.sqrt(total)
