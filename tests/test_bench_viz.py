"""``cvload bench`` (the curated benchmark, its table, JSON and chart) and ``cvload viz``
(the contact sheet), on real encoded videos."""

from __future__ import annotations

import colorsys
import json

import numpy as np
import pytest

from cvload.bench import (BenchOptions, Timing, format_report, interleave, paired_ratio,
                          plot_report, run_bench)
from cvload.errors import InvalidArgumentError

TINY = dict(lengths=(8,), main_length=8, clips=4, rounds=2, batch_size=2, min_seconds=0.0)
PIPELINES = {"file:rgb", "file:mv", "file:mvcgc", "file:imrnet", "file:coviar", "rgb-shards",
             "video-shards:rgb", "video-shards:mvcgc", "video-shards:imrnet",
             "video-shards:coviar", "codes-shards"}


# -- timing --------------------------------------------------------------------------------

def test_interleave_rotates_the_order_and_skips_warmup():
    calls = []
    methods = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    timings = interleave(methods, rounds=3, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up, untimed
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(t.samples_s) == 3 for t in timings.values())


def test_paired_ratio_is_the_median_of_per_round_speed_ratios():
    base = Timing((1.0, 2.0, 4.0))
    fast = Timing((0.5, 0.5, 1.0))  # 2x, 4x, 4x faster per round
    median, q1, q3 = paired_ratio(fast, base)
    assert median == pytest.approx(4.0) and q1 == pytest.approx(3.0) and q3 == pytest.approx(4.0)
    # units: twice the clips per call in the same time is twice the speed
    assert paired_ratio(base, base, candidate_units=2)[0] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        paired_ratio(Timing((1.0,)), base)


def test_bench_options_are_checked():
    with pytest.raises(InvalidArgumentError, match="main_length"):
        BenchOptions(lengths=(8, 32), main_length=16)
    with pytest.raises(InvalidArgumentError, match="multiple of 4"):
        BenchOptions(lengths=(6,), main_length=6)
    assert BenchOptions.quick().lengths == (8, 16)


# -- the benchmark ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report(tmp_path_factory, video_factory):
    videos = [video_factory(width=96, height=80, num_frames=40, gop=10, bframes=b,
                            motion=(2, 1), seed=s).path for s, b in ((1, 0), (2, 2))]
    root = tmp_path_factory.mktemp("bench")
    return run_bench(videos, options=BenchOptions(**TINY, size=(64, 64)), workdir=root,
                     print_fn=lambda *a: None), videos, root


def test_bench_times_every_pipeline_on_the_same_clip_shapes(report):
    report, videos, _ = report
    rows = {r.pipeline: r for r in report.rows}
    assert set(rows) == PIPELINES
    assert rows["file:rgb"].vs_rgb == pytest.approx(1.0)
    for r in report.rows:
        assert r.frames == 8 and r.clips > 0
        assert r.clips_per_s > 0 and r.clips_per_s_q1 <= r.clips_per_s <= r.clips_per_s_q3
        assert r.vs_rgb > 0 and np.isfinite(r.vs_rgb)
    rgb_shape = "rgb (8, 3, 64, 64) uint8"
    for name in ("file:rgb", "rgb-shards", "video-shards:rgb"):
        assert rows[name].output == rgb_shape, name
    assert rows["file:mvcgc"].output == rows["video-shards:mvcgc"].output
    assert rows["file:mv"].output.startswith("mv (8, 4, 16, 16) float32")
    # the codec's default format: 8 frames / 4, 64 px / 8, 2 groups of uint16
    assert rows["codes-shards"].output == "codes (2, 8, 8, 2) uint16"
    # the file clips and the rgb/codes shards are the same clips
    assert rows["file:rgb"].clips == rows["rgb-shards"].clips == rows["codes-shards"].clips


