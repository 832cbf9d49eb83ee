"""Block motion compensation and residuals by their definition, from plain PyAV: the
independent reference that cvload's residuals are checked against."""

from __future__ import annotations

import numpy as np


def pyav_frames_and_vectors(path, *, stream: int | None = None, frames: int | None = None):
    """Frames (RGB), their types and exported vectors, in presentation order, by plain
    PyAV: video stream ``stream`` (default the first), the first ``frames`` in
    presentation order (all by default; a margin past them is decoded so that reordered
    frames are placed right). Raw streams without timestamps keep decoding order."""
    import av

    columns = ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y",
               "motion_scale")
    rows = []
    with av.open(str(path)) as container:
        video = container.streams.video[0] if stream is None else next(
            s for s in container.streams.video if s.index == stream)
        video.codec_context.options = {"flags2": "+export_mvs"}
        for position, frame in enumerate(container.decode(video)):
            side = frame.side_data.get("MOTION_VECTORS")
            records = side.to_ndarray() if side is not None else None
            vectors = np.zeros((0, 10), np.int32) if records is None else np.stack(
                [records[c].astype(np.int32) for c in columns], axis=1)
            kind = {1: "I", 2: "P", 3: "B"}.get(int(frame.pict_type), "?")
            order = frame.pts if frame.pts is not None else position
            rows.append((order, frame.to_ndarray(format="rgb24"), kind, vectors))
            if frames is not None and len(rows) >= frames + 16:
                break
    rows.sort(key=lambda r: r[0])
    rows = rows if frames is None else rows[:frames]
    return [r[1] for r in rows], "".join(r[2] for r in rows), [r[3] for r in rows]


def reference_prediction(ref0, ref1, vectors):
    """Block motion compensation by its definition, pixel by pixel (numpy)."""
    height, width, _ = ref0.shape
    out = ref0.astype(np.int64)
    covered = np.zeros((height, width), np.int64)
    for source, w, h, _, _, x, y, mx, my, scale in vectors.tolist():
        if scale <= 0:
            continue
        ref = (ref0 if source < 0 else ref1).astype(np.int64)
        ix, iy = mx // scale, my // scale
        fx, fy = mx - ix * scale, my - iy * scale
        x0, y0 = max(0, x - w // 2), max(0, y - h // 2)
        x1, y1 = min(width, x - w // 2 + w), min(height, y - h // 2 + h)
        if x0 >= x1 or y0 >= y1:
            continue
        ya = np.clip(np.arange(y0, y1) + iy, 0, height - 1)[:, None]
        yb = np.clip(np.arange(y0, y1) + iy + 1, 0, height - 1)[:, None]
        xa = np.clip(np.arange(x0, x1) + ix, 0, width - 1)[None, :]
        xb = np.clip(np.arange(x0, x1) + ix + 1, 0, width - 1)[None, :]
        den = scale * scale
        value = ((scale - fx) * (scale - fy) * ref[ya, xa] + fx * (scale - fy) * ref[ya, xb]
                 + (scale - fx) * fy * ref[yb, xa] + fx * fy * ref[yb, xb] + den // 2) // den
        if covered[y0, x0]:
            value = (out[y0:y1, x0:x1] + value + 1) >> 1
        out[y0:y1, x0:x1] = value
        covered[y0:y1, x0:x1] += 1
    return out.astype(np.uint8)


def reference_prediction_l0(ref, vectors):
    """:func:`reference_prediction` for past-only (L0) blocks that do not overlap, as in
    P-frames, vectorised over blocks of each size (the same definition, written again)."""
    height, width, _ = ref.shape
    vectors = vectors[vectors[:, 9] > 0]
    assert (vectors[:, 0] < 0).all(), "L0 blocks only"
    out = ref.astype(np.int64)
    covered = np.zeros((height, width), np.int64)
    src = ref.astype(np.int64)
    for w, h in {(int(r[1]), int(r[2])) for r in vectors}:
        rows = vectors[(vectors[:, 1] == w) & (vectors[:, 2] == h)].astype(np.int64)
        x, y, mx, my, scale = rows[:, 5], rows[:, 6], rows[:, 7], rows[:, 8], rows[:, 9]
        ix, iy = mx // scale, my // scale
        fx, fy = (mx - ix * scale)[:, None, None], (my - iy * scale)[:, None, None]
        s = scale[:, None, None]
        ys = (y - h // 2)[:, None] + np.arange(h)[None]  # (n, h)
        xs = (x - w // 2)[:, None] + np.arange(w)[None]  # (n, w)
        inside = ((ys >= 0) & (ys < height))[:, :, None] & ((xs >= 0) & (xs < width))[:, None]
        ya = np.clip(ys + iy[:, None], 0, height - 1)[:, :, None]
        yb = np.clip(ys + iy[:, None] + 1, 0, height - 1)[:, :, None]
        xa = np.clip(xs + ix[:, None], 0, width - 1)[:, None, :]
        xb = np.clip(xs + ix[:, None] + 1, 0, width - 1)[:, None, :]
        den = (s * s)[..., None]
        value = (((s - fx) * (s - fy))[..., None] * src[ya, xa] + (fx * (s - fy))[..., None]
                 * src[ya, xb] + ((s - fx) * fy)[..., None] * src[yb, xa]
                 + (fx * fy)[..., None] * src[yb, xb] + den // 2) // den
        yy = np.broadcast_to(ys[:, :, None], inside.shape)[inside]
        xx = np.broadcast_to(xs[:, None, :], inside.shape)[inside]
        out[yy, xx] = value[inside]
        np.add.at(covered, (yy, xx), 1)
    assert covered.max() <= 1, "overlapping L0 blocks: use reference_prediction"
    return out.astype(np.uint8)


def assert_p_residuals_exact(path, clip, *, stream: int | None = None,
                             limit: int | None = None) -> int:
    """Every P-frame of ``clip`` (read with rgb and residual streams): its RGB equals plain
    PyAV decoding and its residual equals the frame minus the block motion compensation of
    its reference (the previous I- or P-frame) by the exported vectors (the first ``limit``
    P-frames only, when given: the reference is slow on large frames of small blocks).
    Returns how many P-frames were checked."""
    indices = np.asarray(clip.indices).tolist()
    frames, kinds, vectors = pyav_frames_and_vectors(path, stream=stream,
                                                     frames=max(indices) + 1)
    checked = 0
    for k, index in enumerate(indices):
        if kinds[index] != "P" or (limit is not None and checked >= limit):
            continue
        reference = max(i for i in range(index) if kinds[i] in "IP")
        prediction = reference_prediction_l0(frames[reference], vectors[index])
        np.testing.assert_array_equal(clip.rgb[k], frames[index])
        np.testing.assert_array_equal(clip.residual[k],
                                      frames[index].astype(np.int16) - prediction)
        checked += 1
    return checked
