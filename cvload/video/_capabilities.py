"""Which decoders export motion vectors: a table of what was verified, the first inter
frame for the rest, and a round trip per codec for ``cvload doctor``."""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass

import av

from cvload.video._side_data import motion_side_data

__all__ = ["CodecSupport", "codec_support", "motion_vector_export", "EXPORTING_CODECS",
           "NON_EXPORTING_CODECS", "ZERO_BFRAME_VECTOR_CODECS"]

#: Codecs whose FFmpeg decoders export motion vectors (``flags2=+export_mvs``): H.264
#: and the MPEG-video family. Each with an encoder in PyAV's FFmpeg was checked by encoding
#: and decoding a clip (``tests/test_capabilities.py`` repeats it); h263i and msmpeg4v1
#: have no encoder and share the MPEG-video decoding code that exports.
EXPORTING_CODECS = frozenset({
    "h264", "mpeg4", "mpeg1video", "mpeg2video", "h261", "h263", "h263p", "h263i", "flv1",
    "msmpeg4v1", "msmpeg4v2", "msmpeg4v3", "wmv1", "wmv2", "snow",
})
#: Codecs whose decoders export none (checked the same way where an encoder exists, AV1
#: on the shared real files; Theora/VP3 and PNG/APNG from FFmpeg's sources: they are not
#: MPEG-video decoders). Intra-only codecs are also recognised from FFmpeg's descriptor.
NON_EXPORTING_CODECS = frozenset({
    "hevc", "vp8", "vp9", "av1", "cinepak", "qtrle", "gif", "theora", "vp3", "mjpeg",
    "prores", "dvvideo", "ffv1", "huffyuv", "rawvideo", "png", "apng",
})


#: Codecs whose FFmpeg decoders export a zero vector for every block of a B-frame
#: (MPEG-4 Part 2 keeps B-frame motion out of the picture's motion table it exports;
#: checked on real Xvid files and on encodes with known motion).
ZERO_BFRAME_VECTOR_CODECS = frozenset({"mpeg4"})


def motion_vector_export(codec: str, decoder: str | None = None) -> bool | None:
    """Does the decoder of ``codec`` export motion vectors? True/False when known from the
    tables (or FFmpeg says the codec is intra-only), None when unknown: then the first
    inter frame decoded decides (see ``cvload.video._decode``). Costs nothing."""
    names = {codec, decoder} - {None}
    if names & EXPORTING_CODECS:
        return True
    if names & NON_EXPORTING_CODECS:
        return False
    for name in names:
        try:
            if av.codec.Codec(name, "r").intra_only:
                return False
        except Exception:  # an unknown name: nothing to learn from it
            continue
    return None

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

    from cvload.synthetic import encode_frames, translating_frames

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
    Cached per process; takes a few milliseconds per codec. Used by ``cvload doctor``;
    :func:`probe` reads :func:`motion_vector_export` instead.
    """
    from cvload.synthetic import ENCODERS

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
