"""Generators for the odd classes of real encoded video that users bring (issue 11).

Each writes a file with a real encoder through PyAV and, where the class is about how the
bitstream or container is laid out, rewrites packets the way the tools that make such
files do: decode times stored as presentation times (pts == dts while B-frames reorder),
an H.264 SPS declaring no reorder delay, MPEG-4 ASP with packed B-frames in AVI (the
DivX/Xvid way), an edit list hiding frames, variable frame rate, two video streams, a
video stream after an audio one, open GOPs, and codecs whose decoders export no vectors.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from cvload.oddvideo import (
    BitReader,
    encode_into,
    encode_simple as _simple,
    moving_frames,
    remux_video as _remux,
    write_decode_times_as_pts as decode_times_as_pts,
    write_h264_mp4,
    write_packed_bframes_avi as packed_bframes_avi,
    x264_options,
)

__all__ = ["GENERATORS", "sps_without_reorder_delay"]


# -- the classes -------------------------------------------------------------------------


def edit_list_tail(path: Path) -> None:
    """MP4 whose edit list ends before its last frame (as box.mp4's does): the hidden
    packet is decoded as a reference but never shown."""
    write_h264_mp4(path, 30, bframes=2, gop=12)
    _shorten_edit_list(path, frames=2)


def _shorten_edit_list(path: Path, frames: int) -> None:
    """Cut ``frames`` frame durations off the (only) edit of an MP4's video track, in place."""
    data = bytearray(Path(path).read_bytes())
    at = data.find(b"elst")
    if at < 0:
        raise RuntimeError("no edit list written")
    version = data[at + 4]
    entry = at + 12
    if version == 0:
        duration = int.from_bytes(data[entry:entry + 4], "big")
        width = 4
    else:
        duration = int.from_bytes(data[entry:entry + 8], "big")
        width = 8
    mvhd = data.find(b"mvhd")
    timescale = int.from_bytes(data[mvhd + 16:mvhd + 20], "big")  # version 0 mvhd
    cut = duration - frames * timescale // 25
    data[entry:entry + width] = cut.to_bytes(width, "big")
    Path(path).write_bytes(bytes(data))


def variable_frame_rate(path: Path) -> None:
    """MKV whose frames are 20, 40 or 80 ms apart (screen recordings, phones)."""
    frames = moving_frames(36)
    gaps = np.tile([1, 2, 4, 1, 1, 2], 6)
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=50)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = x264_options(bframes=2)
        stream.codec_context.time_base = Fraction(1, 50)
        t = 0
        for rgb, gap in zip(frames, gaps):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 50)
            t += int(gap)
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)


def two_video_streams_audio_first(path: Path) -> None:
    """MOV with an audio stream at index 0, then two H.264 video streams of other sizes."""
    with av.open(str(path), "w", format="mov") as out:
        audio = out.add_stream("aac", rate=48000)
        small = out.add_stream("libx264", rate=25)
        small.width, small.height, small.pix_fmt = 96, 64, "yuv420p"
        small.options = x264_options(bframes=2, gop=10)
        big = out.add_stream("libx264", rate=25)
        big.width, big.height, big.pix_fmt = 160, 128, "yuv420p"
        big.options = x264_options(bframes=1, gop=8)
        a, b = moving_frames(24, 64, 96, seed=1), moving_frames(24, 128, 160, seed=2)
        silence = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in silence.planes:
            plane.update(bytes(plane.buffer_size))
        silence.sample_rate = 48000
        for i in range(24):
            for stream, rgb in ((small, a[i]), (big, b[i])):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = i
                for p in stream.encode(frame):
                    out.mux(p)
            if i % 2 == 0:
                silence.pts = i * 1024
                for p in audio.encode(silence):
                    out.mux(p)
        for stream in (small, big, audio):
            for p in stream.encode(None):
                out.mux(p)


def open_gop_h264_mkv(path: Path) -> None:
    """H.264 with open GOPs (recovery-point I-frames whose leading B-frames reference
    the previous GOP) in Matroska."""
    frames = moving_frames(48)
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = x264_options(bframes=2, gop=12, extra=":open-gop=1")
        encode_into(out, stream, frames)


def open_gop_hevc_mp4(path: Path) -> None:
    """HEVC with CRA keyframes and leading (RASL) pictures, x265's open GOP, in MP4."""
    frames = moving_frames(40)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx265", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "24",
                          "x265-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3"
                                         ":open-gop=1:log-level=error:pools=1:frame-threads=1"}
        encode_into(out, stream, frames)


