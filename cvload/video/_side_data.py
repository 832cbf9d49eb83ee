"""Motion-vector side data of decoded frames: FFmpeg's AVMotionVector records, unpacked
without a Python loop. A leaf module: it imports nothing else of cvload.video."""



import numpy as np

import cvload_ext

__all__ = ["AV_MOTION_VECTOR", "MV_COLUMNS", "motion_side_data", "vectors_from_side_data"]

MV_COLUMNS = ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y",
              "motion_scale")
_EMPTY_MVS = np.zeros((0, 10), np.int32)


# FFmpeg's AVMotionVector, as PyAV's ``MotionVectors.to_ndarray`` describes it (aligned).
# The kernel that unpacks records (``cvload_ext.unpack_motion_vectors``) has the same
# layout compiled in; PyAV's description is compared with this once, on first use.
AV_MOTION_VECTOR = np.dtype(
    [("source", "int32"), ("w", "uint8"), ("h", "uint8"), ("src_x", "int16"),
     ("src_y", "int16"), ("dst_x", "int16"), ("dst_y", "int16"), ("flags", "uint64"),
     ("motion_x", "int32"), ("motion_y", "int32"), ("motion_scale", "uint16")],
    align=True,
)
if not (AV_MOTION_VECTOR.itemsize == cvload_ext.motion.AV_MOTION_VECTOR_SIZE and all(
    AV_MOTION_VECTOR.fields[name][1] == offset and AV_MOTION_VECTOR.fields[name][0] == kind
    for name, offset, kind in cvload_ext.motion.AV_MOTION_VECTOR_FIELDS
) and tuple(f[0] for f in cvload_ext.motion.AV_MOTION_VECTOR_FIELDS) == MV_COLUMNS):
    raise ImportError("cvload_ext.unpack_motion_vectors and AV_MOTION_VECTOR disagree")
_PYAV_LAYOUT_MATCHES: bool | None = None  # checked against PyAV once, on first use

try:  # PyAV >= 14: a container over a frame's side data that the frame does not keep
    from av.sidedata.sidedata import SideDataContainer as _SideDataContainer
    from av.sidedata.sidedata import Type as _SideDataType

    _MOTION_VECTORS = _SideDataType.MOTION_VECTORS
except (ImportError, AttributeError):  # pragma: no cover - other PyAV versions
    _SideDataContainer = None
    _MOTION_VECTORS = "MOTION_VECTORS"


def motion_side_data(frame):
    """The frame's motion-vector side data (PyAV ``MotionVectors``), or None.

    ``frame.side_data`` caches its container on the frame, and the container points back
    at the frame: a reference cycle, so the frame and its FFmpeg picture buffers would
    be freed only when Python's cyclic collector next runs, tens of frames later, and the
    decoder would keep allocating fresh buffers instead of reusing warm ones (MV-only
    decoding of a 320x240 B-frame video ran at ~0.8x of plain decoding). A container
    built here points at the frame without the frame pointing back, so reference
    counting frees both as soon as the caller drops them.
    """
    if _SideDataContainer is None:  # pragma: no cover - other PyAV versions
        return frame.side_data.get(_MOTION_VECTORS)
    return _SideDataContainer(frame).get(_MOTION_VECTORS)


def vectors_from_side_data(side_data) -> np.ndarray:
    """FFmpeg's AVMotionVector records as an ``(N, 10)`` int32 array (columns MV_COLUMNS)."""
    global _PYAV_LAYOUT_MATCHES
    if side_data is None:
        return _EMPTY_MVS
    if _PYAV_LAYOUT_MATCHES is None:
        _PYAV_LAYOUT_MATCHES = side_data.to_ndarray().dtype == AV_MOTION_VECTOR
    if not _PYAV_LAYOUT_MATCHES:  # a PyAV with another record layout: the slow, sure way
        records = side_data.to_ndarray()
        return np.stack([records[name].astype(np.int32) for name in MV_COLUMNS], axis=1)
    out = np.empty((side_data.buffer_size // AV_MOTION_VECTOR.itemsize, 10), np.int32)
    if len(out):
        cvload_ext.unpack_motion_vectors(side_data.buffer_ptr, out)
    return out
