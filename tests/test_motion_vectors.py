"""Motion vectors from the bitstream: golden equality, determinism, fields, bad input."""

import numpy as np
import pytest

import cvload
from cvload.errors import CorruptVideoError, EmptyVideoError, NoMotionVectorsError
from tests import shared_videos as sv

GOLDEN = ["mv_extractor/vid_h264.mp4", "mv_extractor/vid_mpeg4_part2.mp4",
          "mv_extractor/vid_h264.264"]


@pytest.mark.needs_shared
@pytest.mark.parametrize("name", GOLDEN)
def test_vectors_equal_reference_for_every_frame(name):
    entry = sv.get(name)
    ref = sv.reference_mvs(name)
    frames = list(cvload.iter_motion_vectors(entry.path))
    n = len(ref["counts"])
    # the raw .264 stream flushes one more frame than the reference recorded
    assert len(frames) == (n + 1 if name.endswith(".264") else n)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert "".join(f.frame_type for f in frames[:n]) == "".join(ref["frame_types"])
    offsets = np.concatenate([[0], np.cumsum(ref["counts"])])
    for i, f in enumerate(frames[:n]):
        assert f.vectors.dtype == np.int32 and f.vectors.shape == (ref["counts"][i], 10)
        np.testing.assert_array_equal(f.vectors, ref["mvs"][offsets[i]:offsets[i + 1]],
                                      err_msg=f"{name} frame {i}")


@pytest.mark.needs_shared
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_b_frame_vectors_identical_whatever_the_threads(threads):
    entry = sv.get("mv_extractor/vid_h264.264")
    ref = sv.reference_mvs(entry.name)
    ours = np.concatenate([f.vectors for f in cvload.iter_motion_vectors(entry.path,
                                                                         threads=threads)][:336])
    np.testing.assert_array_equal(ours, ref["mvs"])


def test_sources_path_bytes_and_file_object_agree(video_factory):
    v = video_factory(bframes=2, num_frames=16)
    data = open(v.path, "rb").read()
    by_path = [f.vectors for f in cvload.iter_motion_vectors(v.path)]
    by_bytes = [f.vectors for f in cvload.iter_motion_vectors(data)]
    with open(v.path, "rb") as fh:
        by_file = [f.vectors for f in cvload.iter_motion_vectors(fh)]
    for a, b, c in zip(by_path, by_bytes, by_file):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


@pytest.mark.needs_shared
def test_stream_selection_default_is_best_not_index_0():
    entry = sv.get("torchcodec/nasa_13013.mp4")
    assert cvload.probe(entry.path).stream_index == 3  # 480x270, FFmpeg's best
    first = next(iter(cvload.iter_motion_vectors(entry.path, stream=0)))
    assert first.frame_type == "I"
    with pytest.raises(cvload.errors.InvalidArgumentError, match="Video streams are: 0, 3"):
        cvload.probe(entry.path, stream=1)  # audio


@pytest.mark.parametrize("name", ["libvpl/cars_320x240.h265", "torchcodec/av1_video.mkv",
                                  "libwebm/bbb_480p_vp9_opus_1second.webm"])
@pytest.mark.needs_shared
def test_codecs_without_vectors_raise_with_way_out(name):
    with pytest.raises(NoMotionVectorsError, match="mv_source='estimate'"):
        next(iter(cvload.iter_motion_vectors(sv.get(name).path)))


@pytest.mark.needs_shared
def test_corrupt_file_names_frame_reached():
    with pytest.raises(CorruptVideoError) as info:
        list(cvload.iter_motion_vectors(sv.get("decord/corrupted.mp4").path))
    assert info.value.frame == 28 and "corrupted.mp4" in str(info.value)


@pytest.mark.needs_shared
def test_fuzzed_vp9_fails_on_first_packet():
    with pytest.raises(CorruptVideoError) as info:
        cvload.read_clip(sv.get("libwebm/invalid_vp9_bitstream-bug_1417.webm").path, start=0,
                         num_frames=1, streams=("rgb",))
    assert info.value.frame == 0


@pytest.mark.needs_shared
def test_zero_frame_file_without_ffmpeg_error_raises():
    path = sv.get("libwebm/fixed_lacing_bad_lace_size.mkv").path
    with pytest.raises(EmptyVideoError, match="fixed_lacing"):
        cvload.probe(path)
    with pytest.raises(EmptyVideoError):
        list(cvload.iter_motion_vectors(path))
    with pytest.raises(EmptyVideoError):
        cvload.read_clip(path, start=0, num_frames=1)


def test_motion_field_recovers_known_translation(video_factory):
    v = video_factory(motion=(3, -2), num_frames=8, gop=8, width=160, height=128)
    fields = [cvload.motion_field(f.vectors, 128, 160, grid=4)
              for f in cvload.iter_motion_vectors(v.path) if f.frame_type == "P"]
    stack = np.stack(fields)
    assert stack.shape == (7, 32, 40, 4) and stack.dtype == np.float32
    assert np.median(stack[..., 0]) == -3 and np.median(stack[..., 1]) == 2
    assert not stack[..., 2:].any()  # P-frames have no future vectors


