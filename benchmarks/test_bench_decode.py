"""Decoding in the compressed domain against its baselines (issue 3).

Each test times a group of methods interleaved in the same rounds (see
``conftest.interleaved``) and reports ratios against the group's baseline:

- decode:  decode_only (FFmpeg's floor: decode, no conversion) vs full RGB decode with
           PyAV (``to_ndarray`` as usually written, and single-threaded as cvload does it)
           vs MV-only (``cvload.iter_motion_vectors``) vs rasterising those vectors, and
           two ceilings set by FFmpeg alone: decoding with the vectors exported but never
           read (their export's own cost), and with cvload's MV-only decoder options
           (export, no loop filter, no IDCT) but nothing read out (the most MV-only
           could reach).
- motion:  MV-only vs estimated motion (block matching on an HEVC encode of the same
           frames) vs OpenCV Farneback optical flow, per frame.
- layouts: a clip of each layout (mvcgc, imrnet, imrnet packed as GOPs of 12, coviar's
           3 accumulated segments) vs decoding the same frames to RGB (``read_frames``
           with ``streams=("rgb",)``).
- probe:   what ``probe`` costs (uncached; packets read, head and last GOP decoded)
           and ``probe(decode=True)`` against decoding every frame without conversion
           (the baseline), and against reading the packets alone.
- allocator: layouts read in fresh processes with glibc's malloc as it comes and tuned
           as cvload.DataLoader's workers tune it.
All decoders run single-threaded (slice threading, 1 thread): parallelism belongs to
DataLoader workers, and frame threading corrupts exported B-frame vectors.
"""

from __future__ import annotations

import itertools

import av
import numpy as np
import pytest

import cvload
from benchmarks.conftest import interleaved
from cvload.video._dataset import imrnet_frames

FRAMES = 96  # frames per decode measurement; every method sees the same frames
VIDEOS = ["h264_320x240_B", "h264_640x480_B", "golden_720p_P"]


def _path(bench_videos, name):
    if name not in bench_videos:
        pytest.skip(f"{name} needs ../shared/videos")
    return bench_videos[name]


def _decode(path, *, rgb: str | None, frames: int = FRAMES, options: dict | None = None) -> int:
    """rgb: None (decode only), "default" (``frame.to_ndarray`` as usually written, which
    lets swscale start threads per frame) or "threads1" (single-threaded, as cvload).
    ``options``: decoder options (the ceilings below)."""
    with av.open(path) as c:
        s = c.streams.video[0]
        if options:
            s.codec_context.options = dict(options)
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


_EXPORT = {"flags2": "+export_mvs"}
_MV_FLAGS = {"flags2": "+export_mvs", "skip_loop_filter": "all", "skip_idct": "all"}  # as cvload


def _mv_only(path, frames: int = FRAMES) -> list:
    return [f.vectors for f in itertools.islice(cvload.iter_motion_vectors(path), frames)]


@pytest.mark.parametrize("video", VIDEOS)
def test_decode(benchmark, bench_videos, video):
    path = _path(bench_videos, video)
    info = cvload.probe(path)
    vectors = _mv_only(path)
    field = cvload.motion_field(vectors[0], info.height, info.width, grid=4)  # reused buffer
    interleaved(benchmark, "decode", video, {
        "decode_only": (lambda: _decode(path, rgb=None), FRAMES, "frames"),
        "rgb_decode_pyav_default": (lambda: _decode(path, rgb="default"), FRAMES, "frames"),
        "rgb_decode_pyav_threads1": (lambda: _decode(path, rgb="threads1"), FRAMES, "frames"),
        "mv_only": (lambda: _mv_only(path), FRAMES, "frames"),
        # ceilings: FFmpeg's own costs, with no vector read out
        "ceiling_export_only": (lambda: _decode(path, rgb=None, options=_EXPORT), FRAMES,
                                "frames"),
        "ceiling_mv_decode_flags": (lambda: _decode(path, rgb=None, options=_MV_FLAGS),
                                    FRAMES, "frames"),
        "rasterize_grid4": (lambda: [cvload.motion_field(v, info.height, info.width, grid=4,
                                                         out=field)
                                     for v in vectors], FRAMES, "frames"),
    }, rounds=31)


@pytest.mark.parametrize("video", VIDEOS)
def test_motion(benchmark, bench_videos, video, tmp_path_factory):
    path = _path(bench_videos, video)
    flow_frames = 8  # Farneback is slow: its rate per frame is what is compared
    rgb = cvload.read_clip(path, start=0, num_frames=48, streams=("rgb",)).rgb
    methods = {"mv_only": (lambda: _mv_only(path), FRAMES, "frames")}
    if video != "golden_720p_P":  # HEVC re-encode of the same frames: no exported vectors
        from cvload.synthetic import encode_frames

        hevc = tmp_path_factory.mktemp("hevc") / f"{video}.mp4"
        encode_frames(rgb, hevc, codec="hevc", gop=48, bframes=2, quality=23)
        hevc_info = cvload.probe(hevc)
        methods["estimated_hevc"] = (
            lambda: cvload.read_clip(hevc, start=0, num_frames=48, streams=("mv",),
                                     mv_source="estimate", info=hevc_info), 48, "frames")
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb[: flow_frames + 1]]

        def farneback(threads: int):
            previous = cv2.getNumThreads()
            cv2.setNumThreads(threads)
            try:
                return [cv2.calcOpticalFlowFarneback(gray[i], gray[i + 1], None, 0.5, 3, 15, 3, 5,
                                                     1.2, 0) for i in range(flow_frames)]
            finally:
                cv2.setNumThreads(previous)

        # OpenCV's default (all cores) and one thread, like the single-threaded MV decode
        methods["farneback_flow"] = (lambda: farneback(cv2.getNumThreads()), flow_frames, "frames")
        methods["farneback_flow_1thread"] = (lambda: farneback(1), flow_frames, "frames")
    interleaved(benchmark, "motion", video, methods, rounds=7)


