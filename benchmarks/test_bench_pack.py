"""`cvload pack` throughput on the real videos of ../shared/videos (issue 5).

For each format, packs every video (broken ones included: they land in failures.jsonl)
with 1 and 2 workers, interleaved; reports videos/s, clips/s (ratio: 2 workers vs 1) and
bytes per clip. Clips of 16 frames; codes with a 16x64x64 codec (ts 4, ss 8, 3 groups,
32 channels: the architecture of the codec measured in issue 4; its weights do not change
the speed), rgb at 64x64.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

from benchmarks.conftest import RESULTS, SHARED
from cvload.shards import pack


@pytest.fixture(scope="module")
def bench_codec(tmp_path_factory):
    from cvload.codec import CodecConfig, VideoCodec

    path = tmp_path_factory.mktemp("codec") / "codec.pt"
    VideoCodec(CodecConfig(clip_frames=16, size=(64, 64), temporal_stride=4, spatial_stride=8,
                           groups=3, channels=32)).save(path)
    return path


@pytest.mark.parametrize("fmt", ["video", "rgb", "codes"])
def test_pack_throughput(benchmark, fmt, bench_codec):
    if not SHARED.exists():
        pytest.skip("needs ../shared/videos")
    options = {"video": {}, "rgb": {"size": 64}, "codes": {"codec": bench_codec}}[fmt]
    samples: dict[int, list] = {1: [], 2: []}
    results = {}

    def one_round():
        for workers in (1, 2) if len(samples[1]) % 2 == 0 else (2, 1):
            out = tempfile.mkdtemp(prefix=f"bench-pack-{fmt}-")
            try:
                result = pack([SHARED], out=out, format=fmt, clip_frames=16, shard_samples=16,
                              workers=workers, progress=False, device="cpu", **options)
            finally:
                shutil.rmtree(out, ignore_errors=True)
            samples[workers].append(result.seconds)
            results[workers] = result

    benchmark.pedantic(one_round, rounds=3, warmup_rounds=0)
    import numpy as np

    for workers in (1, 2):
        r = results[workers]
        median = float(np.median(samples[workers]))
        RESULTS["pack"][(fmt, f"workers_{workers}")] = {
            "median_s": median, "units": r.clips, "unit": "clips", "per_s": r.clips / median,
            "videos_per_s": r.videos / median, "bytes_per_clip": r.bytes / max(1, r.clips),
            "failures": r.failures, "videos": r.videos}
