"""Generators for the odd classes of real encoded video that users bring (issue 11).

Each writes a file with a real encoder through PyAV and, where the class is about how the
bitstream or container is laid out, rewrites packets the way the tools that make such
files do: decode times stored as presentation times (pts == dts while B-frames reorder),
an H.264 SPS declaring no reorder delay, MPEG-4 ASP with packed B-frames in AVI (the
DivX/Xvid way), an edit list hiding frames, variable frame rate, two video streams, a
video stream after an audio one, open GOPs, and codecs whose decoders export no vectors.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from cvload.synthetic import translating_frames

__all__ = ["GENERATORS", "encode_packets", "write_packets"]


def _frames(n: int, height: int = 96, width: int = 128, seed: int = 0, motion=(3, 1)):
    return translating_frames(n, height, width, motion=motion, seed=seed)


def encode_packets(frames: np.ndarray, encoder: str, *, fmt: str, pix_fmt: str = "yuv420p",
                   rate: int = 25, options: dict | None = None, ctx_options: dict | None = None,
                   gop: int = 12, bframes: int | None = None):
    """Encode into ``fmt`` in memory; returns (packets as (pts, dts, key, bytes) in decode
    order, the stream's time base, extradata). The packets are the encoder's own."""
    buffer = io.BytesIO()
    packets = []
    with av.open(buffer, "w", format=fmt) as out:
        stream = out.add_stream(encoder, rate=Fraction(rate))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.codec_context.gop_size = gop
        if bframes is not None and encoder not in ("libx264", "libx265"):
            stream.codec_context.max_b_frames = bframes
        if options:
            stream.options = dict(options)
        if ctx_options:
            stream.codec_context.options = dict(ctx_options)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pix_fmt != "yuv420p":
                frame = frame.reformat(format=pix_fmt)
            frame.pts = i
            for p in stream.encode(frame):
                packets.append((p.pts, p.dts, p.is_keyframe, bytes(p), p.time_base))
        for p in stream.encode(None):
            packets.append((p.pts, p.dts, p.is_keyframe, bytes(p), p.time_base))
        extradata = stream.codec_context.extradata
    return packets, extradata


def write_packets(path, packets, *, codec: str, width: int, height: int, fmt: str | None = None,
                  extradata: bytes | None = None, rate: int = 25, time_base=None,
                  audio_first: bool = False, pix_fmt: str = "yuv420p") -> None:
    """Mux ``(pts, dts, key, data, time_base)`` packets as they are (no re-encoding)."""
    with av.open(str(path), "w", format=fmt) as out:
        if audio_first:
            audio = out.add_stream("aac", rate=48000)
        stream = out.add_stream(codec, rate=Fraction(rate))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if extradata:
            stream.codec_context.extradata = extradata
        if time_base is not None:
            stream.time_base = time_base
        if audio_first:
            silence = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            for plane in silence.planes:
                plane.update(bytes(plane.buffer_size))
            silence.sample_rate, silence.pts = 48000, 0
            for p in audio.encode(silence):
                out.mux(p)
        for pts, dts, key, data, tb in packets:
            packet = av.Packet(data)
            packet.pts, packet.dts, packet.time_base = pts, dts, tb
            packet.is_keyframe = key
            packet.stream = stream
            out.mux(packet)
        if audio_first:
            for p in audio.encode(None):
                out.mux(p)


def _x264(bframes=2, gop=12, extra=""):
    return {"preset": "veryfast", "crf": "20",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
                           f":b-adapt=0:threads=1{extra}"}


# -- the classes -------------------------------------------------------------------------


def _remux(source: Path, path: Path, fmt: str, rewrite) -> None:
    """Copy ``source``'s video packets into ``path`` (format ``fmt``) without re-encoding,
    ``rewrite(k, packet)`` changing each packet's timestamps in place (k: decode position)
    or returning a packet to write instead."""
    with av.open(str(source)) as src, av.open(str(path), "w", format=fmt) as out:
        vstream = src.streams.video[0]
        ostream = out.add_stream_from_template(vstream, opaque=True)
        k = 0
        for packet in src.demux(vstream):
            if packet.size == 0:
                continue
            packet = rewrite(k, packet) or packet
            packet.stream = ostream
            out.mux(packet)
            k += 1


def _h264_mp4(path: Path, n: int, bframes: int, gop: int) -> None:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = _x264(bframes=bframes, gop=gop)
        for i, rgb in enumerate(_frames(n)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)


def decode_times_as_pts(path: Path) -> None:
    """H.264 with B-frames in MP4 whose pts equal its dts (no ctts): the class of OpenCV's
    box.mp4. Players order frames by the decoder's output; the timestamps say nothing."""
    plain = path.with_suffix(".plain.mp4")
    _h264_mp4(plain, 40, bframes=3, gop=20)
    step = None

    def rewrite(k, packet):
        nonlocal step
        step = step or max(1, int(packet.duration or 512))
        packet.pts = packet.dts = k * step

    _remux(plain, path, "mp4", rewrite)
    plain.unlink()


def edit_list_tail(path: Path) -> None:
    """MP4 whose edit list ends before its last frame (as box.mp4's does): the hidden
    packet is decoded as a reference but never shown."""
    _h264_mp4(path, 30, bframes=2, gop=12)
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
    frames = _frames(36)
    gaps = np.tile([1, 2, 4, 1, 1, 2], 6)
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=50)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = _x264(bframes=2)
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
        small.options = _x264(bframes=2, gop=10)
        big = out.add_stream("libx264", rate=25)
        big.width, big.height, big.pix_fmt = 160, 128, "yuv420p"
        big.options = _x264(bframes=1, gop=8)
        a, b = _frames(24, 64, 96, seed=1), _frames(24, 128, 160, seed=2)
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
    frames = _frames(48)
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = _x264(bframes=2, gop=12, extra=":open-gop=1")
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)


