"""``CompressedClip``, what reading a clip returns, and ``FrameRecord``, what it is assembled from (a leaf module)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


__all__ = ["CompressedClip", "FrameRecord"]


@dataclass(frozen=True, repr=False)
class CompressedClip:
    """What :func:`read_clip` returns; only the requested arrays are set (others None).

    Attributes (T requested frames, G GOPs they touch, h = ceil(H/mv_grid) ...):
        source: printable name of the source.
        indices: ``(T,)`` int64 output indices of the frames.
        frame_types: T letters, 'I', 'P' or 'B'.
        pts: ``(T,)`` int64 timestamps (-1 where the stream has none).
        gop_ids: ``(T,)`` int64 index of each frame's GOP in the file (from keyframes).
        rgb: ``(T, H, W, 3)`` uint8 decoded frames.
        mv: ``(T, h, w, 4)`` float32 motion fields ``[L0 dx, L0 dy, L1 dx, L1 dy]`` in
            pixels; with ``accumulate=True`` ``(T, h, w, 2)``, the offset to the GOP's
            I-frame (CoViAR).
        residual: ``(T, H, W, 3)`` int16, frame minus motion-compensated prediction (with
            ``accumulate=True``: minus the I-frame warped by the accumulated motion);
            0 for I-frames.
        iframe: ``(G, H, W, 3)`` uint8 the keyframes of the GOPs in ``gop_ids`` order:
            ``iframe[np.searchsorted(iframe_gops, gop_ids)]`` gives each frame's I-frame.
        iframe_gops: ``(G,)`` int64 GOP ids of the rows of ``iframe``.
        mv_estimated: True when vectors come from block matching, not the bitstream.
        accumulate: whether ``mv``/``residual`` are CoViAR's accumulated forms.
    """

    source: str
    indices: np.ndarray
    frame_types: str
    pts: np.ndarray
    gop_ids: np.ndarray
    rgb: np.ndarray | None = None
    mv: np.ndarray | None = None
    residual: np.ndarray | None = None
    iframe: np.ndarray | None = None
    iframe_gops: np.ndarray | None = None
    mv_estimated: bool = False
    accumulate: bool = False

    def __post_init__(self) -> None:
        t = len(self.indices)
        if len(self.frame_types) != t or len(self.pts) != t or len(self.gop_ids) != t:
            raise ValueError("indices, frame_types, pts and gop_ids must have the same length")
        for name in ("rgb", "mv", "residual"):
            arr = getattr(self, name)
            if arr is not None and arr.shape[0] != t:
                raise ValueError(f"{name} has {arr.shape[0]} frames, expected {t}")

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        parts = [f"source={self.source!r}", f"frames={len(self)}",
                 f"types={self.frame_types!r}"]
        for name in ("rgb", "mv", "residual", "iframe"):
            arr = getattr(self, name)
            if arr is not None:
                parts.append(f"{name}={tuple(arr.shape)} {arr.dtype}")
        if self.mv_estimated:
            parts.append("mv_estimated=True")
        if self.accumulate:
            parts.append("accumulate=True")
        return f"CompressedClip({', '.join(parts)})"


@dataclass
class FrameRecord:
    """One decoded frame as a clip needs it: picture type (``I``/``P``/``B``), pts, and
    only what is used of it: RGB, exported vectors, or luma to estimate vectors from."""

    type: str
    pts: int
    rgb: np.ndarray | None = None
    vectors: np.ndarray | None = None
    luma: np.ndarray | None = None
