"""Shards and `cvload pack`: formats, index, determinism, resumption, failures, safety."""

import hashlib
import io
import json
import os
import warnings
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

from cvload.errors import CodecMismatchError, CorruptVideoError, ShardError, UnsafeShardError
from cvload.shards import ShardDataset, decode_member, inspect_shards, pack, read_index
from tests import shared_videos as sv


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from tests.conftest import write_labelled_videos

    root = tmp_path_factory.mktemp("pack-src")
    return root, write_labelled_videos(root, 3, num_frames=24, motion_y=0)


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
    from cvload.codec import CodecConfig, VideoCodec

    path = tmp_path_factory.mktemp("codec") / "codec.pt"
    VideoCodec(CodecConfig(clip_frames=8, size=(32, 32), channels=8, res_blocks=0)).save(path)
    return path


def _digests(directory):
    return {n: hashlib.sha256(open(os.path.join(directory, n), "rb").read()).hexdigest()
            for n in sorted(os.listdir(directory)) if n.endswith(".tar")}


def _webdataset_samples(directory):
    import webdataset as wds

    index = read_index(directory)
    urls = [os.path.join(directory, s.name) for s in index.shards]
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))


@pytest.mark.parametrize("fmt", ["codes", "video", "rgb"])
def test_formats_round_trip_through_plain_webdataset_and_tar(videos, tiny_codec, tmp_path, fmt):
    root, _ = videos
    kwargs = {"codes": dict(codec=tiny_codec), "rgb": dict(size=32), "video": {}}[fmt]
    result = pack([root / "labels.csv"], out=tmp_path / fmt, format=fmt, clip_frames=8,
                  shard_samples=4, progress=False, **kwargs)
    index = read_index(tmp_path / fmt)
    assert index.format == fmt and index.num_samples == result.clips
    assert result.clips == 9  # 3 videos x 24 frames / 8 (the stride defaults to 8 frames)
    samples = _webdataset_samples(tmp_path / fmt)
    assert len(samples) == result.clips
    for sample in samples:
        meta = json.loads(sample["json"])
        assert int(sample["cls"]) == meta["label"]
        assert meta["frame_end"] - meta["frame_start"] == meta["frames"]
        if fmt == "codes":
            codes = np.load(io.BytesIO(sample["codes.npy"]), allow_pickle=False)
            # the default code format: 4x8x8 pixels per position, 2 groups of 16-bit codes
            assert codes.shape == (2, 4, 4, 2) and codes.dtype == np.uint16
            assert meta["codec_id"] == index.codec_id
        elif fmt == "rgb":
            rgb = np.load(io.BytesIO(sample["rgb.npy"]), allow_pickle=False)
            assert rgb.shape == (8, 32, 32, 3) and rgb.dtype == np.uint8
        else:
            import cvload

            info = cvload.probe(sample["mp4"])
            assert info.num_frames == meta["frames"] and info.keyframes[0] == 0
            clip = cvload.read_clip(sample["mp4"], start=1, num_frames=3, streams=("mv",))
            assert clip.mv.shape[0] == 3  # motion decodes on the fly from shard bytes
    listing = subprocess.run(["tar", "tf", os.path.join(tmp_path / fmt, "shard-000000.tar")],
                             capture_output=True, text=True, check=True).stdout.split()
    # plain tar lists exactly the members the index records, each sample's members
    # adjacent (WebDataset groups a sample by consecutive key) and of the format's kinds
    first = index.shards[0]
    key_of = {f"{key}.{suffix}": key for key in first.keys for suffix in first.members[key]}
    assert sorted(listing) == sorted(key_of)
    expected = {"codes": {"codes.npy", "cls", "json"}, "rgb": {"rgb.npy", "cls", "json"},
                "video": {"mp4", "cls", "json"}}[fmt]
    assert all(set(first.members[key]) == expected for key in first.keys)
    keys = [key_of[name] for name in listing]
    runs = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(runs) == len(set(runs)) == first.samples