def test_bench_bytes_are_what_is_stored(report):
    report, videos, root = report
    import os

    rows = {r.pipeline: r for r in report.rows}
    rgb = rows["rgb-shards"].bytes_per_clip
    assert rgb >= 8 * 64 * 64 * 3  # raw frames plus the tar's headers
    assert rows["codes-shards"].bytes_per_clip < rgb / 10
    # each shard pipeline's bytes per clip: its tar files over its clips
    for name, fmt in (("rgb-shards", "rgb"), ("video-shards:rgb", "video"),
                      ("codes-shards", "codes")):
        tars = list(root.rglob(f"*/{fmt}/shard-*.tar"))
        assert tars, fmt
        assert rows[name].bytes_per_clip == pytest.approx(
            sum(t.stat().st_size for t in tars) / rows[name].clips), name
    per_frame = np.mean([os.path.getsize(v) / 40 for v in videos])
    assert rows["file:rgb"].bytes_per_clip == pytest.approx(8 * per_frame, rel=0.35)
    assert rows["file:imrnet"].bytes_per_clip is None and rows["file:imrnet"].mb_per_s is None
    r = rows["codes-shards"]
    assert r.mb_per_s == pytest.approx(r.bytes_per_clip * r.clips_per_s / 1e6)


def test_bench_table_json_and_chart(report, tmp_path):
    report, _, _ = report
    text = format_report(report)
    for name in PIPELINES:
        assert name in text
    assert "vs file:rgb" in text and "bytes/clip" in text
    record = json.loads(json.dumps(report.to_dict()))
    assert {r["pipeline"] for r in record["rows"]} == PIPELINES
    assert record["meta"]["codec"]["trained"] is False
    from PIL import Image

    path = plot_report(report, tmp_path / "bench.png")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # drawn, not blank


