"""``cvload demo``: the main job end to end, on a small synthetic labelled video set.

It grows as the project does: today it generates real H.264 videos (with and without
B-frames, five motion classes), probes them and three files laid out as other tools write
them (packed B-frames in AVI, decode times as pts, Cinepak), decodes every compressed-domain layout
through a 2-worker torch DataLoader, checks the motion read from the bitstream against
the ground truth each class was made with, then trains a small neural codec on some of the
videos and compares it with JPEG and H.264 at the same bytes on the others, packs the
clips as codes, video and rgb shards, and reads them back through ``cvload.DataLoader``
(throughput, an exact two-rank split, a mid-epoch resume, a device transform), trains a
latent augmentation network, takes steps of the reference models, draws a contact sheet
and ends with ``cvload bench --quick``'s table on the demo videos.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from cvload._util import cache_dir, format_table


def run(root: str | os.PathLike[str] | None = None, *, videos_per_class: int = 2,
        codec_steps: int = 600, codec_seconds: float = 75.0, augnet_seconds: float = 40.0,
        print_fn=print) -> dict:
    """Run the demo; returns what it measured (also printed)."""
    from cvload import probe
    from cvload.synthetic import make_dataset

    root = Path(root) if root is not None else cache_dir("demo", "videos")
    print_fn(f"[1/9] synthetic labelled videos in {root}")
    start = time.perf_counter()
    videos = make_dataset(root, videos_per_class=videos_per_class)
    print_fn(f"      {len(videos)} videos ready in {time.perf_counter() - start:.2f}s")

    print_fn("[2/9] probe")
    rows, infos = [], []
    for v in videos:
        info = probe(v.path)
        infos.append(info)
        rows.append((
            os.path.relpath(v.path, root), v.label_name, info.codec,
            f"{info.width}x{info.height}", info.num_frames, info.fps,
            "/".join(map(str, info.gop_lengths)), "yes" if info.has_b_frames else "no",
            {True: "yes", False: "no", None: "?"}[info.exports_motion_vectors],
            f"{v.motion[0]:+d},{v.motion[1]:+d}",
        ))
    print_fn(format_table(
        ["video", "class", "codec", "size", "frames", "fps", "GOPs", "B-frames", "MVs",
         "motion px/frame"], rows))
    odd = odd_files_step(root, print_fn=print_fn)
    layouts = decode_layouts(videos, print_fn=print_fn)
    codec = codec_step(videos, cache_dir("demo"), steps=codec_steps, max_seconds=codec_seconds,
                       print_fn=print_fn)
    shards = pack_step(root, cache_dir("demo"), codec["path"], print_fn=print_fn)
    loading = loader_step(cache_dir("demo"), codec["path"], print_fn=print_fn)
    from cvload._demo_models import augment_step, models_step

    augment = augment_step(videos, cache_dir("demo"), codec["path"], max_seconds=augnet_seconds,
                           print_fn=print_fn)
    models = models_step(cache_dir("demo"), print_fn=print_fn)
    from cvload._demo_bench import bench_step

    bench = bench_step(videos, cache_dir("demo"), codec["path"], print_fn=print_fn)
    return {"root": str(root), "videos": videos, "infos": infos, "odd": odd, "layouts": layouts,
            "codec": codec, "shards": shards, "loader": loading, "augment": augment,
            "models": models, "bench": bench}


class _EmbedCodes(torch.nn.Module):
    """A device transform for the demo: codes -> the codec's float latents, batched."""

    def __init__(self, codec) -> None:
        super().__init__()
        self.codec = codec

    @torch.no_grad()
    def forward(self, batch: dict) -> dict:
        return dict(batch, latents=self.codec.embed(batch["codes"].long()))


