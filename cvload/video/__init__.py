"""Everything that touches PyAV: sources, probing, decoding, samplers, dataset layouts.

Data flow: a file (path, bytes or file object: ``_source``) is probed once (``_probe``:
stream, frame count and order, keyframes, via ``_index`` and ``_order``; whether its
decoder exports motion vectors comes from ``_capabilities``' table of FFmpeg decoders and is
confirmed by the stream's first inter frame in ``_motion``). ``read_clip`` / ``read_frames``
(``_decode``) decide which frames a clip needs and decode them once from the nearest
keyframe; ``_side_data`` unpacks their AVMotionVector records; ``_predict`` assembles RGB,
motion fields, residuals and I-frames (``_clip.CompressedClip``). ``_dataset`` turns that
into the research layouts (``rgb``, ``mvcgc``, ``imrnet``, ``coviar``) for a torch
``Dataset``. Kernels live in ``cvload_ext``.
"""

from cvload.video._capabilities import CodecSupport, codec_support
from cvload.video._clip import CompressedClip
from cvload.video._decode import read_clip, read_frames
from cvload.video._options import STREAMS, ReadOptions
from cvload.video._motion import FrameMotion, estimate_vectors, iter_motion_vectors, motion_field
from cvload.video._dataset import LAYOUTS, ClipDecoder, VideoDataset
from cvload.video._probe import VideoInfo, probe
from cvload.video._source import open_video

__all__ = [
    "ReadOptions",
    "STREAMS",
    "ClipDecoder",
    "CodecSupport",
    "CompressedClip",
    "FrameMotion",
    "LAYOUTS",
    "VideoDataset",
    "VideoInfo",
    "codec_support",
    "estimate_vectors",
    "iter_motion_vectors",
    "motion_field",
    "open_video",
    "probe",
    "read_clip",
    "read_frames",
]
