"""cvload against the libraries users would otherwise reach for (issue 16), on the same
clips with the same output.

Group ``peers_decode``: 16-frame RGB clips ``(16, H, W, 3)`` uint8 at the video's own
size, 4 clips per video at starts spread over the file (not at keyframes), each clip
opened from the path as a dataset's ``__getitem__`` would. Every peer's frames are
checked equal to cvload's before timing (the table gives the largest difference).
Single-threaded decoding throughout, as in DataLoader workers, plus decord with its own
thread choice:

- ``cvload_read_clip`` (the baseline): ``cvload.read_clip(streams=("rgb",))``;
- ``pyav_seek_decode``: plain PyAV, seek to the start's timestamp, decode, ``to_ndarray``;
- ``decord_1thread`` / ``decord_auto_threads``: ``decord.VideoReader.get_batch``;
- ``spdl_1thread``: ``spdl.io.load_video`` over the clip's time window (FFmpeg's shared
  libraries must be installed: Debian ``libavformat59 libavcodec59 libavfilter8
  libswscale6 libavdevice59``; skipped otherwise);
- ``torchcodec``: ``VideoDecoder.get_frames_in_range`` (the PyPI wheel links CUDA torch:
  skipped with a CPU-only torch).

Group ``peers_loading``: the loader suite's shards (``rgb`` 128x128 16-frame clips and
the repeated ``codes``), batch 32, 2 workers, persistent, warm: ``cvload.DataLoader``
(baseline), torch's ``DataLoader`` and torchdata's ``StatefulDataLoader`` over the same
``cvload.ShardDataset``, and plain ``webdataset`` (``WebDataset`` over the tars, npy
members parsed with ``allow_pickle=False``, torch ``DataLoader`` batching).
"""

from __future__ import annotations

import glob
import io
import os

import numpy as np
import pytest
import torch

import cvload
from benchmarks.conftest import NOTES, RESULTS, interleaved

FRAMES = 16
VIDEOS = ["h264_320x240_B", "h264_640x480_B", "golden_720p_P"]
_SKIPPED: dict[str, str] = {}


def _starts(info) -> list[int]:
    return [int(s) for s in np.linspace(3, info.num_frames - FRAMES - 1, 4).round()]


def _pyav(path, info, start):
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        s.codec_context.thread_type, s.codec_context.thread_count = "SLICE", 1
        target = int(info.frame_pts[start])
        c.seek(target, stream=s, backward=True)
        out = []
        for frame in c.decode(s):
            if frame.pts is None or frame.pts < target:
                continue
            out.append(frame.to_ndarray(format="rgb24", threads=1))
            if len(out) == FRAMES:
                break
    return np.stack(out)


def _decord(threads):
    import decord

    def read(path, info, start):
        reader = decord.VideoReader(path, num_threads=threads)
        return reader.get_batch(list(range(start, start + FRAMES))).asnumpy()
    return read


def _spdl(path, info, start):
    import spdl.io

    t0 = float(info.frame_pts[start] * info.time_base)
    t1 = float(info.frame_pts[start + FRAMES - 1] * info.time_base) + 0.5 / float(info.fps)
    frames = np.asarray(spdl.io.load_video(path, (t0, t1), decode_config=spdl.io.decode_config(
        decoder_options={"threads": "1"})))
    return frames[:FRAMES]


def _torchcodec(path, info, start):
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path, num_ffmpeg_threads=1)
    return decoder.get_frames_in_range(start, start + FRAMES).data.permute(0, 2, 3, 1).numpy()