def test_index_records_offsets_sha256_and_counts(videos, tmp_path):
    root, _ = videos
    pack([root], out=tmp_path / "p", format="rgb", size=16, clip_frames=8, shard_samples=4,
         progress=False)
    index = read_index(tmp_path / "p")
    assert [s.samples for s in index.shards] == [4, 4, 1]
    for shard in index.shards:
        path = tmp_path / "p" / shard.name
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard.sha256 and len(data) == shard.bytes
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                key, suffix = member.name.split(".", 1)
                offset, size = shard.members[key][suffix]
                assert data[offset:offset + size] == tar.extractfile(member).read()


def test_reruns_are_byte_identical_and_skip_finished_shards(videos, tmp_path):
    root, _ = videos
    a = pack([root], out=tmp_path / "a", format="rgb", size=16, clip_frames=8, shard_samples=4,
             progress=False)
    pack([root], out=tmp_path / "b", format="rgb", size=16, clip_frames=8, shard_samples=4,
         progress=False, workers=2)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    again = pack([root], out=tmp_path / "a", format="rgb", size=16, clip_frames=8,
                 shard_samples=4, progress=False)
    assert again.skipped_shards == a.units == a.shards == 3
    assert (tmp_path / "a" / "index.json").read_text() == (tmp_path / "b" / "index.json").read_text()


def test_shard_bytes_plans_shard_sizes(videos, tmp_path):
    root, _ = videos
    one = 8 * 16 * 16 * 3 + 128  # an rgb clip's .npy
    pack([root], out=tmp_path / "b", format="rgb", size=16, clip_frames=8,
         shard_bytes=3 * (one + 2560), progress=False)
    index = read_index(tmp_path / "b")
    assert [s.samples for s in index.shards] == [3, 3, 3]
    # tar pads an archive to whole 10240-byte records
    assert all(s.bytes <= 3 * (one + 2560) + tarfile.RECORDSIZE for s in index.shards)


def test_rerun_with_other_options_is_refused(videos, tmp_path):
    root, _ = videos
    pack([root], out=tmp_path / "o", format="rgb", size=16, clip_frames=8, progress=False)
    with pytest.raises(ShardError, match="different pack run"):
        pack([root], out=tmp_path / "o", format="rgb", size=24, clip_frames=8, progress=False)


def test_shard_range_splits_the_work(videos, tmp_path):
    root, _ = videos
    first = pack([root], out=tmp_path / "r", format="rgb", size=16, clip_frames=8,
                 shard_samples=4, shard_range=(0, 2), progress=False)
    assert first.index is None and first.shards == 0  # unit 2 missing: nothing published
    assert _digests(tmp_path / "r") == {}
    assert sorted(_digests(tmp_path / "r" / ".staging")) == ["unit-000000.tar", "unit-000001.tar"]
    second = pack([root], out=tmp_path / "r", format="rgb", size=16, clip_frames=8,
                  shard_samples=4, shard_range=(2, 3), progress=False)
    assert second.index is not None and read_index(tmp_path / "r").num_samples == 9
    assert not (tmp_path / "r" / ".staging").exists()


@pytest.mark.slow
def test_sigkill_then_rerun_finishes_identically(tmp_path):
    from cvload.synthetic import write_video

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):  # 4 videos x 25 clips of 4 frames = 100 one-clip shards
        write_video(src / f"k{i}.mp4", width=96, height=64, num_frames=100, gop=20, seed=i)
    args = dict(format="rgb", size=48, clip_frames=4, shard_samples=1, progress=False)
    reference = tmp_path / "ref"
    pack([src], out=reference, **args)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cvload", "pack", str(src), "--out", str(out), "--format", "rgb",
           "--size", "48", "--clip-frames", "4", "--shard-samples", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / ".staging" / "unit-000002.tar").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (out / "index.json").exists(), "the run finished before the kill"
    subprocess.run(cmd, check=True, capture_output=True)
    assert _digests(out) == _digests(reference) and len(_digests(out)) == 100
    assert not [n for n in os.listdir(out) if n.endswith(".partial")]
    assert (out / "index.json").read_text() == (reference / "index.json").read_text()


