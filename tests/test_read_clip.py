"""read_clip: seeking, requested streams only, residuals, CoViAR accumulation, estimation."""

import av
import numpy as np
import pytest

import cvload
import cvload_ext
from tests.mc_reference import assert_p_residuals_exact, reference_prediction
from cvload.errors import CorruptVideoError, InvalidArgumentError, NoMotionVectorsError
from cvload.synthetic import translating_frames
from cvload.video import read_frames
from tests import shared_videos as sv


def _all_rgb(path):
    return cvload.read_clip(path, start=0, num_frames=cvload.probe(path).num_frames,
                            streams=("rgb",)).rgb


@pytest.mark.parametrize("bframes, suffix", [(0, ".mp4"), (2, ".mp4"), (2, ".264")])
def test_seek_returns_the_same_frames_as_decoding_from_the_start(video_factory, bframes, suffix):
    v = video_factory(bframes=bframes, suffix=suffix, num_frames=36, gop=12)
    full = _all_rgb(v.path)
    clip = cvload.read_clip(v.path, start=14, num_frames=5, step=3, streams=("rgb",))
    np.testing.assert_array_equal(clip.indices, [14, 17, 20, 23, 26])
    np.testing.assert_array_equal(clip.rgb, full[clip.indices])
    np.testing.assert_array_equal(clip.gop_ids, [1, 1, 1, 1, 2])
    assert clip.mv is None and clip.residual is None and clip.iframe is None


def test_only_requested_streams_and_documented_shapes(video_factory):
    v = video_factory(bframes=2, num_frames=24, gop=12, width=160, height=128)
    clip = cvload.read_clip(v.path, start=10, num_frames=4)
    assert clip.rgb.shape == (4, 128, 160, 3) and clip.rgb.dtype == np.uint8
    assert clip.mv.shape == (4, 32, 40, 4) and clip.mv.dtype == np.float32
    assert clip.residual.shape == (4, 128, 160, 3) and clip.residual.dtype == np.int16
    assert clip.iframe.shape == (2, 128, 160, 3) and list(clip.iframe_gops) == [0, 1]
    full = _all_rgb(v.path)
    np.testing.assert_array_equal(clip.iframe, full[[0, 12]])
    assert "rgb=(4, 128, 160, 3) uint8" in repr(clip)
    mv_only = cvload.read_clip(v.path, start=10, num_frames=4, streams=("mv",))
    assert mv_only.rgb is None and mv_only.residual is None
    np.testing.assert_array_equal(mv_only.mv, clip.mv)  # loop filter skip changes no vector


@pytest.fixture
def pulled(monkeypatch):
    """The presentation indices decoding hands to cvload, in order (a counting wrapper
    around the one generator every clip read takes its frames from)."""
    from cvload.video import _decode

    seen: list[int] = []
    real = _decode.presentation_frames

    def counting(*args, **kwargs):
        for index, frame in real(*args, **kwargs):
            seen.append(index)
            yield index, frame

    monkeypatch.setattr(_decode, "presentation_frames", counting)
    return seen


@pytest.mark.parametrize("bframes", [0, 2])
@pytest.mark.parametrize("streams", [("rgb", "mv"), ("rgb", "residual")])
def test_decoding_stops_at_the_last_frame_needed(video_factory, pulled, bframes, streams):
    """From the clip's keyframe to its last frame and not one frame more, except the
    future reference a residual of a B-frame predicts from."""
    from tests.mc_reference import pyav_frames_and_vectors

    v = video_factory(bframes=bframes, num_frames=36, gop=12)
    _, kinds, _ = pyav_frames_and_vectors(v.path)
    for start, count in ((14, 5), (13, 4), (24, 1), (0, 12)):
        pulled.clear()
        clip = cvload.read_clip(v.path, start=start, num_frames=count, streams=streams)
        last = start + count - 1
        expected = last
        if "residual" in streams and kinds[last] == "B":
            expected = next(i for i in range(last + 1, len(kinds)) if kinds[i] in "IP")
        assert len(clip) == count and pulled[0] == start // 12 * 12, (start, pulled)
        assert max(pulled) == expected, (start, count, kinds, pulled)