def _layout_frames(info, layout: str) -> np.ndarray:
    """The frames a layout reads for one sample, chosen as the dataset chooses them."""
    if layout == "mvcgc":
        return np.arange(24, 40)  # 16 consecutive frames
    if layout == "coviar":  # 3 segments, one frame each, as VideoDataset's centre sampling
        bounds = np.linspace(0, info.num_frames, 4)
        return np.array([(int(lo) + max(int(lo) + 1, int(hi)) - 1) // 2
                         for lo, hi in zip(bounds[:-1], bounds[1:])])
    if layout == "imrnet":  # one GOP: its I-frame + 3 frames spread over the file's GOP
        return imrnet_frames(info, 0, 4)
    # imrnet_gop12: the same 4 frames packed into 12, as in a file with GOPs of 12
    return info.keyframes[0] + np.array([0, 4, 8, 11])


@pytest.mark.parametrize("video", VIDEOS)
@pytest.mark.parametrize("layout", ["mvcgc", "imrnet", "imrnet_gop12", "coviar"])
def test_layouts(benchmark, bench_videos, video, layout):
    path = _path(bench_videos, video)
    info = cvload.probe(path)
    frames = _layout_frames(info, layout)
    streams = ("rgb", "mv") if layout == "mvcgc" else ("iframe", "mv", "residual")
    read = cvload.video.read_frames
    accumulate = layout == "coviar"  # motion and residual accumulated to the I-frame
    interleaved(benchmark, "layouts", f"{video}:{layout}", {
        "rgb_same_frames": (lambda: read(path, frames, streams=("rgb",), info=info),
                            len(frames), "frames"),
        "clip": (lambda: read(path, frames, streams=streams, info=info, accumulate=accumulate),
                 len(frames), "frames"),
    }, rounds=15)


_ALLOCATOR_SCRIPT = r"""
import json, sys, time
import numpy as np
import cvload
from cvload._alloc import tune_allocator
path, tuned, rounds = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
if tuned:
    assert tune_allocator()
info = cvload.probe(path)
read = cvload.video.read_frames
gop12 = info.keyframes[0] + np.array([0, 4, 8, 11])
methods = {
    "rgb_same_frames": lambda: read(path, gop12, streams=("rgb",), info=info),
    "imrnet_gop12_clip": lambda: read(path, gop12, streams=("iframe", "mv", "residual"),
                                      info=info),
    "mvcgc_clip": lambda: read(path, np.arange(24, 40), streams=("rgb", "mv"), info=info),
}
for fn in methods.values():
    fn()
times = {name: [] for name in methods}
for _ in range(rounds):
    for name, fn in methods.items():
        start = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - start)
import resource
print(json.dumps({"median_s": {k: float(np.median(v)) for k, v in times.items()},
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_allocator(benchmark, bench_videos):
    """Decoding with glibc's malloc as it comes vs tuned as cvload.DataLoader's workers
    tune it (``cvload._alloc``): fresh processes, alternated, the same work in each."""
    import json
    import subprocess
    import sys

    from benchmarks.conftest import RESULTS

    if not sys.platform.startswith("linux"):
        pytest.skip("allocator tuning is for glibc (Linux)")
    path = _path(bench_videos, "golden_720p_P")
    runs: dict[str, list[dict]] = {"untuned": [], "tuned": []}

    def one_pair():
        for mode in ("untuned", "tuned"):
            out = subprocess.run([sys.executable, "-c", _ALLOCATOR_SCRIPT, path,
                                  "1" if mode == "tuned" else "0", "9"],
                                 capture_output=True, text=True, check=True).stdout
            runs[mode].append(json.loads(out.strip().splitlines()[-1]))

    benchmark.pedantic(one_pair, rounds=6, warmup_rounds=0)
    for mode, results in runs.items():
        for method in results[0]["median_s"]:
            samples = [r["median_s"][method] for r in results]
            RESULTS["allocator"][(method, mode)] = {
                "median_s": float(np.median(samples)), "units": 1, "unit": "clips",
                "per_s": 1 / float(np.median(samples)), "rounds": len(samples),
                "samples_s": samples,
                "maxrss_mb": float(np.median([r["maxrss_mb"] for r in results]))}


def _packets_only(path) -> int:
    with av.open(path) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


@pytest.mark.parametrize("video", VIDEOS + ["opencv_box_mp4", "opencv_megamind_avi"])
def test_probe(benchmark, bench_videos, video):
    """Issue 11: probing checks its count by decoding the head and the last GOP; the
    files that need it (decode times as pts, packed B-frames) are decoded whole."""
    from pathlib import Path

    from cvload.video._probe import _probe  # uncached: the cost of a first probe

    real = Path(__file__).resolve().parents[1] / "tests" / "data" / "real" / "opencv"
    path = {"opencv_box_mp4": str(real / "box.mp4"),
            "opencv_megamind_avi": str(real / "Megamind.avi")}.get(video) or _path(bench_videos,
                                                                                 video)
    frames = _probe(path, None, False).num_frames
    interleaved(benchmark, "probe", video, {
        "decode_all_frames": (lambda: _decode(path, rgb=None, frames=10 ** 9), frames,
                              "frames"),
        "packets_only": (lambda: _packets_only(path), frames, "frames"),
        "probe": (lambda: _probe(path, None, False), frames, "frames"),
        "probe_decode_true": (lambda: _probe(path, None, True), frames, "frames"),
    }, rounds=9)