def _loadable(name: str, load) -> bool:
    """Whether a peer's native libraries load; the reason goes under the table if not."""
    try:
        load()
        return True
    except Exception as err:  # ImportError, OSError, RuntimeError from native loads
        _SKIPPED[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        return False


def _load_spdl():
    import spdl.io

    spdl.io.load_video  # noqa: B018 (loads FFmpeg's libraries)


def _peer_readers() -> dict:
    readers = {"pyav_seek_decode": _pyav}
    if _loadable("decord", lambda: __import__("decord")):
        readers.update(decord_1thread=_decord(1), decord_auto_threads=_decord(0))
    if _loadable("spdl", _load_spdl):
        readers["spdl_1thread"] = _spdl
    if _loadable("torchcodec", lambda: __import__("torchcodec.decoders")):
        readers["torchcodec"] = _torchcodec
    return readers


@pytest.mark.parametrize("video", VIDEOS)
def test_peers_decode(benchmark, bench_videos, video):
    if video not in bench_videos:
        pytest.skip(f"{video} needs ../shared/videos")
    path = bench_videos[video]
    info = cvload.probe(path)
    starts = _starts(info)

    def ours(path, info, start):
        return cvload.read_clip(path, start=start, num_frames=FRAMES, streams=("rgb",),
                                info=info).rgb

    readers = {"cvload_read_clip": ours, **_peer_readers()}
    reference = [ours(path, info, s) for s in starts]
    differences = {}
    for name, read in list(readers.items()):
        try:
            got = [read(path, info, s) for s in starts]
        except Exception as err:
            _SKIPPED[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
            del readers[name]
            continue
        assert all(g.shape == r.shape for g, r in zip(got, reference)), name
        differences[name] = max(int(np.abs(g.astype(np.int16) - r).max())
                                for g, r in zip(got, reference))

    def clips(read):
        return lambda: [read(path, info, s) for s in starts]

    interleaved(benchmark, "peers_decode", video,
                {name: (clips(read), len(starts), "clips") for name, read in readers.items()},
                rounds=7)
    for name, diff in differences.items():
        RESULTS["peers_decode"][(video, name)]["max_diff_vs_cvload"] = diff
    NOTES["peers_decode"].append(f"{video}: largest pixel difference from cvload's frames: " + ", ".join(
        f"{name} {diff}" for name, diff in differences.items() if name != "cvload_read_clip"))
    for name, why in _SKIPPED.items():
        NOTES["peers_decode"].append(f"Not measured: {name} ({why})")


@pytest.fixture(scope="module")
def shards():
    from benchmarks.test_bench_loader import _build
    from cvload._util import cache_dir

    return _build(cache_dir("bench"), 128)


def _wds_loader(directory, batch_size, workers):
    import webdataset as wds

    def decode(sample):
        out = {}
        for key, value in sample.items():
            if key.endswith(".npy") or key == "npy" or key.endswith("npy"):
                out[key.split(".")[0]] = torch.from_numpy(
                    np.load(io.BytesIO(value), allow_pickle=False))
        return out

    urls = sorted(glob.glob(os.path.join(directory, "shard-*.tar")))
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False).map(decode)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                       persistent_workers=workers > 0)


@pytest.mark.parametrize("fmt", ["rgb", "codes"])
def test_peers_loading(benchmark, shards, fmt):
    from torchdata.stateful_dataloader import StatefulDataLoader

    directory = str(shards["rgb" if fmt == "rgb" else "codes_repeated"])
    dataset = cvload.ShardDataset(directory)
    common = dict(batch_size=32, num_workers=2, persistent_workers=True)
    loaders = {
        "cvload_dataloader": cvload.DataLoader(dataset, **common),
        "torch_dataloader": torch.utils.data.DataLoader(cvload.ShardDataset(directory),
                                                        **common),
        "torchdata_stateful": StatefulDataLoader(cvload.ShardDataset(directory), **common),
        "webdataset_plain": _wds_loader(directory, 32, 2),
    }

    def drain(loader):
        def run():
            n = 0
            for batch in loader:
                value = batch["codes" if fmt == "codes" else "rgb"]
                n += len(value)
            return n
        return run

    counts = {name: drain(loader)() for name, loader in loaders.items()}
    assert len(set(counts.values())) == 1, counts  # every loader delivers every sample
    interleaved(benchmark, "peers_loading", f"{fmt} shards, 2 workers", {
        name: (drain(loader), len(dataset), "clips") for name, loader in loaders.items()},
        rounds=5)