@pytest.mark.needs_shared
def test_decodes_no_further_than_needed():
    path = sv.get("decord/corrupted.mp4").path  # decoding fails after 28 good frames
    clip = cvload.read_clip(path, start=0, num_frames=10)
    assert len(clip) == 10
    with pytest.raises(CorruptVideoError) as info:
        cvload.read_clip(path, start=30, num_frames=4, streams=("rgb",))
    assert info.value.frame is not None and "corrupted.mp4" in str(info.value)


def test_motion_compensation_kernel_is_exact_on_true_motion():
    frames = translating_frames(2, 64, 64, motion=(3, -2), seed=4)
    rows = []
    for by in range(0, 64, 16):
        for bx in range(0, 64, 16):  # half-pel encoded true motion (-3, +2)
            rows.append([-1, 16, 16, 0, 0, bx + 8, by + 8, -6, 4, 2])
    vectors = np.array(rows, np.int32)
    out = np.empty_like(frames[1])
    cvload_ext.motion_compensate(frames[0], frames[0], vectors, np.empty((64, 64), np.uint8), out)
    np.testing.assert_array_equal(out[4:-4, 4:-4], frames[1][4:-4, 4:-4])


def test_motion_compensation_subpel_and_bipred_arithmetic():
    ref0 = np.zeros((32, 32, 1), np.uint8)
    ref0[:, 1::2] = 100  # alternating columns: a half-pel shift averages neighbours
    ref1 = np.full((32, 32, 1), 51, np.uint8)
    out = np.empty_like(ref0)
    count = np.empty((32, 32), np.uint8)
    half_pel = np.array([[-1, 16, 16, 0, 0, 8, 8, 1, 0, 2]], np.int32)  # +0.5 px in x
    cvload_ext.motion_compensate(ref0, ref1, half_pel, count, out)
    assert set(np.unique(out[0:16, 0:16])) == {50}  # (0 + 100 + 1) // 2
    np.testing.assert_array_equal(out[16:], ref0[16:])  # no block: zero motion from ref0
    bipred = np.array([[-1, 16, 16, 0, 0, 8, 8, 1, 0, 2], [1, 16, 16, 0, 0, 8, 8, 0, 0, 4]],
                      np.int32)
    cvload_ext.motion_compensate(ref0, ref1, bipred, count, out)
    assert set(np.unique(out[0:16, 0:16])) == {51}  # (50 + 51 + 1) >> 1


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("scales", [(4,), (2,), (1, 2, 3, 4)])
def test_motion_compensation_kernel_equals_definition(aligned, scales):
    """Vectorised rows inside the frame, clamped samples at the edges, 4x4 coverage cells
    (or per pixel when a block edge is not a multiple of 4), scales that are not powers
    of two: all equal the pixel-by-pixel definition."""
    rng = np.random.default_rng(len(scales) * 2 + aligned)
    height, width = 52, 72
    ref0 = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    ref1 = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    n = 80
    sizes = rng.choice([4, 8, 16, 32], size=(n, 2))  # 32: the edge patch must grow
    step = 4 if aligned else 1
    left = rng.integers(-2, width // step, n) * step
    top = rng.integers(-2, height // step, n) * step
    vectors = np.stack([
        rng.choice([-1, 1], n), sizes[:, 0], sizes[:, 1], np.zeros(n), np.zeros(n),
        left + sizes[:, 0] // 2, top + sizes[:, 1] // 2,
        rng.integers(-40, 40, n), rng.integers(-40, 40, n), rng.choice(scales, n),
    ], axis=1).astype(np.int32)
    vectors = np.concatenate([vectors, vectors[::3] * [-1, 1, 1, 1, 1, 1, 1, 1, 1, 1]])  # bi-pred
    out = np.empty_like(ref0)
    cvload_ext.motion_compensate(ref0, ref1, vectors, np.empty((height, width), np.uint8), out)
    np.testing.assert_array_equal(out, reference_prediction(ref0, ref1, vectors))


@pytest.mark.parametrize("bframes", [0, 2])
def test_residuals_reconstruct_exactly_and_beat_frame_differences(video_factory, bframes):
    v = video_factory(bframes=bframes, num_frames=24, gop=24, motion=(3, 1), width=160,
                      height=128)
    clip = cvload.read_clip(v.path, start=1, num_frames=12, streams=("rgb", "residual"))
    full = _all_rgb(v.path).astype(np.int16)
    # independently of cvload: plain PyAV frames and vectors, and block motion compensation
    # by its definition; every P-frame's residual is its frame minus that prediction
    checked = assert_p_residuals_exact(v.path, clip)
    assert checked >= (11 if bframes == 0 else 3), checked
    mc = np.abs(clip.residual).mean(axis=(1, 2, 3))
    naive = np.abs(full[1:13] - full[0:12]).mean(axis=(1, 2, 3))
    assert np.all(mc < 0.6 * naive), (mc, naive)


def test_iframe_residual_is_zero(video_factory):
    v = video_factory(num_frames=24, gop=12)
    clip = cvload.read_clip(v.path, start=12, num_frames=2, streams=("residual",))
    assert clip.frame_types == "IP" and not clip.residual[0].any() and clip.residual[1].any()


def test_accumulated_motion_traces_back_to_the_iframe(video_factory):
    v = video_factory(num_frames=12, gop=12, motion=(2, 1), width=160, height=128)
    clip = cvload.read_clip(v.path, start=0, num_frames=8, accumulate=True)
    assert clip.mv.shape == (8, 32, 40, 2) and clip.accumulate
    for k in range(8):  # frame k lies k*(2, 1) px from the I-frame
        centre = clip.mv[k, 8:-8, 8:-8].reshape(-1, 2)
        np.testing.assert_allclose(np.median(centre, axis=0), [-2 * k, -k], atol=0.01)
    # residual against the warped I-frame is far below the raw difference to the I-frame
    rgb = clip.rgb.astype(np.int16)
    interior = (slice(None), slice(24, -24), slice(24, -24))
    assert np.abs(clip.residual[7][interior[1:]]).mean() < 0.5 * np.abs(rgb[7] - rgb[0])[interior[1:]].mean()


def test_estimated_motion_recovers_synthetic_translation(video_factory):
    v = video_factory(codec="hevc", bframes=2, motion=(-5, 3), num_frames=12, gop=12,
                      width=192, height=128)
    with pytest.raises(NoMotionVectorsError):
        cvload.read_clip(v.path, start=0, num_frames=4, streams=("mv",))
    for mode in ("estimate", "auto"):
        clip = cvload.read_clip(v.path, start=2, num_frames=6, streams=("mv",), mv_source=mode,
                                mv_grid=16)
        assert clip.mv_estimated
        inner = clip.mv[:, 1:-1, 1:-1, :2].reshape(-1, 2)
        assert (np.abs(inner - [5, -3]).max(axis=1) == 0).mean() > 0.95


def test_estimated_motion_searches_at_least_16_pixels():
    frames = translating_frames(2, 128, 128, motion=(15, -14), seed=9)
    luma = frames.mean(axis=3).astype(np.uint8)
    vectors = cvload.video.estimate_vectors(luma[1], luma[0], block=16, search=16)
    inner = vectors.reshape(8, 8, 10)[2:-2, 2:-2].reshape(-1, 10)
    assert np.all(inner[:, 7] == -15) and np.all(inner[:, 8] == 14)


@pytest.mark.needs_shared
def test_estimate_on_hevc_agrees_with_its_h264_twin():
    """cars_320x240.h265 exports no vectors; estimates match what the H.264 twin exports."""
    h264 = cvload.read_clip(sv.get("libvpl/cars_320x240.h264").path, start=0, num_frames=30,
                            streams=("mv",), mv_grid=16)
    hevc_path = sv.get("libvpl/cars_320x240.h265").path
    est = cvload.read_clip(hevc_path, start=0, num_frames=30, streams=("mv",), mv_grid=16,
                           mv_source="auto")
    assert est.mv_estimated and not h264.mv_estimated
    keys = set(cvload.probe(hevc_path).keyframes)
    last_ref, agreements = 0, []
    for i, kind in enumerate(h264.frame_types):
        distance = i - last_ref
        if kind != "B":
            last_ref = i
        if i == 0 or i in keys or distance > 2:
            continue
        exported = h264.mv[i, ..., :2]
        has = np.abs(exported).sum(-1) > 0
        per_frame = exported[has] / distance  # the twin's vectors span `distance` frames
        err = np.linalg.norm(per_frame - est.mv[i, ..., :2][has], axis=-1)
        agreements.append((err <= 1.5).mean())
    assert len(agreements) >= 15 and np.mean(agreements) > 0.8


def test_size_resizes_and_scales_vectors(video_factory):
    v = video_factory(motion=(4, 2), num_frames=8, gop=8, width=160, height=128)
    clip = cvload.read_clip(v.path, start=1, num_frames=3, size=(64, 80))
    assert clip.rgb.shape == (3, 64, 80, 3) and clip.residual.shape == (3, 64, 80, 3)
    assert clip.mv.shape == (3, 16, 20, 4) and clip.iframe.shape == (1, 64, 80, 3)
    assert np.median(clip.mv[..., 0]) == -2 and np.median(clip.mv[..., 1]) == -1


def test_invalid_requests_are_explained(video_factory):
    v = video_factory(num_frames=24)
    with pytest.raises(InvalidArgumentError, match="run past the end"):
        cvload.read_clip(v.path, start=20, num_frames=8)
    with pytest.raises(InvalidArgumentError, match="Supported values are 'rgb'"):
        cvload.read_clip(v.path, start=0, num_frames=2, streams=("flow",))
    with pytest.raises(InvalidArgumentError, match="mv_source"):
        cvload.read_clip(v.path, start=0, num_frames=2, mv_source="flow")
    with pytest.raises(InvalidArgumentError, match="non-decreasing"):
        read_frames(v.path, [5, 3])


def test_duplicate_timestamps_fall_back_to_decode_order(tmp_path):
    """A mux whose packets all carry pts 0 still reads every frame, in output order."""
    from fractions import Fraction

    import av

    from cvload.synthetic import translating_frames

    frames = translating_frames(20, 64, 96, motion=(2, 0), seed=5)
    path = tmp_path / "zero_pts.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.options = {"x264-params": "bframes=2:keyint=10:scenecut=0"}
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 12800)  # rescales to pts 0 for all
            for packet in s.encode(f):
                out.mux(packet)
        for packet in s.encode(None):
            out.mux(packet)
    info = cvload.probe(path)
    assert not info.has_timestamps and info.num_frames == 20 and info.keyframes == (0, 10)
    clip = cvload.read_clip(path, start=11, num_frames=6, streams=("rgb", "mv"))
    assert len(clip) == 6 and clip.frame_types[0] in "PB"
    # the frames are the right ones: closest to the source frames they were encoded from
    for k, idx in enumerate(clip.indices):
        errors = [np.abs(clip.rgb[k].astype(int) - f.astype(int)).mean() for f in frames]
        assert int(np.argmin(errors)) == idx


@pytest.mark.parametrize("keep", [0.3, 0.7])
def test_truncated_file_raises_naming_source_and_frame(video_factory, tmp_path, keep):
    v = video_factory(bframes=2, num_frames=36, gop=12, suffix=".mkv")  # no index at the end
    data = open(v.path, "rb").read()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * keep)])
    info = cvload.probe(cut)
    assert info.num_frames < 36  # only the packets that are there
    with pytest.raises(InvalidArgumentError, match="run past the end"):
        cvload.read_clip(cut, start=30, num_frames=4)
    clip = cvload.read_clip(cut, start=0, num_frames=info.num_frames - 1, streams=("mv",))
    assert len(clip) == info.num_frames - 1
    ds = cvload.VideoDataset([cut], num_frames=40, handler="skip")
    item = ds[0]  # a clip longer than the video repeats its last frame
    assert item["rgb"].shape[0] == 40 and ds.skipped.total == 0


