"""Files laid out the way other tools write them, for tests and the demo (issue 11).

``write_packed_bframes_avi``: MPEG-4 ASP in AVI with packed B-frames, as DivX 5 and Xvid
write them. ``write_decode_times_as_pts``: H.264 with B-frames in MP4 whose pts are its
decode times, as OpenCV's video writer makes them. Both are real encodes through PyAV with
the packets rearranged or re-stamped, never re-encoded.
"""

from __future__ import annotations

from pathlib import Path

import av

from cvload.synthetic import translating_frames

__all__ = ["write_packed_bframes_avi", "write_decode_times_as_pts", "remux_video",
           "encode_simple", "encode_into", "write_h264_mp4", "moving_frames", "x264_options", "BitReader"]


def moving_frames(n: int, height: int = 96, width: int = 128, seed: int = 0, motion=(3, 1)):
    return translating_frames(n, height, width, motion=motion, seed=seed)


def x264_options(bframes=2, gop=12, extra=""):
    return {"preset": "veryfast", "crf": "20",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
                           f":b-adapt=0:threads=1{extra}"}


def remux_video(source: Path, path: Path, fmt: str, rewrite) -> None:
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


def encode_into(out, stream, frames, pix_fmt: str = "yuv420p") -> None:
    """Encode ``(T, H, W, 3)`` uint8 RGB ``frames`` (pts 0, 1, ...) into ``stream`` of
    ``out``, muxing every packet, then flush the encoder."""
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if pix_fmt != "rgb24":
            frame = frame.reformat(format=pix_fmt)
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def write_h264_mp4(path: Path, n: int, bframes: int, gop: int) -> None:
    """``n`` frames of moving texture, libx264 with ``bframes`` B-frames, in MP4."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = x264_options(bframes=bframes, gop=gop)
        encode_into(out, stream, moving_frames(n))


def write_decode_times_as_pts(path: str | Path) -> None:
    """H.264 with B-frames in MP4 whose pts equal its dts (no ctts): the class of OpenCV's
    box.mp4. Players order frames by the decoder's output; the timestamps say nothing."""
    path = Path(path)
    plain = path.with_suffix(".plain.mp4")
    write_h264_mp4(plain, 40, bframes=3, gop=20)
    step = None

    def rewrite(k, packet):
        nonlocal step
        step = step or max(1, int(packet.duration or 512))
        packet.pts = packet.dts = k * step

    remux_video(plain, path, "mp4", rewrite)
    plain.unlink()


def encode_simple(encoder: str, fmt: str, *, pix_fmt="yuv420p", size=(96, 128), n=30, gop=10,
                  bframes=None, options=None):
    """A writer ``write(path)`` of ``n`` frames encoded by ``encoder`` into ``fmt``."""
    def write(path: Path) -> None:
        frames = moving_frames(n, *size)
        with av.open(str(path), "w", format=fmt) as out:
            stream = out.add_stream(encoder, rate=25)
            stream.width, stream.height, stream.pix_fmt = size[1], size[0], pix_fmt
            stream.codec_context.gop_size = gop
            if bframes is not None:
                stream.codec_context.max_b_frames = bframes
            if options:
                stream.options = dict(options)
            encode_into(out, stream, frames, pix_fmt)
    write.__doc__ = f"{encoder} in {fmt}"
    return write


# -- MPEG-4 ASP with packed B-frames -------------------------------------------------------

_VOP = b"\x00\x00\x01\xb6"


class BitReader:
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
    bits = BitReader(data, at + 4)
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


def write_packed_bframes_avi(path: str | Path) -> None:
    """MPEG-4 ASP in AVI with packed B-frames, as DivX 5 and Xvid write them: each P-frame
    travels in one packet with the B-frame shown before it, and an N-VOP placeholder
    packet follows, so that every packet yields one frame in display order. The VOL
    carries the ``DivX503b1393p`` user data that tells decoders the stream is packed."""
    path = Path(path)
    plain = path.with_suffix(".plain.avi")
    encode_simple("mpeg4", "avi", bframes=1, gop=12, n=36, options={"qmax": "4"})(plain)
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


