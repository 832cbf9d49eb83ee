"""Everything that touches PyAV: sources, probing, decoding, samplers, dataset layouts."""

from cvload.video._capabilities import CodecSupport, codec_support
from cvload.video._probe import VideoInfo, probe

__all__ = ["CodecSupport", "VideoInfo", "codec_support", "probe"]
