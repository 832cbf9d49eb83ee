"""Decoded frames in presentation order, from a keyframe on.

:func:`presentation_frames` seeks to a keyframe the probe found, maps every decoded frame
to its index (by pts or by output position, as ``VideoInfo.frame_order`` says), and hands
frames out in index order even when the decoder returns them in another (a reorder
window). When a seek does not land where the index expects, it raises :class:`SeekMissed`
before handing out any frame, and the caller decodes from the start instead, which is
right by definition (the index is defined by sequential decoding).
"""

from __future__ import annotations

from typing import Iterator

import av

from cvload.errors import CorruptVideoError
from cvload.video._probe import VideoInfo

__all__ = ["SeekMissed", "presentation_frames", "REORDER_WINDOW"]

#: Frames held back at most while waiting for one the decoder has not returned yet.
REORDER_WINDOW = 32


class SeekMissed(Exception):
    """The seek did not land on the keyframe asked for; decode from the start instead."""


def presentation_frames(container, vstream, info: VideoInfo, gop: int, *, seek: bool,
                        name: str) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield ``(index, frame)`` for every frame from keyframe ``gop`` on, index increasing.

    A frame the decoder never returns leaves a gap (the caller finds it missing). Raises
    :class:`SeekMissed` (before yielding anything) when the seek landed elsewhere, and
    :class:`CorruptVideoError` naming the frame and byte offset where decoding failed.
    """
    key_index = info.keyframes[gop]
    target = info.keyframe_seek[gop] if gop < len(info.keyframe_seek) else None
    seeking = seek and key_index > 0 and target is not None
    if seeking:
        container.seek(target, stream=vstream, backward=True, any_frame=False)
    by_pts = info.frame_order == "pts"
    pts_index = info.pts_index if by_pts else {}
    counter = key_index if seeking else 0  # output position (frame_order == "decode")
    expected = key_index
    pending: dict[int, av.VideoFrame] = {}
    first = True
    leading = 0
    landed = not (seeking and not by_pts)  # decode order: check where the demuxer landed
    position = -1
    try:
        for packet in container.demux(vstream):
            if packet.size:
                position = packet.pos if packet.pos is not None else -1
                if not landed:
                    at = packet.dts if packet.dts is not None else packet.pts
                    if at != target:
                        raise SeekMissed()  # frames would be counted from another packet
                    landed = True
            for frame in packet.decode():
                if by_pts:
                    index = pts_index.get(frame.pts)
                    if index is None:
                        continue  # not a frame of the index (never yielded sequentially)
                else:
                    if first and seeking and int(frame.pict_type) in (2, 3):
                        # B-frames shown before the keyframe but decoded after it (their
                        # past reference lies before the seek): not this GOP's frames
                        leading += 1
                        if leading > REORDER_WINDOW:
                            raise SeekMissed()
                        continue
                    index = counter
                    counter += 1
                first = False
                if index == expected and not pending:  # in order: the usual case
                    expected += 1
                    yield index, frame
                    del frame
                    continue
                if index < expected or index in pending:
                    continue
                pending[index] = frame
                del frame
                while expected in pending:
                    yield expected, pending.pop(expected)
                    expected += 1
                if len(pending) > REORDER_WINDOW:
                    if seeking and expected == key_index:
                        raise SeekMissed()  # the keyframe never came: landed after it
                    expected = min(pending)  # a frame the decoder skipped: a gap
                    while expected in pending:
                        yield expected, pending.pop(expected)
                        expected += 1
    except av.error.FFmpegError as err:
        at = f" (packet at byte {position})" if position >= 0 else ""
        raise CorruptVideoError(f"undecodable packet at frame {expected}{at}: {err}",
                                source=name, frame=expected) from err
    if seeking and expected == key_index and pending:
        raise SeekMissed()
    for index in sorted(pending):
        yield index, pending.pop(index)