def odd_files_step(root, *, print_fn=print) -> dict:
    """Step 2, continued: files laid out the way other tools write them (DivX/Xvid packed
    B-frames in AVI, OpenCV's MP4 with decode times as pts, Cinepak without vectors):
    probe orders them, and every clip start equals plain sequential decoding."""
    import hashlib

    import av

    import cvload
    from cvload.oddvideo import (encode_simple, write_decode_times_as_pts,
                                 write_packed_bframes_avi)

    makers = {"packed_bframes.avi": write_packed_bframes_avi,
              "decode_times_as_pts.mp4": write_decode_times_as_pts,
              "cinepak.avi": encode_simple("cinepak", "avi", pix_fmt="rgb24")}
    folder = Path(root) / "odd"
    folder.mkdir(parents=True, exist_ok=True)
    rows, out = [], {}
    for name, make in makers.items():
        path = folder / name
        if not path.exists():
            make(path)
        info = cvload.probe(path)
        with av.open(str(path)) as container:
            digests = [hashlib.sha1(f.to_ndarray(format="rgb24", threads=1).tobytes()).digest()
                       for f in container.decode(container.streams.video[0])]
        equal = sum(
            [hashlib.sha1(rgb.tobytes()).digest() for rgb in cvload.read_clip(
                path, start=s, num_frames=min(3, info.num_frames - s), streams=("rgb",),
                info=info).rgb] == digests[s:s + 3]
            for s in range(info.num_frames))
        try:
            cvload.read_clip(path, start=1, num_frames=2, streams=("mv",), info=info)
            motion = "bitstream"
        except cvload.errors.NoMotionVectorsError as err:  # said, never zeros
            clip = cvload.read_clip(path, start=1, num_frames=2, streams=("mv",), info=info,
                                    mv_source="auto")
            motion = ("estimated: " if clip.mv_estimated else "") + \
                ("B-frames without vectors" if "B-frames" in err.message else "no vectors")
        rows.append((name, info.codec, info.container, f"{info.num_frames}/{len(digests)}",
                     info.frame_order, info.count_method, f"{equal}/{info.num_frames}", motion))
        out[name] = {"frames": info.num_frames, "decoded": len(digests), "equal": equal,
                     "order": info.frame_order, "reason": info.order_reason,
                     "motion": motion}
    print_fn("      files as other tools write them: every clip start vs sequential decoding")
    print_fn(format_table(["file", "codec", "container", "frames/decoded", "order", "counted",
                           "starts equal", "motion of frames 1-2"], rows))
    for name, facts in out.items():
        print_fn(f"      {name}: {facts['reason']}")
    if any(f["equal"] != f["frames"] or f["frames"] != f["decoded"] for f in out.values()):
        raise RuntimeError("demo: a clip start differs from sequential decoding")
    return out


