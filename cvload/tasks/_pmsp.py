"""IMRNet's pyramidal motion statistics prediction (PMSP) labels: where in a clip, at
several space-time grid resolutions, the motion field changes most."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

import cvload_ext
from cvload.errors import InvalidArgumentError

__all__ = ["pmsp_classes", "pmsp_labels"]


def pmsp_classes(spatial: Sequence[int] = (2, 3, 4),
                 temporal: Sequence[int] = (1, 3, 5)) -> list[int]:
    """Classes of every label :func:`pmsp_labels` returns, in its order (temporal level
    outer, spatial inner): ``t * s * s`` cells per level."""
    return [int(t) * int(s) * int(s) for t in temporal for s in spatial]


def _edges(length: int, cells: int) -> np.ndarray:
    return np.round(np.linspace(0, length, cells + 1)).astype(np.int64)


def pmsp_labels(motion, spatial: Sequence[int] = (2, 3, 4),
                temporal: Sequence[int] = (1, 3, 5)) -> torch.Tensor:
    """PMSP labels of one sample's motion: ``(len(temporal) * len(spatial),)`` int64.

    ``motion``: ``(T, C, h, w)`` (the ``mvcgc`` layout's ``mv``), or ``(T, K, C, h, w)``
    (``imrnet``'s, GOPs times frames, read as ``T * K`` frames in order); tensor or array.
    For every pyramid level ``(t, s)`` the clip is cut into ``t`` spans of frames and an
    ``s x s`` grid; each cell sums the Prewitt gradient magnitude of the motion field
    (all C components), and the label is the index ``(span * s + row) * s + column`` of
    the cell with the largest sum (the first such cell on ties: a still clip is label 0
    everywhere). Computed by the numba kernel ``cvload_ext.cell_gradient_sums``.
    """
    field = motion.detach().cpu().numpy() if torch.is_tensor(motion) else np.asarray(motion)
    if field.ndim == 5:
        field = field.reshape(-1, *field.shape[2:])
    if field.ndim != 4 or min(field.shape) < 1:
        raise InvalidArgumentError(
            f"pmsp_labels takes motion (T, C, h, w) or (T, K, C, h, w), got {field.shape}")
    if not spatial or not temporal or min(*spatial, *temporal) < 1:
        raise InvalidArgumentError("spatial and temporal levels must be positive integers")
    field = np.ascontiguousarray(field, dtype=np.float32)
    frames, _, h, w = field.shape
    labels = []
    for t in temporal:
        for s in spatial:
            sums = np.empty((int(t), int(s), int(s)), np.float64)
            cvload_ext.cell_gradient_sums(field, _edges(frames, int(t)), _edges(h, int(s)),
                                          _edges(w, int(s)), sums)
            labels.append(int(np.argmax(sums)))
    return torch.tensor(labels, dtype=torch.int64)