@pytest.mark.needs_shared
def test_failures_are_listed_under_skip_and_fatal_under_fail(videos, tmp_path):
    root, good = videos
    broken = [str(sv.get("decord/corrupted.mp4").path),
              str(sv.get("libwebm/fixed_lacing_bad_lace_size.mkv").path)]
    (tmp_path / "notes.mp4").write_text("not a video")
    inputs = [good[0], *broken, str(tmp_path / "notes.mp4")]
    result = pack(inputs, out=tmp_path / "s", format="rgb", size=16, clip_frames=8,
                  shard_samples=64, progress=False)
    lines = [json.loads(l) for l in open(result.failure_log)]
    reasons = {os.path.basename(l["source"]): l["error"] for l in lines}
    assert reasons["fixed_lacing_bad_lace_size.mkv"] == "EmptyVideoError"
    assert reasons["notes.mp4"] == "CorruptVideoError"
    assert reasons["corrupted.mp4"] == "CorruptVideoError"  # clips past frame 28 fail
    assert result.failures == len(lines) >= 3 and result.clips >= 3 + 3
    assert read_index(tmp_path / "s").num_samples == result.clips

    with pytest.warns(RuntimeWarning, match=f"{len(lines)} video"):
        warned = pack(inputs, out=tmp_path / "w", format="rgb", size=16, clip_frames=8,
                      handler="warn", progress=False)
    assert warned.failures == result.failures and warned.clips == result.clips

    for name, options in (("f", dict(handler="raise")), ("g", dict(on_error="fail"))):
        with pytest.raises(CorruptVideoError), warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            pack(inputs, out=tmp_path / name, format="rgb", size=16, clip_frames=8,
                 progress=False, **options)
        # on_error is the deprecated name of handler
        assert any(issubclass(w.category, DeprecationWarning) for w in seen) == ("on_error" in options)
        assert not (tmp_path / name / "index.json").exists()
        assert not [n for n in os.listdir(tmp_path / name) if n.endswith(".partial")]


def test_codec_shape_mismatch_is_caught_before_writing(videos, tiny_codec, tmp_path):
    root, _ = videos
    with pytest.raises(CodecMismatchError, match="does not divide"):
        pack([root], out=tmp_path / "m", format="codes", codec=tiny_codec, clip_frames=7,
             progress=False)
    assert not (tmp_path / "m").exists() or not os.listdir(tmp_path / "m")


