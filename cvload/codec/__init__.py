"""The neural codec: clip -> small integer codes -> clip.

``_config.CodecConfig`` defines architecture and code format; ``_quantizers`` holds FSQ and
EMA vector quantisation; ``_model.VideoCodec`` is the refined linear transform (PCA
initialised, residual refinement at the code grid) with encode / decode / embed, files and
compression ratios; ``_data`` decodes training videos once into a ``FramePool`` and draws
random resized crops (and the temporal hold-out for validation); ``_train`` trains (time
budgets, checkpoints, resume); ``_metrics`` and ``_eval`` measure it against JPEG, H.264,
the equal-bytes thumbnail and block means. ``cvload pack --format codes`` calls
``encode``; models call ``embed`` on the device.
"""

from cvload.codec._config import CodecConfig
from cvload.codec._eval import evaluate, format_report
from cvload.codec._data import NO_CROP, CropPolicy, FramePool, clip_loader
from cvload.codec._metrics import mae, perplexity, psnr, ssim
from cvload.codec._model import CompressionRatio, VideoCodec
from cvload.codec._train import TrainResult, train

__all__ = ["NO_CROP", "CodecConfig", "CompressionRatio", "CropPolicy", "FramePool", "TrainResult",
           "VideoCodec", "clip_loader", "evaluate", "format_report", "mae", "perplexity", "psnr",
           "ssim", "train"]
