"""The fixture factory writes real encoded videos whose structure and motion are as asked."""

import av
import numpy as np
import pytest

import cvload
from cvload.synthetic import translating_frames, write_video


def test_frames_translate_exactly():
    frames = translating_frames(5, 32, 48, motion=(3, -2), seed=1)
    assert frames.shape == (5, 32, 48, 3) and frames.dtype == np.uint8
    # pixel (y, x) of frame t equals pixel (y + 2, x - 3) ... i.e. content moved by (+3, -2)
    np.testing.assert_array_equal(frames[1][0:28, 3:48], frames[0][2:30, 0:45])


@pytest.mark.parametrize(
    "codec, suffix, bframes",
    [("h264", ".mp4", 0), ("h264", ".mp4", 2), ("h264", ".264", 2), ("mpeg4", ".mp4", 2),
     ("mpeg4", ".avi", 0), ("hevc", ".mp4", 2), ("hevc", ".h265", 0)],
)
def test_structure_as_requested(video_factory, codec, suffix, bframes):
    v = video_factory(codec=codec, suffix=suffix, bframes=bframes, num_frames=24, gop=8)
    info = cvload.probe(v.path)
    assert info.codec == codec and (info.width, info.height) == (128, 96)
    assert info.num_frames == 24
    if codec == "mpeg4" and bframes:
        # FFmpeg's MPEG-4 encoder codes the very last frame of a B-frame stream as an I-frame
        assert info.keyframes == (0, 8, 16, 23) and info.gop_lengths == (8, 8, 7, 1)
    else:
        assert info.keyframes == (0, 8, 16) and info.gop_lengths == (8, 8, 8)
    assert info.has_b_frames == (bframes > 0)
    assert info.has_timestamps == (suffix not in (".264", ".h265"))


def test_deterministic_bytes(tmp_path):
    a = write_video(tmp_path / "a.mp4", bframes=2, seed=3)
    b = write_video(tmp_path / "b.mp4", bframes=2, seed=3)
    assert open(a.path, "rb").read() == open(b.path, "rb").read()


@pytest.mark.parametrize("motion", [(2, 1), (-3, 0), (0, 2)])
def test_encoder_recovers_known_motion(video_factory, motion):
    """The exported P-frame vectors point back by the known translation (ground truth)."""
    v = video_factory(codec="h264", motion=motion, num_frames=12, gop=12, width=160, height=128)
    with av.open(v.path) as c:
        s = c.streams.video[0]
        s.codec_context.options = {"flags2": "+export_mvs"}
        offsets = []
        for frame in c.decode(s):
            mvs = frame.side_data.get("MOTION_VECTORS")
            if mvs is None:
                continue
            a = mvs.to_ndarray()
            a = a[a["source"] < 0]
            offsets.append(np.stack([a["motion_x"] / a["motion_scale"],
                                     a["motion_y"] / a["motion_scale"]], 1))
    offsets = np.concatenate(offsets)
    assert np.allclose(np.median(offsets, axis=0), [-motion[0], -motion[1]])
    # most blocks carry exactly the true motion
    exact = np.all(np.isclose(offsets, [-motion[0], -motion[1]]), axis=1).mean()
    assert exact > 0.6


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(cvload.errors.InvalidArgumentError, match="Supported values"):
        write_video(tmp_path / "x.mp4", codec="prores")
    with pytest.raises(cvload.errors.InvalidArgumentError, match="even"):
        write_video(tmp_path / "x.mp4", width=33)
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