def test_hostile_members_are_refused_and_nothing_runs(tmp_path, capsys):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(UnsafeShardError):
        decode_member("x.pickle", pickle.dumps(Evil()))
    with pytest.raises(UnsafeShardError):
        decode_member("x.pyd", pickle.dumps(Evil()))
    buffer = io.BytesIO()
    np.save(buffer, np.array([Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(ShardError, match="cannot be decoded"):
        decode_member("x.rgb.npy", buffer.getvalue())
    assert "pwned" not in capsys.readouterr().out
    # inspect --verify reports such a shard instead of running it
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        data = pickle.dumps(Evil())
        info = tarfile.TarInfo("a.pickle")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    report = inspect_shards(path, verify=True, print_fn=lambda *a: None)
    assert report["problems"] and "pwned" not in capsys.readouterr().out


def test_cli_pack_and_inspect(videos, tmp_path, capsys):
    from cvload.cli import main

    root, _ = videos
    assert main(["pack", str(root / "labels.csv"), "--out", str(tmp_path / "c"), "--format",
                 "video", "--clip-frames", "8"]) == 0
    out = capsys.readouterr().out
    assert "videos 3, clips 9" in out and "index:" in out
    assert main(["inspect", str(tmp_path / "c"), "--verify"]) == 0
    assert "verify: ok" in capsys.readouterr().out
    shard = tmp_path / "c" / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:-2000])  # damage it
    assert main(["inspect", str(tmp_path / "c"), "--verify"]) == 1


@pytest.mark.slow
def test_ray_engine_writes_the_same_shards_as_local(videos, tmp_path):
    """Ray Data on a local 2-CPU cluster produces byte-identical shards and index."""
    ray = pytest.importorskip("ray", reason="Ray Data is installed by `make test`; absent here")
    root, _ = videos
    local = pack([root], out=tmp_path / "local", format="video", clip_frames=8,
                 shard_samples=3, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = pack([root], out=tmp_path / "ray", format="video", clip_frames=8,
                      shard_samples=3, engine="ray", workers=2, progress=False)
    finally:
        ray.shutdown()
    assert remote.shards == local.shards == 3
    assert _digests(tmp_path / "ray") == _digests(tmp_path / "local")
    assert (tmp_path / "ray" / "index.json").read_text() == \
        (tmp_path / "local" / "index.json").read_text()


@pytest.mark.needs_shared
def test_video_format_on_every_real_codec(tmp_path):
    """GOP-aligned remux works for H.264, MPEG-4, HEVC, VP9 and AV1 (libdav1d) sources;
    broken files are listed, and nothing crashes."""
    inputs = [str(e.path) for e in sv.entries(videos_only=True)]
    result = pack(inputs, out=tmp_path / "all", format="video", clip_frames=8,
                  shard_samples=64, progress=False)
    failed = {os.path.basename(json.loads(l)["source"]) for l in open(result.failure_log)}
    assert failed <= {"corrupted.mp4", "fixed_lacing_bad_lace_size.mkv",
                      "invalid_vp9_bitstream-bug_1417.webm", "unordered.mov"}
    samples = _webdataset_samples(tmp_path / "all")
    codecs = {json.loads(s["json"])["codec"] for s in samples}
    assert {"h264", "mpeg4", "hevc", "vp9", "av1"} <= codecs
    import cvload

    for s in samples:
        payload = next(v for k, v in s.items() if k in ("mp4", "264", "h265"))
        assert cvload.probe(payload).num_frames == json.loads(s["json"])["frames"]


def test_full_disk_gives_a_clear_error_and_leaves_nothing_partial(videos, tmp_path, monkeypatch):
    import errno

    from cvload.shards import _writer

    root, _ = videos
    real_write = _writer.ShardWriter.write
    calls = {"n": 0}

    def failing_write(self, key, sample):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, key, sample)

    monkeypatch.setattr(_writer.ShardWriter, "write", failing_write)
    with pytest.raises(ShardError, match="No space left on device") as info:
        pack([root], out=tmp_path / "full", format="rgb", size=16, clip_frames=8,
             shard_samples=4, progress=False)
    assert "free some space" in str(info.value)
    names = os.listdir(tmp_path / "full")
    staged = os.listdir(tmp_path / "full" / ".staging")
    assert "unit-000000.tar" in staged and "index.json" not in names
    assert not [n for n in names + staged if n.endswith(".partial")]
    monkeypatch.setattr(_writer.ShardWriter, "write", real_write)
    done = pack([root], out=tmp_path / "full", format="rgb", size=16, clip_frames=8,
                shard_samples=4, progress=False)  # the rerun resumes and publishes
    assert done.skipped_shards == 1 and done.index is not None

@pytest.mark.slow
@pytest.mark.needs_shared
@pytest.mark.parametrize("workers", [1, 2])
def test_failing_clips_never_leave_holes_or_empty_shards(tmp_path, workers):
    """Videos whose clips fail (one damaged past frame 28, one with no frames, one not a
    video, one too short) among good ones: every shard but the last is full, none is
    empty, plain webdataset reads every one, a good file's clips are all there, and a
    run killed mid-way reruns to the same bytes."""
    import webdataset as wds

    from cvload.synthetic import write_video

    src = tmp_path / "src"
    src.mkdir()
    good = [write_video(src / f"g{i}.mp4", width=64, height=48, num_frames=40, gop=10,
                        bframes=2 * (i % 2), seed=i).path for i in range(3)]
    (src / "notes.mp4").write_text("not a video")
    write_video(src / "short.mp4", width=64, height=48, num_frames=3)
    inputs = [src, str(sv.get("decord/corrupted.mp4").path),
              str(sv.get("libwebm/fixed_lacing_bad_lace_size.mkv").path)]
    args = dict(format="rgb", size=16, clip_frames=4, shard_samples=7, progress=False)
    result = pack(inputs, out=tmp_path / "p", workers=workers, **args)
    index = read_index(tmp_path / "p")
    counts = [s.samples for s in index.shards]
    assert counts[:-1] == [7] * (len(counts) - 1) and 0 < counts[-1] <= 7
    assert sum(counts) == result.clips == 3 * 10 + 7  # 7 clips of corrupted.mp4 decode
    for shard in index.shards:
        samples = list(wds.WebDataset(str(tmp_path / "p" / shard.name), shardshuffle=False))
        assert len(samples) == shard.samples
    failures = [json.loads(line) for line in open(result.failure_log)]
    failed = {os.path.basename(f["source"]) for f in failures}
    assert failed == {"corrupted.mp4", "fixed_lacing_bad_lace_size.mkv", "notes.mp4",
                      "short.mp4"}
    assert not failed & {os.path.basename(p) for p in good}
    assert all(f["reason"] for f in failures)
    # kill -9 while units are written, rerun: identical shards and index
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cvload", "pack", *map(str, inputs), "--out", str(out),
           "--format", "rgb", "--size", "16", "--clip-frames", "4", "--shard-samples", "7"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / ".staging" / "unit-000001.tar").exists():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "index.json").exists(), "the run finished before the kill"
    subprocess.run(cmd, check=True, capture_output=True)
    assert _digests(out) == _digests(tmp_path / "p")
    assert (out / "index.json").read_text() == (tmp_path / "p" / "index.json").read_text()