def loader_step(workdir, codec_path, *, print_fn=print) -> dict:
    """Step 6: read the shards back through cvload.DataLoader: throughput per format,
    an exact two-rank split, a mid-epoch resume, and a device transform."""
    import cvload
    from cvload.codec import VideoCodec

    print_fn("[6/9] read the shards with cvload.DataLoader (shuffled, 2 workers)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows, out = [], {}
    for fmt in ("codes", "rgb", "video"):
        directory = os.path.join(workdir, f"shards-{fmt}")
        transforms = []
        if fmt == "codes":
            codec = VideoCodec.load(codec_path).to(device).eval()
            transforms = [_EmbedCodes(codec)]
        loader = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True, seed=0),
                                   batch_size=8, num_workers=2, device=device,
                                   gpu_transforms=transforms)
        start = time.perf_counter()
        shapes = None
        for batch in loader:
            main = batch.get("latents", batch.get("codes", batch.get("rgb")))
            if shapes is None:
                shapes = (f"{tuple(main.shape)} {str(main.dtype).replace('torch.', '')} "
                          f"on {main.device.type}")
        seconds = time.perf_counter() - start
        stats = loader.stats
        rows.append((fmt, loader.worker_type, stats.samples, len(loader),
                     f"{stats.samples / seconds:.0f}", f"{stats.bytes_read / 1e6:.2f}", shapes))
        out[fmt] = stats.as_dict()
    print_fn(format_table(["format", "workers", "clips", "batches", "clips/s incl. first batch",
                           "MB read", "first tensor of a batch (after the device stage)"], rows))

    # two ranks, as torchrun would set them: same batch count, every clip exactly once
    directory = os.path.join(workdir, "shards-codes")
    seen, counts = [], []
    saved_env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE")}
    try:
        for rank in range(2):
            os.environ.update(RANK=str(rank), WORLD_SIZE="2")
            loader = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True),
                                       batch_size=4)
            batches = [b["__index__"].tolist() for b in loader]
            counts.append(len(batches))
            seen += [i for b in batches for i in b]
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    total = len(cvload.ShardDataset(directory))
    split_ok = counts[0] == counts[1] and set(seen) == set(range(total))
    print_fn(f"      2 ranks: {counts[0]} and {counts[1]} batches, {len(set(seen))}/{total} clips "
             f"covered, {len(seen) - total} padded repeat(s): {'ok' if split_ok else 'WRONG'}")

    # stop after 3 batches, resume in a new loader with another worker count
    first = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True), batch_size=4,
                              num_workers=0)
    reference = [b["__index__"].tolist() for b in first]
    first = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True), batch_size=4)
    iterator = iter(first)
    head = [next(iterator)["__index__"].tolist() for _ in range(3)]
    state = first.state_dict()
    resumed = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True), batch_size=4,
                                num_workers=2, worker_type="process")
    resumed.load_state_dict(state)
    rest = [b["__index__"].tolist() for b in resumed]
    resume_ok = head + rest == reference
    print_fn(f"      resume after 3 of {len(reference)} batches (0 -> 2 worker processes): "
             f"{len(rest)} batches, the rest of the epoch in order: "
             f"{'ok' if resume_ok else 'WRONG'}")
    out.update(split_ok=split_ok, resume_ok=resume_ok)
    return out


def pack_step(root, workdir, codec_path, *, print_fn=print) -> dict:
    """Step 5: the same clips as codes, video and rgb shards; bytes per clip."""
    from cvload.shards import inspect_shards, pack

    print_fn("[5/9] pack the labelled videos into WebDataset shards (cvload pack)")
    rows, results = [], {}
    for fmt, options in (("codes", {"codec": codec_path}), ("video", {}), ("rgb", {"size": 64})):
        out = os.path.join(workdir, f"shards-{fmt}")
        result = pack([os.path.join(root, "labels.csv")], out=out, format=fmt, clip_frames=8,
                      clip_stride=8 if fmt != "video" else 12, shard_samples=32, progress=False,
                      **options)
        results[fmt] = result
        check = inspect_shards(out, verify=True, print_fn=lambda *a: None)
        rows.append((fmt, result.clips, result.shards, result.bytes, result.bytes // max(1, result.clips),
                     f"{result.seconds:.1f}", "ok" if not check["problems"] else "PROBLEMS"))
    print_fn(format_table(["format", "clips", "shards", "bytes", "bytes/clip", "seconds",
                           "verify"], rows))
    return results


