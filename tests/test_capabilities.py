"""Motion-vector export: the table probe reads is what this FFmpeg build does, and codecs
the table does not know are decided by their first inter frame (issue 11)."""

from __future__ import annotations

import av
import numpy as np
import pytest

import cvload
from cvload.errors import NoMotionVectorsError
from cvload.oddvideo import encode_simple
from cvload.video import _motion
from cvload.video._capabilities import EXPORTING_CODECS, NON_EXPORTING_CODECS

# codec -> (encoder, container, pixel format); what this build can write
ENCODABLE = {
    "h264": ("libx264", "mp4", "yuv420p"), "mpeg4": ("mpeg4", "avi", "yuv420p"),
    "mpeg1video": ("mpeg1video", "mpeg", "yuv420p"), "mpeg2video": ("mpeg2video", "mpegts", "yuv420p"),
    "h263": ("h263", "avi", "yuv420p"), "h263p": ("h263p", "avi", "yuv420p"),
    "flv1": ("flv", "flv", "yuv420p"), "msmpeg4v2": ("msmpeg4v2", "avi", "yuv420p"),
    "msmpeg4v3": ("msmpeg4", "avi", "yuv420p"), "wmv1": ("wmv1", "asf", "yuv420p"),
    "wmv2": ("wmv2", "asf", "yuv420p"), "h261": ("h261", "avi", "yuv420p"),
    "snow": ("snow", "avi", "yuv420p"), "hevc": ("libx265", "mp4", "yuv420p"),
    "vp8": ("libvpx", "webm", "yuv420p"), "vp9": ("libvpx-vp9", "webm", "yuv420p"),
    "cinepak": ("cinepak", "avi", "rgb24"), "mjpeg": ("mjpeg", "avi", "yuvj420p"),
    "ffv1": ("ffv1", "matroska", "yuv420p"), "huffyuv": ("huffyuv", "avi", "yuv422p"),
    "qtrle": ("qtrle", "mov", "rgb24"), "gif": ("gif", "gif", "rgb8"),
}
SIZES = {"h261": (144, 176), "h263": (144, 176)}


def _write(tmp_path, codec):
    encoder, fmt, pix = ENCODABLE[codec]
    try:
        av.codec.Codec(encoder, "w")
    except Exception:
        pytest.skip(f"this FFmpeg build has no {encoder} encoder")
    path = tmp_path / f"clip.{fmt}"
    encode_simple(encoder, fmt, pix_fmt=pix, size=SIZES.get(codec, (96, 128)), n=8, gop=4)(path)
    return path


def _exported(path) -> bool:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"flags2": "+export_mvs"}
        return any(frame.side_data.get("MOTION_VECTORS") is not None
                   for frame in container.decode(stream))


@pytest.mark.parametrize("codec", sorted(ENCODABLE))
def test_the_table_is_what_the_decoder_does(tmp_path, codec):
    path = _write(tmp_path, codec)
    exports = _exported(path)
    assert (codec in EXPORTING_CODECS) == exports
    assert (codec in NON_EXPORTING_CODECS) == (not exports)
    assert cvload.probe(path).exports_motion_vectors is exports


@pytest.mark.parametrize("codec, exports", [("cinepak", False), ("mpeg4", True)])
def test_unknown_codecs_are_decided_by_their_first_inter_frame(tmp_path, monkeypatch, codec,
                                                                exports):
    import dataclasses

    path = _write(tmp_path, codec)
    info = dataclasses.replace(cvload.probe(path), exports_motion_vectors=None)
    monkeypatch.setattr(_motion, "_LEARNED_EXPORTS", {})
    if exports:
        clip = cvload.read_clip(path, start=0, num_frames=4, streams=("mv",), info=info,
                                mv_source="bitstream")
        assert not clip.mv_estimated and np.abs(clip.mv).sum() > 0
    else:
        with pytest.raises(NoMotionVectorsError, match="cinepak.*\n.*estimate"):
            cvload.read_clip(path, start=0, num_frames=4, streams=("mv",), info=info,
                             mv_source="bitstream")
        clip = cvload.read_clip(path, start=0, num_frames=4, streams=("mv",), info=info,
                                mv_source="auto")
        assert clip.mv_estimated
    assert _motion._LEARNED_EXPORTS == {info.codec: exports}
