"""Shared benchmark fixtures and the ratio table written at the end of a run.

Each benchmark records ``(group, video, method) -> median seconds and work units`` in
``RESULTS``; at session end the tables (ratios against the baseline of the same group
and video, all from the same run) are printed and saved to ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from fractions import Fraction
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import pytest

RESULTS: dict = defaultdict(dict)
NOTES: dict = defaultdict(list)  # group -> lines printed under its table
TEXT: dict = {}  # group -> a table rendered by the suite itself (cvload.bench reports)
RESULTS_DIR = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "videos"


def interleaved(benchmark, group: str, video: str, methods: dict, *, rounds: int = 9) -> None:
    """Time several methods in the same rounds, each round in a rotated order.

    ``methods``: name -> (callable, work units per call, unit name). The machines here are
    shared and noisy: timing the baseline and the candidates side by side, round after
    round, keeps slow drift out of the ratios. Each method's median over the rounds goes
    to ``RESULTS``, with its per-round times: the tables also give the median of the
    per-round ratios to the baseline ("paired"), which cancels drift between rounds.
    (``cvload.bench.interleave`` does the timing; pytest-benchmark records the whole run.)
    """
    from cvload.bench import interleave

    timings = {}

    def run_all():
        timings.update(interleave({name: m[0] for name, m in methods.items()}, rounds=rounds))

    benchmark.pedantic(run_all, rounds=1, warmup_rounds=0)
    samples = {name: list(t.samples_s) for name, t in timings.items()}
    for name, (_, units, unit) in methods.items():
        median = float(np.median(samples[name]))
        RESULTS[group][(video, name)] = {"median_s": median, "units": units, "unit": unit,
                                         "per_s": units / median, "rounds": rounds,
                                         "samples_s": samples[name]}


def _reencode(src: Path, dst: Path, width: int, height: int, frames: int, bframes: int) -> Path:
    """Real footage at another size, H.264 with B-frames (libx264 default GOP structure)."""
    if dst.exists():
        return dst
    tmp = dst.with_suffix(".partial.mp4")
    with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=25)
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        vout.options = {"preset": "medium", "crf": "23",
                        "x264-params": f"bframes={bframes}:keyint=250"}
        for i, frame in enumerate(inp.decode(vin)):
            if i >= frames:
                break
            small = frame.reformat(width=width, height=height, format="yuv420p")
            small.pts, small.time_base = i, Fraction(1, 25)
            for packet in vout.encode(small):
                out.mux(packet)
        for packet in vout.encode(None):
            out.mux(packet)
    os.replace(tmp, dst)
    return dst


@pytest.fixture(scope="session")
def bench_videos() -> dict[str, str]:
    """name -> path: 320x240 and 640x480 H.264 with B-frames, and the 720p golden file."""
    from cvload._util import cache_dir
    from cvload.synthetic import write_video

    root = cache_dir("bench")
    golden = SHARED / "mv_extractor" / "vid_h264.mp4"
    videos = {}
    for name, (w, h) in {"h264_320x240_B": (320, 240), "h264_640x480_B": (640, 480)}.items():
        if golden.exists():
            videos[name] = str(_reencode(golden, root / f"{name}.mp4", w, h, 200, 3))
        else:
            videos[name] = write_video(root / f"{name}_synthetic.mp4", width=w, height=h,
                                       num_frames=200, gop=100, bframes=3).path
    if golden.exists():
        videos["golden_720p_P"] = str(golden)
    return videos


def _table(group: str, rows: dict) -> str:
    from cvload._util import format_table

    if group in TEXT:
        return TEXT[group]

    if group == "pack":
        out = []
        for (fmt, method), r in sorted(rows.items()):
            base = rows.get((fmt, "workers_1"))
            out.append((fmt, method, f"{r['median_s']:.2f}", f"{r['videos_per_s']:.2f}",
                        f"{r['per_s']:.1f}", f"{r['bytes_per_clip']:.0f}", r["failures"],
                        f"{r['per_s'] / base['per_s']:.2f}x" if base else ""))
        return format_table(["format", "workers", "median s", "videos/s", "clips/s",
                             "bytes/clip", "failures", "vs 1 worker"], out)
    if group == "loader":
        out = []
        for (case, method), r in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[1]["median_s"])):
            base = rows.get((case, "video_to_rgb"))
            out.append((case, method, f"{r['median_s'] * 1000:.1f}", r["units"],
                        f"{r['per_s']:.1f}", f"{r.get('mb_per_s', float('nan')):.1f}",
                        f"{r['per_s'] / base['per_s']:.1f}x" if base else ""))
        return format_table(["clips", "method", "median ms/pass", "clips/pass", "clips/s",
                             "MB/s", "vs video_to_rgb"], out)
    if group == "allocator":
        out = []
        for (method, mode), r in sorted(rows.items()):
            base = rows.get((method, "untuned"))
            out.append((method, mode, f"{r['median_s'] * 1000:.1f}", f"{r['per_s']:.1f}",
                        f"{r['maxrss_mb']:.0f}", _paired(r, base)))
        return format_table(["method (720p)", "malloc", "median ms/clip", "clips/s",
                             "peak RSS MB", "paired vs untuned [IQR]"], out)
    if group == "augment":
        out = []
        for (case, method), r in sorted(rows.items(), key=lambda kv: (kv[0][0], -kv[1]["median_s"])):
            step = rows.get((case, "s3d_codes_step"))
            fraction = ""
            if step and method != "s3d_codes_step":
                ratios = np.asarray(r["samples_s"]) / np.asarray(step["samples_s"])
                q1, med, q3 = np.percentile(ratios, [25, 50, 75])
                fraction = f"{100 * med:.2f}% [{100 * q1:.2f}-{100 * q3:.2f}]"
            out.append((case, method, f"{r['median_s'] * 1000:.2f}", fraction))
        return format_table(["device", "method", "median ms/batch",
                             "of an S3D-codes step (paired median [IQR])"], out)
    baselines = {"decode": "decode_only", "layouts": "rgb_same_frames", "motion": "mv_only",
                 "overhead": "torch_dataloader", "probe": "decode_all_frames",
                 "models": "s3d_rgb_fwd_bwd", "device_stage": "rgb_pixel_augment",
                 "peers_decode": "cvload_read_clip", "peers_loading": "cvload_dataloader"}
    # a second baseline where a target names one (MV-only vs full RGB decode)
    second = {"decode": "rgb_decode_pyav_default"}.get(group)
    base = baselines.get(group)
    out = []
    for video in sorted({v for v, _ in rows}):
        ref = rows.get((video, base))
        ref2 = rows.get((video, second))
        for (v, method), r in sorted(rows.items(), key=lambda kv: kv[1]["median_s"]):
            if v != video:
                continue
            ratio = r["per_s"] / ref["per_s"] if ref else float("nan")
            row = (video, method, f"{r['median_s'] * 1000:.2f}", f"{r['per_s']:.1f}",
                   r["unit"], f"{ratio:.3f}x", _paired(r, ref))
            out.append(row + ((_paired(r, ref2),) if second else ()))
    return format_table(["video", "method", "median ms", "units/s", "unit", f"vs {base}",
                         "paired [IQR]"] + ([f"paired vs {second}"] if second else []), out)


def _paired(r: dict, ref: dict | None) -> str:
    """Median and quartiles of the per-round speed ratios to the baseline."""
    from cvload.bench import Timing, paired_ratio

    if not ref or "samples_s" not in r or len(r["samples_s"]) != len(ref["samples_s"]):
        return ""
    med, q1, q3 = paired_ratio(Timing(tuple(r["samples_s"])), Timing(tuple(ref["samples_s"])),
                               candidate_units=r["units"], baseline_units=ref["units"])
    return f"{med:.3f}x [{q1:.2f}-{q3:.2f}]"


def _section(group: str, rows: dict) -> str:
    notes = "".join(f"\n{line}" for line in dict.fromkeys(NOTES.get(group, [])))
    return f"## {group}\n\n```\n{_table(group, rows)}\n```\n{notes}\n"


def pytest_sessionfinish(session, exitstatus):
    for group in TEXT:
        RESULTS.setdefault(group, {})
    if not RESULTS:
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    text = [f"# cvload benchmarks, {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()} "
            f"({os.cpu_count()} CPUs), PyAV {av.__version__}", ""]
    for group, rows in RESULTS.items():
        text.append(_section(group, rows))
    report = "\n".join(text)
    (RESULTS_DIR / "latest.md").write_text(report)
    for group, rows in RESULTS.items():  # one file per group survives partial reruns
        (RESULTS_DIR / f"{group}.md").write_text(f"{text[0]}\n\n{_section(group, rows)}")
    (RESULTS_DIR / "latest-ratios.json").write_text(json.dumps(
        {g: {f"{v}|{m}": r for (v, m), r in rows.items()} for g, rows in RESULTS.items()},
        indent=1))
    print("\n" + report)
