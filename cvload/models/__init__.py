"""Reference models: thin consumers of loader batches that prove the data is usable.
They take batches as they come and hold no data logic (labels and samplers live in
:mod:`cvload.tasks`).

``_s3d``: S3D for RGB clips and, with ``S3D.for_codes``, for neural-code latents;
``_resnet3d``: the 3D ResNet-18 backbone; ``_imrnet``: IMRNet's three connected streams
with classification, PMSP and CTP heads; ``_mvcgc``: MVCGC's cross-view contrastive
model; ``_past_future``: the long-video past/future model of Compressed Vision.
"""

from cvload.models._imrnet import IMRNet
from cvload.models._mvcgc import MVCGC
from cvload.models._past_future import PastFuture
from cvload.models._resnet3d import ResNet3d18
from cvload.models._s3d import S3D, S3DConfig

__all__ = ["IMRNet", "MVCGC", "PastFuture", "ResNet3d18", "S3D", "S3DConfig"]