def test_bench_cli_reuses_shards_and_writes_json(report, tmp_path, capsys):
    report, videos, root = report
    from cvload.cli import main

    out = tmp_path / "b.json"
    before = {t: t.stat().st_mtime_ns for t in root.rglob("shard-*.tar")}
    assert main(["bench", *videos, "--lengths", "8", "--clips", "4", "--rounds", "1",
                 "--size", "64", "--workdir", str(root), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "codes-shards" in printed and "file:rgb" in printed
    assert {r["pipeline"] for r in json.loads(out.read_text())["rows"]} == PIPELINES
    assert {t: t.stat().st_mtime_ns for t in root.rglob("shard-*.tar")} == before  # reused
    assert main(["bench", "--lengths", "6", "--workdir", str(root)]) == 1
    assert "multiple of 4" in capsys.readouterr().err


def test_bench_refuses_videos_too_short(tmp_path, video_factory):
    short = video_factory(width=64, height=48, num_frames=6, gop=6).path
    with pytest.raises(InvalidArgumentError, match="8 frames"):
        run_bench([short], options=BenchOptions(**TINY, size=(64, 64)), workdir=tmp_path,
                  print_fn=lambda *a: None)


# -- the contact sheet -------------------------------------------------------------------------

def _mean_hue(pixels: np.ndarray) -> float:
    """Circular mean hue in degrees of bright pixels."""
    bright = pixels[pixels.max(-1) > 90] / 255.0
    assert len(bright) > 50, "the motion panel shows no motion"
    hues = np.array([colorsys.rgb_to_hsv(*p)[0] for p in bright[:: max(1, len(bright) // 400)]])
    angle = np.arctan2(np.sin(2 * np.pi * hues).mean(), np.cos(2 * np.pi * hues).mean())
    return float(np.degrees(angle) % 360)


@pytest.mark.parametrize("motion, hue", [((3, 0), 0.0), ((0, 3), 90.0), ((-3, 0), 180.0),
                                         ((0, -3), 270.0)])
def test_viz_motion_colours_follow_the_direction(tmp_path, video_factory, motion, hue):
    """Content moving right is red, down yellow-green, left cyan, up violet: read back
    from the saved PNG, inside the boxes the sheet says its motion panels occupy."""
    from PIL import Image

    from cvload.viz import render_sheet

    video = video_factory(width=128, height=96, num_frames=24, gop=24, bframes=0,
                          motion=motion, seed=7)
    sheet = render_sheet(video.path, tmp_path / "sheet.png", columns=4)
    image = np.asarray(Image.open(sheet.path).convert("RGB"))
    assert sheet.frame_types[0] == "I" and set(sheet.frame_types[1:]) == {"P"}
    for j in range(1, len(sheet.frames)):  # the I-frame column has no motion
        x0, y0, x1, y1 = sheet.boxes["motion"][j]
        panel = image[y0 + 3:y1 - 3, x0 + 3:x1 - 3]
        got = _mean_hue(panel)
        assert min(abs(got - hue), 360 - abs(got - hue)) < 25, (j, got, hue)
    x0, y0, x1, y1 = sheet.boxes["motion"][0]
    assert image[y0 + 3:y1 - 3, x0 + 3:x1 - 3].max() < 40  # I-frame: black, no vectors


def test_flow_colours_and_content_motion():
    from cvload.viz import content_motion, flow_colours

    field = np.zeros((2, 2, 2), np.float32)
    field[0, 0] = (2, 0)
    field[0, 1] = (-2, 0)
    colours = flow_colours(field, max_magnitude=2.0)
    assert tuple(colours[0, 0]) == (255, 0, 0) and tuple(colours[0, 1]) == (0, 255, 255)
    assert tuple(colours[1, 1]) == (0, 0, 0)
    mv = np.array([[[-2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]]])  # L0 back, L1 forward
    assert content_motion(mv).tolist() == [[[2.0, 0.0], [0.0, 3.0]]]
    with pytest.raises(InvalidArgumentError):
        flow_colours(np.zeros((2, 2, 3)))


def test_viz_with_a_codec_shows_reconstructions(tmp_path, video_factory):
    import torch

    from cvload.cli import main
    from cvload.codec import CodecConfig, VideoCodec
    from cvload.video import read_clip

    video = video_factory(width=96, height=64, num_frames=24, gop=12, bframes=2, seed=3)
    codec = VideoCodec(CodecConfig(clip_frames=8, size=(64, 64)))
    torch.manual_seed(0)
    codec.initialise(np.stack([read_clip(video.path, start=s, num_frames=8, size=(64, 64),
                                         streams=("rgb",)).rgb for s in (0, 8, 16)]))
    path = tmp_path / "codec.pt"
    codec.save(path)
    from cvload.viz import render_sheet

    sheet = render_sheet(video.path, tmp_path / "sheet.png", codec=path, columns=4)
    assert len(sheet.psnr) == 4 and all(18 < p < 60 for p in sheet.psnr)
    assert sheet.codec_frames == sorted(sheet.codec_frames)
    assert set(sheet.boxes) == {"frame", "motion", "residual", "original", "reconstruction"}
    assert main(["viz", video.path, "--out", str(tmp_path / "cli.png"), "--codec", str(path)]) == 0
    assert (tmp_path / "cli.png").stat().st_size > 10_000


def test_bench_leaves_out_unreadable_videos_and_names_them(tmp_path, video_factory):
    good = video_factory(width=64, height=48, num_frames=24, gop=8, seed=5).path
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(open(good, "rb").read()[:300])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    printed = []
    report = run_bench([good, str(truncated), str(empty)],
                       options=BenchOptions(**TINY, size=(64, 64)), workdir=tmp_path / "w",
                       print_fn=printed.append)
    assert sorted(report.meta["skipped_videos"]) == sorted([str(truncated), str(empty)])
    assert report.meta["videos"] == [good]
    assert any(str(truncated) in line for line in printed)
    assert {r.pipeline for r in report.rows} == PIPELINES
    with pytest.raises(InvalidArgumentError, match="none of the 2 videos can be read"):
        run_bench([str(truncated), str(empty)], options=BenchOptions(**TINY, size=(64, 64)),
                  workdir=tmp_path / "w2", print_fn=lambda *a: None)


def test_viz_of_a_broken_file_is_a_clear_error(tmp_path, video_factory, capsys):
    from cvload.cli import main

    good = video_factory(width=64, height=48, num_frames=24, gop=8, seed=6).path
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(open(good, "rb").read()[:300])
    assert main(["viz", str(truncated), "--out", str(tmp_path / "s.png")]) == 1
    assert str(truncated) in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()  # nothing half-drawn
