"""Everything that touches PyAV: sources, probing, decoding, samplers, dataset layouts."""

from cvload.video._capabilities import CodecSupport, codec_support
from cvload.video._clip import CompressedClip
from cvload.video._decode import STREAMS, read_clip, read_frames
from cvload.video._motion import FrameMotion, estimate_vectors, iter_motion_vectors, motion_field
from cvload.video._dataset import LAYOUTS, ClipDecoder, VideoDataset
from cvload.video._probe import VideoInfo, probe
from cvload.video._source import open_video

__all__ = [
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
