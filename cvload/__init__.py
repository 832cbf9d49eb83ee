"""cvload: train video models on compressed video.

Motion vectors, residuals and I-frames decoded on the fly from ordinary video files,
neural codes in WebDataset shards, and a drop-in ``DataLoader`` that puts them on the GPU,
where ``LatentAugment`` applies learned augmentations to codes.
"""

from cvload import errors
from cvload._alloc import tune_allocator
from cvload.augment import AugmentationNetwork, LatentAugment
from cvload.codec import VideoCodec
from cvload.errors import CvloadError
from cvload.loader import DataLoader
from cvload.shards import ShardDataset
from cvload.video import (
    CompressedClip,
    FrameMotion,
    ReadOptions,
    VideoDataset,
    VideoInfo,
    iter_motion_vectors,
    motion_field,
    probe,
    read_clip,
)

__version__ = "0.1.0"

__all__ = [
    "AugmentationNetwork",
    "CompressedClip",
    "CvloadError",
    "DataLoader",
    "FrameMotion",
    "LatentAugment",
    "ReadOptions",
    "ShardDataset",
    "VideoCodec",
    "VideoDataset",
    "VideoInfo",
    "__version__",
    "errors",
    "iter_motion_vectors",
    "motion_field",
    "probe",
    "read_clip",
    "tune_allocator",
]