def open_gop_hevc_mp4(path: Path) -> None:
    """HEVC with CRA keyframes and leading (RASL) pictures, x265's open GOP, in MP4."""
    frames = _frames(40)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx265", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "24",
                          "x265-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3"
                                         ":open-gop=1:log-level=error:pools=1:frame-threads=1"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)


def _simple(encoder: str, fmt: str, *, pix_fmt="yuv420p", size=(96, 128), n=30, gop=10,
            bframes=None, options=None):
    def write(path: Path) -> None:
        frames = _frames(n, *size)
        with av.open(str(path), "w", format=fmt) as out:
            stream = out.add_stream(encoder, rate=25)
            stream.width, stream.height, stream.pix_fmt = size[1], size[0], pix_fmt
            stream.codec_context.gop_size = gop
            if bframes is not None:
                stream.codec_context.max_b_frames = bframes
            if options:
                stream.options = dict(options)
            for i, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                if pix_fmt not in ("rgb24",):
                    frame = frame.reformat(format=pix_fmt)
                frame.pts = i
                for p in stream.encode(frame):
                    out.mux(p)
            for p in stream.encode(None):
                out.mux(p)
    write.__doc__ = f"{encoder} in {fmt}"
    return write


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


# -- MPEG-4 ASP with packed B-frames -------------------------------------------------------

_VOP = b"\x00\x00\x01\xb6"


class _Bits:
    def __init__(self, data: bytes, at: int = 0) -> None:
        self.data, self.bit = data, at * 8

    def read(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.bit >> 3]
            value = (value << 1) | ((byte >> (7 - (self.bit & 7))) & 1)
            self.bit += 1
        return value


