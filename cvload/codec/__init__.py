"""The neural codec: quantisers, encoder/decoder, config, compression ratio, training,
metrics and evaluation against JPEG and H.264 at the same bytes."""

from cvload.codec._config import CodecConfig
from cvload.codec._eval import evaluate, format_report
from cvload.codec._data import NO_CROP, CropPolicy, FramePool, clip_loader
from cvload.codec._metrics import mae, perplexity, psnr, ssim
from cvload.codec._model import CompressionRatio, VideoCodec
from cvload.codec._train import TrainResult, train

__all__ = ["NO_CROP", "CodecConfig", "CompressionRatio", "CropPolicy", "FramePool", "TrainResult",
           "VideoCodec", "clip_loader", "evaluate", "format_report", "mae", "perplexity", "psnr",
           "ssim", "train"]
