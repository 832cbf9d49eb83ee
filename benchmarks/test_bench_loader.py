"""cvload.DataLoader throughput (issue 6).

Group ``loader``: the same 16-frame clips at 128x128 and 256x256 as ``codes`` shards
(a cvload codec: ts 2, ss 8, 3 FSQ groups), ``rgb`` shards (decoded frames) and
``video`` shards decoded on the fly to RGB, read through ``cvload.DataLoader`` with
``num_workers`` 0 and 2 (persistent workers, warm), batch 32; with 2 workers also the
worker types the default does not choose for shards (codes: threads and processes;
rgb: processes). Clips/s and MB/s of shard
data; the ratio is against decoding the same clips from video to RGB with the same
number of workers. The 64 clips come from 8 synthetic H.264 videos (B-frames, GOP 16);
the codes of those 64 clips are repeated 64x (4096 samples) so that one pass lasts long
enough to time.

Group ``overhead``: an in-memory map-style dataset (20,000 items) through torch's
DataLoader and through cvload's (plain, and with the CPU device stage), same rounds.
"""

from __future__ import annotations


import pytest
import torch

from benchmarks.conftest import RESULTS, interleaved

BATCH = 32
CLIPS_PER_VIDEO, VIDEOS, FRAMES = 8, 8, 16
REPEAT_CODES = 64


def _build(root, size: int) -> dict:
    """Video, rgb and codes shards of the same clips; cached between runs."""
    from cvload.codec import CodecConfig, VideoCodec
    from cvload.shards import ShardIndex, ShardWriter, pack, read_index, write_index
    from cvload.synthetic import write_video

    base = root / f"loader-{size}"
    done = base / "done"
    dirs = {fmt: base / fmt for fmt in ("video", "rgb", "codes", "codes_repeated")}
    if done.exists():
        return dirs
    src = base / "src"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(VIDEOS):
        write_video(src / f"v{i}.mp4", width=size, height=size, num_frames=FRAMES * CLIPS_PER_VIDEO,
                    gop=FRAMES, bframes=2, motion=(1 + i % 3, i % 2), seed=i)
    codec_path = base / "codec.pt"
    VideoCodec(CodecConfig(clip_frames=FRAMES, size=(size, size), channels=32)).save(codec_path)
    common = dict(clip_frames=FRAMES, shard_samples=16, progress=False)
    pack([src], out=dirs["video"], format="video", **common)
    pack([src], out=dirs["rgb"], format="rgb", size=size, **common)
    pack([src], out=dirs["codes"], format="codes", codec=codec_path, device="cpu", **common)
    # the same code arrays, repeated, in shards of 256
    import cvload

    originals = [cvload.ShardDataset(dirs["codes"])[i] for i in range(len(
        cvload.ShardDataset(dirs["codes"])))]
    out = dirs["codes_repeated"]
    out.mkdir(exist_ok=True)
    index = ShardIndex(format="codes", codec_id=read_index(dirs["codes"]).codec_id)
    total = len(originals) * REPEAT_CODES
    for shard in range(0, total, 256):
        with ShardWriter(out / f"shard-{shard // 256:06d}.tar") as writer:
            for g in range(shard, min(total, shard + 256)):
                sample = originals[g % len(originals)]
                writer.write(f"c{g:06d}", {"codes.npy": sample["codes"].numpy(),
                                           "cls": int(sample.get("label", 0))})
            index.shards.append(writer.close())
    write_index(out, index)
    done.write_text("ok")
    return dirs


@pytest.fixture(scope="module")
def loader_shards():
    from cvload._util import cache_dir

    root = cache_dir("bench")
    return {size: _build(root, size) for size in (128, 256)}


def _pass(loader) -> tuple:
    def run():
        n = 0
        for batch in loader:
            n += len(batch["__key__"])
        return n
    return run


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("workers", [0, 2])
def test_loader_formats(benchmark, loader_shards, size, workers):
    import cvload

    dirs = loader_shards[size]
    sources = {"video_to_rgb": (dirs["video"], "auto"), "rgb_shards": (dirs["rgb"], "auto"),
               "codes_shards": (dirs["codes_repeated"], "auto")}
    if workers:  # what the default (codes read inline) is chosen over
        sources["codes_shards_threads"] = (dirs["codes_repeated"], "thread")
        sources["codes_shards_processes"] = (dirs["codes_repeated"], "process")
        sources["rgb_shards_processes"] = (dirs["rgb"], "process")
    methods, loaders = {}, {}
    for name, (directory, worker_type) in sources.items():
        loader = cvload.DataLoader(cvload.ShardDataset(directory), batch_size=BATCH,
                                   num_workers=workers, persistent_workers=workers > 0,
                                   worker_type=worker_type)
        loaders[name] = loader
        methods[name] = (_pass(loader), len(loader.dataset), "clips")
    interleaved(benchmark, "loader", f"{size}x{size} workers={workers}", methods, rounds=5)
    for name, loader in loaders.items():
        row = RESULTS["loader"][(f"{size}x{size} workers={workers}", name)]
        passes = max(1, loader.stats.samples // len(loader.dataset))
        row["mb_per_pass"] = loader.stats.bytes_read / passes / 1e6
        row["mb_per_s"] = row["mb_per_pass"] / row["median_s"]


class InMemory(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.x = torch.randn(n, 16)
        self.y = torch.arange(n) % 10

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_overhead_over_torch(benchmark, workers):
    import cvload

    data = InMemory(20_000)
    common = dict(batch_size=64, num_workers=workers, persistent_workers=workers > 0)
    loaders = {
        "torch_dataloader": torch.utils.data.DataLoader(data, **common),
        "cvload_dataloader": cvload.DataLoader(data, **common),
        "cvload_device_cpu": cvload.DataLoader(data, device="cpu", **common),
    }

    def drain(loader):
        def run():
            for _ in loader:
                pass
        return run

    methods = {name: (drain(loader), len(data), "items") for name, loader in loaders.items()}
    interleaved(benchmark, "overhead", f"in-memory workers={workers}", methods, rounds=11)


@pytest.mark.parametrize("size", [128, 224])
@pytest.mark.parametrize("workers", [0, 2])
def test_loader_scaling(benchmark, size, workers):
    """Issue 16: how each pipeline's cost grows with the clip (8, 16, 32 frames) and the
    frame size (128 and 224 square), with 0 and 2 workers: ``cvload.bench`` on 6
    generated 320x240 H.264 videos with B-frames (96 frames, GOP 16), 16 clips per
    length, 3 interleaved rounds, batch 8. RGB decoded from the files is the baseline;
    ``video-shards:LAYOUT`` decode video shards to each layout."""
    from benchmarks.conftest import RESULTS_DIR, TEXT
    from cvload._util import cache_dir
    from cvload.bench import BenchOptions, format_report, generated_videos, plot_report, run_bench

    root = cache_dir("bench", "scaling")
    videos = generated_videos(root / "videos", count=6, num_frames=96, width=320, height=240)
    options = BenchOptions(lengths=(8, 16, 32), clips=16, rounds=3, batch_size=8,
                           workers=workers, size=(size, size))
    reports = []
    benchmark.pedantic(lambda: reports.append(run_bench(videos, options=options, workdir=root,
                                                        print_fn=lambda *a: None)),
                       rounds=1, warmup_rounds=0)
    report = reports[0]
    name = f"scaling_{size}px_workers{workers}"
    TEXT[name] = format_report(report)
    plots = RESULTS_DIR / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_report(report, plots / f"{name}.png")
    assert {r.frames for r in report.rows} == {8, 16, 32}
