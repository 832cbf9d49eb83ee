"""Decoding in the compressed domain against its baselines (issue: on-the-fly decoding).

Groups, each with ratios against its baseline measured in the same run:
- decode:  decode_only (FFmpeg's floor: decode, no conversion) vs full RGB decode with PyAV
           vs MV-only (cvload.iter_motion_vectors) vs rasterising those vectors.
- layouts: an mvcgc clip and an imrnet clip vs decoding the same frames to RGB.
- motion:  MV-only vs estimated motion (block matching, HEVC) vs OpenCV Farneback flow.
All decoding uses slice threading (frame threading corrupts exported B-frame vectors).
"""

from __future__ import annotations

import itertools

import av
import numpy as np
import pytest

import cvload
from benchmarks.conftest import record

FRAMES = 96  # frames per measurement; all methods see the same frames
VIDEOS = ["h264_320x240_B", "h264_640x480_B", "golden_720p_P"]


def _path(bench_videos, name):
    if name not in bench_videos:
        pytest.skip(f"{name} needs ../shared/videos")
    return bench_videos[name]


def _decode(path, *, rgb: str | None, frames: int = FRAMES) -> int:
    """rgb: None (decode only), "default" (frame.to_ndarray as usually written, which lets
    swscale start threads per frame) or "threads1" (single-threaded conversion, as cvload)."""
    with av.open(path) as c:
        s = c.streams.video[0]
        s.codec_context.thread_type = "SLICE"
        s.codec_context.thread_count = 1
        n = 0
        for frame in itertools.islice(c.decode(s), frames):
            if rgb == "default":
                frame.to_ndarray(format="rgb24")
            elif rgb == "threads1":
                frame.to_ndarray(format="rgb24", threads=1)
            n += 1
    return n


def _mv_only(path, frames: int = FRAMES) -> list:
    return [f.vectors for f in itertools.islice(cvload.iter_motion_vectors(path), frames)]


@pytest.mark.parametrize("video", VIDEOS)
def test_decode_only(benchmark, bench_videos, video):
    path = _path(bench_videos, video)
    n = benchmark.pedantic(_decode, args=(path,), kwargs={"rgb": None}, rounds=11,
                           warmup_rounds=1)
    record(benchmark, "decode", video, "decode_only", n)


@pytest.mark.parametrize("video", VIDEOS)
@pytest.mark.parametrize("conversion", ["default", "threads1"])
def test_rgb_decode(benchmark, bench_videos, video, conversion):
    path = _path(bench_videos, video)
    n = benchmark.pedantic(_decode, args=(path,), kwargs={"rgb": conversion}, rounds=11,
                           warmup_rounds=1)
    record(benchmark, "decode", video, f"rgb_decode_pyav_{conversion}", n)


@pytest.mark.parametrize("video", VIDEOS)
def test_mv_only(benchmark, bench_videos, video):
    path = _path(bench_videos, video)
    out = benchmark.pedantic(_mv_only, args=(path,), rounds=11, warmup_rounds=1)
    record(benchmark, "decode", video, "mv_only", len(out))
    record(benchmark, "motion", video, "mv_only", len(out))


@pytest.mark.parametrize("video", VIDEOS)
def test_rasterize_vectors(benchmark, bench_videos, video):
    path = _path(bench_videos, video)
    info = cvload.probe(path)
    vectors = _mv_only(path)

    def raster():
        return [cvload.motion_field(v, info.height, info.width, grid=4) for v in vectors]

    out = benchmark.pedantic(raster, rounds=7, warmup_rounds=1)
    record(benchmark, "decode", video, "rasterize_grid4", len(out))


def _layout_frames(info, *, layout: str) -> np.ndarray:
    """The frames a layout reads for one sample, chosen as the dataset chooses them."""
    if layout == "mvcgc":
        return np.arange(24, 40)  # 16 consecutive frames
    if layout == "imrnet":  # one GOP: I-frame + 3 frames spread over the file's GOP
        return cvload.video._dataset.imrnet_frames(info, 0, 4)
    # the same I + 3 frames, but packed into the first 12 frames (a short-GOP file)
    return info.keyframes[0] + np.array([0, 4, 8, 11])


LAYOUTS = ["mvcgc", "imrnet", "imrnet_gop12"]


@pytest.mark.parametrize("video", VIDEOS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_clip(benchmark, bench_videos, video, layout):
    path = _path(bench_videos, video)
    info = cvload.probe(path)
    frames = _layout_frames(info, layout=layout)
    streams = ("rgb", "mv") if layout == "mvcgc" else ("iframe", "mv", "residual")
    clip = benchmark.pedantic(
        lambda: cvload.video.read_frames(path, frames, streams=streams, info=info), rounds=7,
        warmup_rounds=1)
    record(benchmark, "layouts", f"{video}:{layout}", "clip", len(clip))


@pytest.mark.parametrize("video", VIDEOS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_rgb_same_frames(benchmark, bench_videos, video, layout):
    path = _path(bench_videos, video)
    info = cvload.probe(path)
    frames = _layout_frames(info, layout=layout)
    clip = benchmark.pedantic(
        lambda: cvload.video.read_frames(path, frames, streams=("rgb",), info=info), rounds=7,
        warmup_rounds=1)
    # keyed per layout so each layout is compared with exactly its own frames
    record(benchmark, "layouts", f"{video}:{layout}", "rgb_same_frames", len(clip))


@pytest.mark.parametrize("video", ["h264_320x240_B", "h264_640x480_B"])
def test_estimated_motion_hevc(benchmark, bench_videos, video, tmp_path_factory):
    """Block matching on an HEVC re-encode of the same footage (its decoder exports none)."""
    path = _path(bench_videos, video)
    hevc = tmp_path_factory.mktemp("hevc") / f"{video}.mp4"
    rgb = cvload.read_clip(path, start=0, num_frames=48, streams=("rgb",)).rgb
    from cvload.synthetic import encode_frames

    encode_frames(rgb, hevc, codec="hevc", gop=48, bframes=2, quality=23)
    info = cvload.probe(hevc)
    clip = benchmark.pedantic(
        lambda: cvload.read_clip(hevc, start=0, num_frames=48, streams=("mv",),
                                 mv_source="estimate", info=info), rounds=5, warmup_rounds=1)
    record(benchmark, "motion", video, "estimated_hevc", len(clip))


@pytest.mark.parametrize("video", VIDEOS)
def test_farneback_flow(benchmark, bench_videos, video):
    cv2 = pytest.importorskip("cv2", reason="OpenCV (extra 'bench') is needed for Farneback")
    path = _path(bench_videos, video)
    frames = 12  # Farneback is slow; its rate per frame is what is compared
    rgb = cvload.read_clip(path, start=0, num_frames=frames + 1, streams=("rgb",)).rgb
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]

    def flow():
        return [cv2.calcOpticalFlowFarneback(gray[i], gray[i + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
                for i in range(frames)]

    out = benchmark.pedantic(flow, rounds=3, warmup_rounds=1)
    record(benchmark, "motion", video, "farneback_flow", len(out))