def test_frames_with_padded_rows(video_factory):
    """170 RGB pixels are 510 bytes in rows of 512: PyAV hands back strided views, which
    every stream, accumulation, estimation and layout must take."""
    v = video_factory(width=170, height=98, num_frames=16, bframes=2, gop=16)
    clip = cvload.read_clip(v.path, start=2, num_frames=8)
    with av.open(v.path) as container:
        pyav = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    np.testing.assert_array_equal(clip.rgb, np.stack(pyav[2:10]))
    assert assert_p_residuals_exact(v.path, clip) >= 2 and clip.residual.any()
    assert clip.mv.shape == (8, 25, 43, 4) and clip.iframe.shape == (1, 98, 170, 3)
    accumulated = cvload.read_clip(v.path, start=2, num_frames=8, accumulate=True)
    assert accumulated.residual.shape == (8, 98, 170, 3)
    assert accumulated.mv.shape[:3] == clip.mv.shape[:3]  # motion_field's cells (L0 only)
    estimated = cvload.read_clip(v.path, start=2, num_frames=8, streams=("mv", "residual"),
                                 mv_source="estimate")
    assert estimated.mv_estimated and estimated.residual.shape == (8, 98, 170, 3)
    for layout in ("mvcgc", "imrnet", "coviar"):
        sample = cvload.VideoDataset([v.path], layout=layout, num_frames=2)[0]
        assert all(t.shape[-1] in (170, 43) for k, t in sample.items()
                   if k in ("rgb", "mv", "residual", "iframe")), (layout, sample.keys())