def _time_increment_bits(data: bytes) -> int:
    """Bits of vop_time_increment, from the video object layer header in ``data``."""
    at = next(i for i in range(len(data) - 4)
              if data[i:i + 3] == b"\x00\x00\x01" and 0x20 <= data[i + 3] <= 0x2F)
    bits = _Bits(data, at + 4)
    bits.read(1)  # random_accessible_vol
    bits.read(8)  # video_object_type_indication
    if bits.read(1):  # is_object_layer_identifier
        bits.read(4 + 3)
    if bits.read(4) == 15:  # aspect_ratio_info: extended PAR
        bits.read(16)
    if bits.read(1):  # vol_control_parameters
        bits.read(2 + 1)
        if bits.read(1):  # vbv_parameters
            bits.read(79)
    bits.read(2)  # video_object_layer_shape (rectangular)
    bits.read(1)  # marker
    resolution = bits.read(16)
    return max(1, (resolution - 1).bit_length())


def _nvop(increment_bits: int, increment: int) -> bytes:
    """A not-coded P-VOP: the placeholder a DivX/Xvid encoder writes after a packed pair."""
    code = "01" + "0" + "1" + format(increment, f"0{increment_bits}b") + "1" + "0"
    code += "0" + "1" * ((8 - (len(code) + 1) % 8) % 8)  # stuffing to the byte boundary
    return _VOP + int(code, 2).to_bytes(len(code) // 8, "big")


def packed_bframes_avi(path: Path) -> None:
    """MPEG-4 ASP in AVI with packed B-frames, as DivX 5 and Xvid write them: each P-frame
    travels in one packet with the B-frame shown before it, and an N-VOP placeholder
    packet follows, so that every packet yields one frame in display order. The VOL
    carries the ``DivX503b1393p`` user data that tells decoders the stream is packed."""
    plain = path.with_suffix(".plain.avi")
    _simple("mpeg4", "avi", bframes=1, gop=12, n=36, options={"qmax": "4"})(plain)
    with av.open(str(plain)) as src:
        vstream = src.streams.video[0]
        template = [(bytes(p), p.is_keyframe, int(p.pict_type) if hasattr(p, "pict_type") else 0)
                    for p in src.demux(vstream) if p.size]
        extradata = vstream.codec_context.extradata
    first = template[0][0]
    bits = _time_increment_bits(extradata or first)
    user_data = b"\x00\x00\x01\xb2DivX503b1393p"
    vop_at = first.find(_VOP)
    packets = [(first[:vop_at] + user_data + first[vop_at:], True)]
    kinds = [_vop_kind(data) for data, _, _ in template]
    k = 1
    increment = 1
    while k < len(template):
        data, key, _ = template[k]
        if kinds[k] != "B" and k + 1 < len(template) and kinds[k + 1] == "B":
            packets.append((data + template[k + 1][0], key))  # anchor + the B shown before it
            packets.append((_nvop(bits, increment % (1 << bits)), False))
            k += 2
        else:
            packets.append((data, key))
            k += 1
        increment += 1
    with av.open(str(plain)) as src, av.open(str(path), "w", format="avi") as out:
        vstream = src.streams.video[0]
        ostream = out.add_stream_from_template(vstream, opaque=True)
        if extradata:
            ostream.codec_context.extradata = extradata[:extradata.find(_VOP)] + user_data \
                if _VOP in extradata else extradata + user_data
        for i, (data, key) in enumerate(packets):
            packet = av.Packet(data)
            packet.pts = packet.dts = i
            packet.time_base = vstream.time_base
            packet.is_keyframe = key
            packet.stream = ostream
            out.mux(packet)
    plain.unlink()


def _vop_kind(data: bytes) -> str:
    at = data.find(_VOP)
    return "IPBS"[data[at + 4] >> 6] if at >= 0 else "?"


GENERATORS["packed_bframes.avi"] = (packed_bframes_avi, {"exports": True})


# -- H.264 whose SPS declares no reorder delay -------------------------------------------


class _RbspReader(_Bits):
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
        stream.options = _x264(bframes=3, gop=16, extra=":b-pyramid=normal")
        for i, rgb in enumerate(_frames(48)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)

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
