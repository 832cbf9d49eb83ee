"""What this PyAV/FFmpeg build can do, found out by trying, not from a table."""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass

import av

from cvload.synthetic import ENCODERS, encode_frames, translating_frames

__all__ = ["CodecSupport", "codec_support", "decoder_exports_motion_vectors"]

_SUFFIX = {"h264": ".264", "hevc": ".h265", "mpeg4": ".m4v", "mpeg2video": ".m2v",
           "vp9": ".webm", "av1": ".mkv"}


@dataclass(frozen=True)
class CodecSupport:
    """Result of a round trip through one codec."""

    codec: str
    decoder: str | None
    encoder: str | None
    exports_motion_vectors: bool | None  # None: could not tell (no encoder to make a clip)
    error: str | None = None


def _roundtrip(codec: str, decoder: str | None) -> tuple[str, bool]:
    """Encode a tiny moving clip with ``codec``; decode it exporting MVs.

    Decodes with ``decoder`` when given, else with the decoder FFmpeg picks when it opens
    the file (``libdav1d`` for AV1, say). Returns ``(decoder used, vectors seen)``.
    """
    import tempfile

    frames = translating_frames(6, 64, 64, motion=(2, 1), seed=7)
    with tempfile.TemporaryDirectory(prefix="cvload-caps-") as tmp:
        path = os.path.join(tmp, "probe" + _SUFFIX.get(codec, ".mkv"))
        encode_frames(frames, path, codec=codec, gop=6, bframes=0, quality=20)
        with open(path, "rb") as f:
            data = f.read()
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if decoder is not None and ctx.name != decoder:
            ctx = av.CodecContext.create(decoder, "r")
            if stream.codec_context.extradata:
                ctx.extradata = stream.codec_context.extradata
        ctx.options = {"flags2": "+export_mvs"}
        from cvload.video._decode import motion_side_data

        found = False
        for packet in container.demux(stream):
            for frame in ctx.decode(packet):
                found |= motion_side_data(frame) is not None
        return ctx.name, found


@functools.lru_cache(maxsize=None)
def codec_support(codec: str, decoder: str | None = None) -> CodecSupport:
    """Is there a decoder for ``codec``, and does it export motion vectors?

    Encodes six 64x64 frames with the bundled encoder and decodes them with ``decoder``
    (default: the one FFmpeg picks when opening such a file) and ``flags2=+export_mvs``.
    Cached per process; takes a few milliseconds per codec.
    """
    encoder = ENCODERS.get(codec)
    fallback = decoder
    if fallback is None:
        try:
            fallback = av.codec.Codec(codec, "r").name
        except Exception:
            fallback = None
    if encoder is None:
        return CodecSupport(codec, fallback, None, None, "no test encoder known for this codec")
    try:
        av.codec.Codec(encoder, "w")
    except Exception:
        return CodecSupport(codec, fallback, None, None, f"encoder {encoder} not in this build")
    try:
        used, exports = _roundtrip(codec, decoder)
    except Exception as err:  # a broken build must not break probing
        return CodecSupport(codec, fallback, encoder, None, f"{type(err).__name__}: {err}")
    return CodecSupport(codec, used, encoder, exports)


def decoder_exports_motion_vectors(codec: str, decoder: str | None = None) -> bool | None:
    """True/False when known from a round trip, None when this build cannot tell."""
    return codec_support(codec, decoder).exports_motion_vectors