def test_a_run_without_any_good_clip_publishes_nothing(tmp_path):
    (tmp_path / "a.mp4").write_text("not a video")
    with pytest.raises(ShardError, match="no clip of the 1 inputs"):
        pack([tmp_path / "a.mp4"], out=tmp_path / "o", format="rgb", size=16, clip_frames=4,
             progress=False)
    assert not [n for n in os.listdir(tmp_path / "o") if n.endswith(".tar")]
    assert not (tmp_path / "o" / "index.json").exists()


def test_malformed_index_entry_names_the_index(tmp_path, videos):
    """A hand-edited index.json whose entry lost a field, or lists fewer keys than
    samples, is refused with the index's path, not a KeyError deep in the reader."""
    root, _ = videos
    pack([root], out=tmp_path / "p", format="rgb", size=16, clip_frames=8, shard_samples=4,
         progress=False)
    index_path = tmp_path / "p" / "index.json"
    good = json.loads(index_path.read_text())
    broken = json.loads(index_path.read_text())
    del broken["shards"][0]["members"]
    index_path.write_text(json.dumps(broken))
    with pytest.raises(ShardError, match=r"index\.json.*malformed shard entry"):
        ShardDataset(tmp_path / "p")
    broken = json.loads(json.dumps(good))
    broken["shards"][1]["keys"] = broken["shards"][1]["keys"][:-1]
    index_path.write_text(json.dumps(broken))
    with pytest.raises(ShardError, match="lists 3 keys for 4 samples"):
        ShardDataset(tmp_path / "p")
    index_path.write_text(json.dumps(good))
    assert len(ShardDataset(tmp_path / "p")) == 9
