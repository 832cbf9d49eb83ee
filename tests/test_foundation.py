"""cvload_ext's JIT switch, doctor, demo, CLI, and bad sources."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import cvload
import cvload_ext
from cvload.cli import main


def _raster_case():
    # two 16x16 blocks (one L0, one L1, quarter-pel) and one 8x8 block
    vectors = np.array(
        [[-1, 16, 16, 0, 0, 8, 8, -6, 2, 4],
         [1, 16, 16, 0, 0, 24, 8, 8, -4, 4],
         [-1, 8, 8, 0, 0, 4, 20, 3, 0, 2]], np.int32)
    out = np.full((6, 8, 4), np.nan, np.float32)  # overwritten entirely
    cvload_ext.rasterize_motion(vectors, 4, out)
    return out


def test_rasterize_kernel_paints_blocks():
    out = _raster_case()
    np.testing.assert_array_equal(out[0:4, 0:4, 0], -1.5)
    np.testing.assert_array_equal(out[0:4, 0:4, 1], 0.5)
    np.testing.assert_array_equal(out[0:4, 4:8, 2:4], np.broadcast_to([2.0, -1.0], (4, 4, 2)))
    np.testing.assert_array_equal(out[4:6, 0:2, 0], 1.5)
    assert not out[4:6, 2:].any()  # no block there


def test_disable_jit_switch_runs_plain_python():
    code = (
        "import cvload_ext, numpy as np, json, sys;"
        "sys.path.insert(0, 'tests');"
        "from test_foundation import _raster_case;"
        "print(json.dumps([cvload_ext.JIT_ENABLED, type(cvload_ext.rasterize_motion).__name__,"
        " _raster_case().tolist()]))"
    )
    env = {**os.environ, "CVLOAD_DISABLE_JIT": "1"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True,
                         text=True, check=True)
    enabled, kind, result = json.loads(out.stdout)
    assert enabled is False and kind == "function"
    assert cvload_ext.JIT_ENABLED and type(cvload_ext.rasterize_motion).__name__ == "CPUDispatcher"
    np.testing.assert_array_equal(np.array(result, np.float32), _raster_case())


def test_doctor_reports_motion_vector_export_truthfully(capsys):
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.split() and line.split()[0] in {"h264", "mpeg4", "mpeg2video", "hevc", "vp9", "av1"}}
    assert {k: v[3] for k, v in rows.items()} == {
        "h264": "yes", "mpeg4": "yes", "mpeg2video": "yes", "hevc": "no", "vp9": "no", "av1": "no"}
    for needle in ("torch", "PyAV", "numba", "webdataset", "libavcodec", "CUDA usable"):
        assert needle in text


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    from cvload._demo import run

    result = run(tmp_path / "demo", videos_per_class=2, codec_steps=4, augnet_seconds=8)
    out = capsys.readouterr().out
    assert len(result["videos"]) == 10
    assert {v.label for v in result["videos"]} == set(range(5))
    assert sum(i.has_b_frames for i in result["infos"]) == 5
    assert "right/right_1.mp4" in out and "+3,+0" in out
    odd = result["odd"]
    assert odd["packed_bframes.avi"]["order"] == odd["decode_times_as_pts.mp4"]["order"] == "decode"
    assert all(f["equal"] == f["frames"] == f["decoded"] for f in odd.values())
    assert odd["cinepak.avi"]["motion"] == "estimated: no vectors"  # never silent zeros
    assert odd["decode_times_as_pts.mp4"]["motion"] == "bitstream"
    assert (tmp_path / "demo" / "labels.csv").read_text().startswith("path,label\n")
    # second run reuses the files
    mtime = os.path.getmtime(result["videos"][0].path)
    assert {"neural", "jpeg", "h264", "thumbnail"} <= set(result["codec"]) and "H.264" in out
    assert "on videos it never saw" in out and "vs thumbnail" in out
    assert {r.format for r in result["shards"].values()} == {"codes", "video", "rgb"}
    assert all(r.index and r.clips > 0 for r in result["shards"].values())
    loading = result["loader"]
    assert loading["split_ok"] and loading["resume_ok"] and "[6/9]" in out
    assert loading["codes"]["samples"] == result["shards"]["codes"].clips
    assert loading["video"]["samples"] == result["shards"]["video"].clips
    augment = result["augment"]
    assert "[7/9]" in out and "-> S3D.for_codes" in out and augment["ms_per_batch"] > 0
    assert set(augment["report"]["ops"]) == {"crop", "flip"}
    rows = result["models"]["rows"]
    assert "[8/9]" in out and [r[0].split()[0] for r in rows] == ["IMRNet", "MVCGC"]
    losses = [float(x) for r in rows for x in r[2].split()]
    assert len(losses) == 6 and all(math.isfinite(x) and x > 0 for x in losses)
    bench = result["bench"]
    assert "[9/9]" in out and "codes-shards" in out and "vs file:rgb" in out
    assert os.path.getsize(bench["chart"]) > 10_000 and os.path.getsize(bench["sheet"].path) > 10_000
    assert len(bench["sheet"].psnr) == 6
    codes, rgb = bench["report"].row("codes-shards"), bench["report"].row("file:rgb")
    assert codes.clips == rgb.clips and codes.bytes_per_clip < rgb.bytes_per_clip
    run(tmp_path / "demo", videos_per_class=2, codec_steps=4, augnet_seconds=8)
    assert os.path.getmtime(result["videos"][0].path) == mtime


def test_cli_probe_json(video_factory, capsys):
    v = video_factory(bframes=2)
    assert main(["probe", "--json", v.path]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["codec"] == "h264" and record["num_frames"] == 24 and record["has_b_frames"]


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "directory", "bytes", "truncated"])
def test_bad_sources_raise_clear_errors(tmp_path, video_factory, kind):
    if kind == "missing":
        source, err = tmp_path / "nope.mp4", cvload.errors.VideoNotFoundError
    elif kind == "empty":
        (tmp_path / "e.mp4").write_bytes(b"")
        source, err = tmp_path / "e.mp4", cvload.errors.CorruptVideoError
    elif kind == "text":
        (tmp_path / "t.mp4").write_text("this is not a video\n" * 50)
        source, err = tmp_path / "t.mp4", cvload.errors.CorruptVideoError
    elif kind == "directory":
        source, err = tmp_path, cvload.errors.InvalidArgumentError
    elif kind == "bytes":
        source, err = b"\x00\x01garbage" * 100, cvload.errors.CorruptVideoError
    else:
        data = open(video_factory(bframes=2).path, "rb").read()
        source, err = data[: len(data) // 3], cvload.errors.CorruptVideoError
    with pytest.raises(err) as info:
        cvload.probe(source)
    assert "->" in str(info.value)  # says what to do