def test_one_options_object_for_every_reader(video_factory):
    """read_clip's keywords are the fields of ReadOptions: a whole options object reads
    the same clip, keywords override its fields, and bad values are refused up front."""
    v = video_factory(bframes=2, num_frames=24, gop=12)
    options = cvload.ReadOptions(streams=("rgb", "mv"), size=32, mv_grid=8)
    assert options.size == (32, 32) and options.wants_motion
    by_keywords = cvload.read_clip(v.path, start=3, num_frames=4, streams=("rgb", "mv"),
                                   size=32, mv_grid=8)
    by_options = cvload.read_clip(v.path, start=3, num_frames=4, options=options)
    np.testing.assert_array_equal(by_keywords.rgb, by_options.rgb)
    np.testing.assert_array_equal(by_keywords.mv, by_options.mv)
    assert by_options.rgb.shape == (4, 32, 32, 3) and by_options.residual is None
    overridden = read_frames(v.path, [3, 4], options=options, streams=("rgb",))
    assert overridden.mv is None and overridden.rgb.shape == (2, 32, 32, 3)
    decoder = cvload.video.ClipDecoder("mvcgc", num_frames=4, size=32, mv_source="auto")
    assert decoder.options == cvload.ReadOptions(size=(32, 32), mv_source="auto")
    for bad in (dict(streams=("rgb", "flow")), dict(mv_source="optical"), dict(size=0)):
        with pytest.raises(InvalidArgumentError):
            cvload.ReadOptions(**bad)