#: name -> (suffix, generator, facts). Facts: ``exports`` (motion vectors: True/False),
#: ``order`` (how the reference orders sequential decoding: "output" or "pts").
GENERATORS = {
    "decode_times_as_pts.mp4": (decode_times_as_pts, {"exports": True}),
    "edit_list_tail.mp4": (edit_list_tail, {"exports": True}),
    "vfr.mkv": (variable_frame_rate, {"exports": True}),
    "two_streams_audio_first.mov": (two_video_streams_audio_first, {"exports": True}),
    "open_gop_h264.mkv": (open_gop_h264_mkv, {"exports": True}),
    "open_gop_hevc.mp4": (open_gop_hevc_mp4, {"exports": False}),
    "mpeg4_asp_bframes.avi": (_simple("mpeg4", "avi", bframes=2, gop=12,
                                      options={"qmax": "4"}), {"exports": True}),
    "msmpeg4v3.avi": (_simple("msmpeg4", "avi", size=(144, 176)), {"exports": True}),
    "mpeg2_bframes.ts": (_simple("mpeg2video", "mpegts", bframes=2, gop=12), {"exports": True}),
    "mpeg1.mpg": (_simple("mpeg1video", "mpeg", bframes=1), {"exports": True}),
    "flv1.flv": (_simple("flv", "flv"), {"exports": True}),
    "cinepak.avi": (_simple("cinepak", "avi", pix_fmt="rgb24"), {"exports": False}),
    "mjpeg.avi": (_simple("mjpeg", "avi", pix_fmt="yuvj420p"), {"exports": False}),
    "vp8.webm": (_simple("libvpx", "webm"), {"exports": False}),
    "prores.mov": (_simple("prores_ks", "mov", pix_fmt="yuv422p10le", n=12), {"exports": False}),
    "ffv1.mkv": (_simple("ffv1", "matroska", n=12), {"exports": False}),
}


GENERATORS["packed_bframes.avi"] = (packed_bframes_avi, {"exports": True})


# -- H.264 whose SPS declares no reorder delay -------------------------------------------


class _RbspReader(BitReader):
    def ue(self) -> int:
        zeros = 0
        while self.read(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.read(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _escape(rbsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _hrd(bits: _RbspReader) -> None:
    count = bits.ue() + 1
    bits.read(8)
    for _ in range(count):
        bits.ue(), bits.ue(), bits.read(1)
    bits.read(20)


def sps_without_reorder_delay(sps: bytes) -> bytes:
    """An SPS NAL (header byte included, escaped) with VUI ``max_num_reorder_frames = 0``."""
    rbsp = _unescape(sps)
    bits = _RbspReader(rbsp, 1)
    profile = bits.read(8)
    bits.read(16)
    bits.ue()
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        if bits.ue() == 3:
            bits.read(1)
        bits.ue(), bits.ue(), bits.read(1)
        if bits.read(1):
            raise ValueError("scaling matrices are not handled")
    bits.ue()
    poc = bits.ue()
    if poc == 0:
        bits.ue()
    elif poc == 1:
        bits.read(1), bits.se(), bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue(), bits.read(1), bits.ue(), bits.ue()
    if not bits.read(1):
        bits.read(1)
    bits.read(1)
    if bits.read(1):
        bits.ue(), bits.ue(), bits.ue(), bits.ue()
    if not bits.read(1):
        raise ValueError("no VUI")
    if bits.read(1) and bits.read(8) == 255:
        bits.read(32)
    if bits.read(1):
        bits.read(1)
    if bits.read(1):
        bits.read(4)
        if bits.read(1):
            bits.read(24)
    if bits.read(1):
        bits.ue(), bits.ue()
    if bits.read(1):
        bits.read(65)
    nal_hrd = bits.read(1)
    if nal_hrd:
        _hrd(bits)
    vcl_hrd = bits.read(1)
    if vcl_hrd:
        _hrd(bits)
    if nal_hrd or vcl_hrd:
        bits.read(1)
    bits.read(1)
    if not bits.read(1):
        raise ValueError("no bitstream restriction")
    bits.read(1), bits.ue(), bits.ue(), bits.ue(), bits.ue()
    begin = bits.bit
    bits.ue()
    end = bits.bit
    text = "".join(format(b, "08b") for b in rbsp)
    text = text[:begin] + "1" + text[end:]
    text = text.rstrip("0")  # trailing bits: a stop bit then zeros to the byte boundary
    text = text[:-1] + "1" if text.endswith("1") else text + "1"
    text += "0" * (-len(text) % 8)
    return _escape(int(text, 2).to_bytes(len(text) // 8, "big"))


def _annexb_nals(data: bytes):
    at = 0
    starts = []
    while True:
        i = data.find(b"\x00\x00\x01", at)
        if i < 0:
            break
        starts.append(i + 3)
        at = i + 3
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        while k + 1 < len(starts) and e > s and data[e - 1] == 0:
            e -= 1
        yield data[s:e]


def reorder_delay_zero_ts(path: Path) -> None:
    """H.264 High with B-frames in MPEG-TS whose SPS says ``max_num_reorder_frames = 0``:
    the timestamps are right, FFmpeg trusts the SPS and returns frames out of order."""
    plain = path.with_suffix(".plain.ts")
    with av.open(str(plain), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = x264_options(bframes=3, gop=16, extra=":b-pyramid=normal")
        encode_into(out, stream, moving_frames(48))

    def rewrite(k, packet):
        data = bytes(packet)
        if b"\x00\x00\x01\x67" not in data:
            return None
        nals = [sps_without_reorder_delay(n) if n[0] & 0x1F == 7 else n
                for n in _annexb_nals(data)]
        new = av.Packet(b"".join(b"\x00\x00\x00\x01" + n for n in nals))
        new.pts, new.dts, new.time_base = packet.pts, packet.dts, packet.time_base
        new.is_keyframe = packet.is_keyframe
        return new

    _remux(plain, path, "mpegts", rewrite)
    plain.unlink()


GENERATORS["reorder_delay_zero.ts"] = (reorder_delay_zero_ts, {"exports": True, "order": "pts"})