def test_motion_field_subpel_and_coverage():
    vectors = np.array([[-1, 16, 16, 0, 0, 8, 8, -3, 1, 4]], np.int32)  # quarter-pel
    field = cvload.motion_field(vectors, 20, 20, grid=4)
    assert field.shape == (5, 5, 4)
    np.testing.assert_allclose(field[:4, :4, :2], np.broadcast_to([-0.75, 0.25], (4, 4, 2)))
    assert not field[4].any() and not field[:, 4].any()
    with pytest.raises(cvload.errors.InvalidArgumentError):
        cvload.motion_field(vectors[:, :9], 20, 20)


def test_motion_field_into_reused_buffer():
    vectors = np.array([[-1, 16, 16, 0, 0, 8, 8, -3, 1, 4]], np.int32)
    buffer = np.full((5, 5, 4), 7.0, np.float32)
    out = cvload.motion_field(vectors, 20, 20, grid=4, out=buffer)
    assert out is buffer and not buffer[4].any()  # zeroed before painting
    np.testing.assert_array_equal(out, cvload.motion_field(vectors, 20, 20, grid=4))
    with pytest.raises(cvload.errors.InvalidArgumentError, match="shape"):
        cvload.motion_field(vectors, 20, 20, grid=4, out=np.zeros((4, 4, 4), np.float32))


@pytest.mark.parametrize("grid", [1, 2, 3, 4, 5, 8, 16])
def test_motion_field_equals_per_cell_reference(grid):
    """The kernel (shifts for powers of two, divisions otherwise) against the definition:
    a cell takes the last vector whose block contains the cell's centre."""
    rng = np.random.default_rng(grid)
    height, width, n = 37, 53, 60
    sizes = rng.choice([4, 8, 16], size=(n, 2))
    vectors = np.stack([
        rng.choice([-1, 1], n), sizes[:, 0], sizes[:, 1], np.zeros(n), np.zeros(n),
        rng.integers(-10, width + 10, n), rng.integers(-10, height + 10, n),
        rng.integers(-64, 64, n), rng.integers(-64, 64, n), rng.choice([0, 1, 2, 4], n),
    ], axis=1).astype(np.int32)
    rows, cols = -(-height // grid), -(-width // grid)
    expected = np.zeros((rows, cols, 4), np.float32)
    centre_y = np.arange(rows) * grid + grid // 2
    centre_x = np.arange(cols) * grid + grid // 2
    for source, w, h, _, _, x, y, mx, my, scale in vectors:
        if scale == 0:
            continue
        left, top = x - (w >> 1), y - (h >> 1)
        inside = (((centre_y >= top) & (centre_y < top + h))[:, None]
                  & ((centre_x >= left) & (centre_x < left + w))[None, :])
        channel = 0 if source < 0 else 2
        expected[inside, channel] = np.float32(mx) * (np.float32(1) / np.float32(scale))
        expected[inside, channel + 1] = np.float32(my) * (np.float32(1) / np.float32(scale))
    out = np.full((rows, cols, 4), np.nan, np.float32)
    np.testing.assert_array_equal(
        cvload.motion_field(vectors, height, width, grid=grid, out=out), expected)


def _live_video_frames() -> int:
    import gc

    import av

    return sum(type(o) is av.VideoFrame for o in gc.get_objects())


def test_decoded_frames_are_freed_as_soon_as_their_vectors_are_read(video_factory):
    """Reading vectors must not tie a frame into a reference cycle (PyAV's
    ``frame.side_data`` does): the decoder's picture buffers are reused only when frames
    are freed, so with the cyclic collector off no frame may stay behind."""
    import gc

    v = video_factory(bframes=2, num_frames=40)
    info = cvload.probe(v.path)
    gc.collect()
    before = _live_video_frames()
    gc.disable()
    try:
        it = cvload.iter_motion_vectors(v.path)
        got = [next(it) for _ in range(30)]
        during = _live_video_frames() - before
        del it
        clip = cvload.read_clip(v.path, start=0, num_frames=24, streams=("mv",), info=info)
        after = _live_video_frames() - before
    finally:
        gc.enable()
    assert sum(len(f.vectors) for f in got) > 0 and clip.mv.shape[0] == 24
    assert during <= 3, f"{during} decoded frames still alive after reading 30"
    assert after == 0, f"{after} decoded frames left behind by read_clip"


@pytest.mark.needs_shared
def test_record_kernel_equals_pyav_structured_records(monkeypatch):
    """The compiled-in AVMotionVector layout against PyAV's own description of it."""
    from cvload.video import _side_data

    path = sv.get("mv_extractor/vid_h264.264").path
    fast = [f.vectors for f in cvload.iter_motion_vectors(path)]
    monkeypatch.setattr(_side_data, "_PYAV_LAYOUT_MATCHES", False)  # PyAV's structured array
    slow = [f.vectors for f in cvload.iter_motion_vectors(path)]
    assert len(fast) == len(slow) and sum(map(len, fast)) > 10000
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