def codec_step(videos, workdir, *, steps: int = 600, max_seconds: float = 75.0,
               print_fn=print) -> dict:
    """Step 4: train a small codec on 8 videos for at most ``max_seconds`` (or ``steps``),
    evaluate on the 2 held out against JPEG, H.264 and the equal-bytes thumbnail."""
    from cvload.codec import CodecConfig, VideoCodec, evaluate, format_report, train

    print_fn(f"[4/9] neural codec: train up to {steps} steps / {max_seconds:.0f}s, evaluate on "
             "held-out videos")
    held_out = [v.path for v in videos if v.seed % 1000 == 1][:2]
    training = [v.path for v in videos if v.path not in held_out]
    # the default code format (2 groups of 16-bit codes per 4x8x8 pixels, CR 192) at a
    # small clip size and width
    config = CodecConfig(clip_frames=8, size=(64, 64), channels=32, res_blocks=1)
    out = os.path.join(workdir, f"demo_codec_{steps}_{max_seconds:g}_v2.pt")
    start = time.perf_counter()
    if os.path.exists(out):
        codec = VideoCodec.load(out)
        print_fn(f"      reusing {out}")
    else:
        result = train(training, out=out, config=config, steps=steps, batch_size=8,
                       max_seconds=max_seconds, val_every=max(1, steps // 4),
                       checkpoint_every=steps, progress=False)
        codec = VideoCodec.load(result.path)
        print_fn(f"      {result.steps} steps in {time.perf_counter() - start:.0f}s "
                 f"({result.steps / max(result.seconds, 1e-9):.1f} steps/s); validation PSNR "
                 f"{result.val_psnr[0][1]:.2f} dB (initial transform) -> "
                 f"{result.val_psnr[-1][1]:.2f} dB on {result.val_source}")
    report = evaluate(codec, held_out, clips=8)
    print_fn(format_report(report))
    gain = report["neural"]["psnr"] - report["thumbnail"]["psnr"]
    print_fn(f"      on videos it never saw, at {report['bytes_per_clip']} bytes per clip: codec "
             f"{report['neural']['psnr']:.2f} dB vs thumbnail {report['thumbnail']['psnr']:.2f} dB "
             f"({gain:+.2f} dB), H.264 {report['h264']['psnr']:.2f} dB at "
             f"{report['h264']['bytes']:.0f} bytes")
    report["path"] = out
    return report


def decode_layouts(videos, *, print_fn=print) -> dict:
    """Step 3: every layout through a DataLoader; recovered motion vs ground truth."""
    import numpy as np
    import torch

    from cvload import VideoDataset

    print_fn("[3/9] decode compressed-domain layouts (DataLoader, 2 workers)")
    paths, labels = [v.path for v in videos], [v.label for v in videos]
    rows, shapes = [], {}
    for layout in ("rgb", "mvcgc", "imrnet", "coviar"):
        dataset = VideoDataset(paths, layout=layout, labels=labels, num_frames=8,
                               sampling="center")
        loader = torch.utils.data.DataLoader(dataset, batch_size=5, num_workers=2,
                                             collate_fn=dataset.collate)
        start = time.perf_counter()
        batches = list(loader)
        seconds = time.perf_counter() - start
        first = batches[0]
        shapes[layout] = {k: tuple(v.shape) for k, v in first.items() if v.dim() > 1}
        rows.append((layout, len(paths) / seconds,
                     "  ".join(f"{k} {tuple(v.shape[1:])} {str(v.dtype)[6:]}"
                               for k, v in first.items() if v.dim() > 2)))
        if layout == "mvcgc":
            motion = torch.cat([b["mv"] for b in batches])
            label = torch.cat([b["label"] for b in batches])
            index = torch.cat([b["index"] for b in batches])
    print_fn(format_table(["layout", "videos/s incl. worker start", "per-sample tensors"], rows))

    print_fn("      motion read from the bitstream (median L0 vector, P-frame videos) vs truth:")
    truth = {v.label: (v.label_name, v.motion) for v in videos}
    p_only = torch.tensor([videos[i].bframes == 0 for i in index.tolist()])
    check = []
    for lab in sorted(truth):
        fields = motion[(label == lab) & p_only][:, :, :2]  # (n, T, 2, h, w)
        moving = fields.abs().sum(2) > 0
        dx = float(np.median(fields[:, :, 0][moving])) if moving.any() else 0.0
        dy = float(np.median(fields[:, :, 1][moving])) if moving.any() else 0.0
        name, (tx, ty) = truth[lab]
        # content moving +d px/frame sits -d px away in the previous frame
        ok = (dx, dy) == (-tx, -ty) or (tx, ty) == (0, 0)
        shown = f"{-dx + 0.0:+.1f},{-dy + 0.0:+.1f}"  # + 0.0: no negative zeros
        check.append((name, f"{tx:+d},{ty:+d}", shown, "yes" if ok else "NO"))
    print_fn(format_table(["class", "true px/frame", "from MVs", "match"], check))
    return {"shapes": shapes, "motion_check": check}
