"""The ``cvload`` command: argument parsing only; each subcommand calls one public function."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from cvload._cli_common import fraction_range as _fraction_range
from cvload._cli_common import report as _report
from cvload._cli_common import size as _size
from cvload._cli_common import video_files as _video_files
from cvload._cli_tools import add_tool_commands
from cvload.errors import CvloadError


def _cmd_doctor(args: argparse.Namespace) -> int:
    from cvload._doctor import report

    print(report())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from cvload._demo import run

    run(args.root, videos_per_class=args.videos_per_class, codec_steps=args.codec_steps,
        codec_seconds=args.codec_seconds)
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cvload.video import probe

    status = 0
    for path in args.videos:
        try:
            info = probe(path, stream=args.stream, decode=args.decode)
        except CvloadError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        record = {k: v for k, v in asdict(info).items() if k not in ("frame_pts", "keyframe_seek")}
        record["frame_rate"] = str(info.frame_rate)
        record["time_base"] = str(info.time_base)
        print(json.dumps(record) if args.json else "\n".join(f"{k}: {v}" for k, v in record.items()))
    return status


def _cmd_train_codec(args: argparse.Namespace) -> int:
    from cvload.codec import NO_CROP, CodecConfig, CropPolicy, train

    config = CodecConfig(
        clip_frames=args.clip_frames, size=tuple(args.size), temporal_stride=args.temporal_stride,
        spatial_stride=args.spatial_stride, groups=args.groups, quantizer=args.quantizer,
        channels=args.channels, res_blocks=args.res_blocks, tail_channels=args.tail_channels,
        fsq_levels=tuple(args.fsq_levels), vq_codebook_size=args.codebook_size)
    videos = _video_files(args.videos)
    result = train(videos, out=args.out, config=config, steps=args.steps,
                   batch_size=args.batch_size, lr=args.lr, device=args.device,
                   linear_lr_scale=args.linear_lr_scale, init_clips=args.init_clips,
                   compile=args.compile,
                   crop=NO_CROP if args.no_crop else CropPolicy(),
                   val_videos=_video_files(args.val) if args.val else None,
                   val_fraction=args.val_fraction, val_clips=args.val_clips,
                   val_every=args.val_every, checkpoint_every=args.checkpoint_every,
                   resume=args.resume, seed=args.seed, max_seconds=args.max_minutes * 60
                   if args.max_minutes else None, frame_range=args.frames,
                   val_frame_range=args.val_frames)
    first, last = result.val_psnr[0][1], result.val_psnr[-1][1]
    start = "resumed" if result.init_psnr is None else "initial transform"
    print(f"saved {result.path} (codec {result.codec_id}) after {result.steps} steps in "
          f"{result.seconds:.0f}s ({(result.steps - result.resumed_from) / max(result.seconds, 1e-9):.2f} "
          f"steps/s); validation PSNR {first:.2f} dB ({start}) -> {last:.2f} dB on "
          f"{result.val_source}")
    return 0


def _cmd_eval_codec(args: argparse.Namespace) -> int:
    from cvload.codec import VideoCodec, evaluate, format_report

    codec = VideoCodec.load(args.codec)
    report = evaluate(codec, _video_files(args.videos), clips=args.clips, device=args.device,
                      baselines=not args.no_baselines, frame_range=args.frames)
    _report(format_report(report), report, args.json)
    return 0


def _cmd_train_augnet(args: argparse.Namespace) -> int:
    from cvload.augment import train

    result = train(args.codec, _video_files(args.videos), out=args.out,
                   ops=tuple(o.strip() for o in args.ops.split(",") if o.strip()),
                   steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                   device=args.device, seed=args.seed, resume=args.resume,
                   checkpoint_every=args.checkpoint_every, val_every=args.val_every,
                   max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                   base=args.base)
    first, last = result.val_loss[0][1], result.val_loss[-1][1]
    print(f"saved {result.path} (ops {','.join(result.ops)}, codec {result.codec_id}) after "
          f"{result.steps} steps in {result.seconds:.0f}s; held-out latent L2 {first:.4f} -> "
          f"{last:.4f} (identity {result.identity_val_loss:.4f})")
    return 0


def _cmd_eval_augnet(args: argparse.Namespace) -> int:
    from cvload.augment import evaluate, format_report

    report = evaluate(args.augnet, args.codec, _video_files(args.videos), clips=args.clips,
                      seed=args.seed, device=args.device)
    _report(format_report(report), report, args.json)
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from cvload.shards import pack

    shard_range = tuple(int(x) for x in args.shard_range.split(":")) if args.shard_range else None
    result = pack(args.inputs, out=args.out, format=args.format, codec=args.codec,
                  clip_frames=args.clip_frames, clip_stride=args.clip_stride,
                  size=tuple(args.size) if args.size else None, labels=args.labels,
                  shard_samples=args.shard_samples, shard_bytes=args.shard_bytes,
                  workers=args.workers, engine=args.engine,
                  handler=args.handler or "skip", on_error=args.on_error, device=args.device,
                  shard_range=shard_range)
    print(f"videos {result.videos}, clips {result.clips}, shards {result.shards} "
          f"({result.skipped_shards} of {result.units} work units already done), {result.bytes} bytes, "
          f"{result.compression:.1f}x smaller than the source files, failures {result.failures}"
          f" in {result.seconds:.1f}s")
    if result.failure_log:
        print(f"failures listed in {result.failure_log}")
    if result.index:
        print(f"index: {result.index}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from cvload.shards import inspect_shards

    report = inspect_shards(args.target, verify=args.verify)
    return 1 if args.verify and report["problems"] else 0


def build_parser() -> argparse.ArgumentParser:
    from cvload.codec import CodecConfig

    parser = argparse.ArgumentParser(prog="cvload", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="versions, CUDA, and which codecs export motion vectors")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("demo", help="the main job end to end on synthetic videos")
    p.add_argument("--root", default=None, help="where to write the videos (default: cache)")
    p.add_argument("--videos-per-class", type=int, default=2)
    p.add_argument("--codec-steps", type=int, default=600,
                   help="training steps of the codec at most")
    p.add_argument("--codec-seconds", type=float, default=75.0,
                   help="training-time budget of the codec (whichever of the two ends first)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("probe", help="describe videos: codec, frames, GOPs, B-frames, MVs")
    p.add_argument("videos", nargs="+")
    p.add_argument("--stream", type=int, default=None, help="video stream index (default: best)")
    p.add_argument("--decode", action="store_true", help="decode every frame (verifies the file)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_cmd_probe)

    p = sub.add_parser("train-codec", help="train a neural video codec on your videos",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train a codec on random clips of VIDEOS and save it to OUT "
                                   "(a resumable checkpoint OUT.ckpt is kept beside it).")
    p.add_argument("videos", nargs="+", help="video files, folders or .txt lists")
    p.add_argument("--out", required=True, help="where to save the codec (e.g. codec.pt)")
    d = CodecConfig()
    p.add_argument("--clip-frames", type=int, default=d.clip_frames,
                   help="frames per training clip (a multiple of --temporal-stride)")
    p.add_argument("--size", type=_size, default=list(d.size),
                   help="clip size H[xW] that frames are resized to, e.g. 128 or 128x160")
    p.add_argument("--temporal-stride", type=int, default=d.temporal_stride, choices=(1, 2, 4),
                   help="frames per code along time")
    p.add_argument("--spatial-stride", type=int, default=d.spatial_stride, choices=(4, 8),
                   help="pixels per code along each side")
    p.add_argument("--groups", type=int, default=d.groups,
                   help="codes per latent position (more groups: more bytes, higher quality)")
    p.add_argument("--quantizer", default=d.quantizer, choices=("fsq", "vq"),
                   help="finite scalar quantisation or VQ codebooks")
    p.add_argument("--fsq-levels", type=int, nargs="+", default=list(d.fsq_levels),
                   help="FSQ levels per latent channel; their product is the codebook size "
                        "(up to 256: uint8 codes; up to 65536: uint16)")
    p.add_argument("--codebook-size", type=int, default=d.vq_codebook_size,
                   help="VQ entries per codebook")
    p.add_argument("--channels", type=int, default=d.channels,
                   help="width of the residual refinement networks, which run at the code "
                        "grid (CPU time grows with its square)")
    p.add_argument("--res-blocks", type=int, default=d.res_blocks,
                   help="residual blocks in the encoder's and the decoder's refinement")
    p.add_argument("--tail-channels", type=int, default=d.tail_channels,
                   help="width of a full-resolution residual tail on the decoder (0: none; "
                        "about 4x the CPU time per step at 8)")
    p.add_argument("--steps", type=int, default=1000,
                   help="optimiser steps at most (with --max-minutes: whichever ends first)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per step")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="peak learning rate of the residual networks (warm-up over 5%%, "
                        "cosine decay to 10%% over the steps or the time budget)")
    p.add_argument("--linear-lr-scale", type=float, default=0.03,
                   help="learning-rate factor of the linear transforms, which start at the "
                        "principal components of the training clips")
    p.add_argument("--init-clips", type=int, default=64,
                   help="training clips whose principal components initialise the codec")
    p.add_argument("--no-crop", action="store_true",
                   help="train on whole frames resized to --size instead of random resized "
                        "crops (crops: random box of 15-100%% of the frame, random aspect, "
                        "horizontal flips)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step (2 CPU cores: ~45 s to compile, then "
                        "~11%% faster steps; pays off beyond ~10 minutes)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    p.add_argument("--val", nargs="*",
                   help="validation videos (default: the last --val-fraction of every "
                        "training video's frames, held out of training)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of every training video's frames held out for validation "
                        "when no --val is given (at least one clip's worth)")
    p.add_argument("--val-clips", type=int, default=8, help="validation clips measured")
    p.add_argument("--val-every", type=int, default=100,
                   help="steps between validation PSNR measurements (also at step 0)")
    p.add_argument("--checkpoint-every", type=int, default=100,
                   help="steps between writes of the resumable checkpoint OUT.ckpt")
    p.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="training-time budget in minutes: the learning rate decays over it "
                        "and the codec is saved when it is spent; none: no limit")
    p.add_argument("--seed", type=int, default=0, help="seed of clip sampling and weights")
    p.add_argument("--frames", type=_fraction_range, default=(0.0, 1.0),
                   help="train on this fraction of every video's frames, e.g. 0:0.8")
    p.add_argument("--val-frames", type=_fraction_range, default=(0.0, 1.0),
                   help="validate --val videos on this fraction of their frames")
    p.set_defaults(func=_cmd_train_codec)

    p = sub.add_parser("train-augnet", help="train a latent augmentation network for a codec")
    p.add_argument("videos", nargs="+", help="video files, folders or .txt lists")
    p.add_argument("--codec", required=True, help="the codec file (frozen; from train-codec)")
    p.add_argument("--ops", default="crop,flip",
                   help="comma-separated ops served by one network: crop, flip, brightness, "
                        "saturation, rotation (default: crop,flip)")
    p.add_argument("--out", required=True, help="where the network is saved (e.g. augnet.pt)")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps at most")
    p.add_argument("--batch-size", type=int, default=8, help="clips per step")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="peak learning rate (5%% warm-up, cosine decay)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    p.add_argument("--seed", type=int, default=0, help="seed of clips, parameters and weights")
    p.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    p.add_argument("--checkpoint-every", type=int, default=100,
                   help="steps between writes of the resumable checkpoint OUT.ckpt")
    p.add_argument("--val-every", type=int, default=100,
                   help="steps between held-out validation losses (also at step 0)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="training-time budget in minutes (the learning rate decays over it)")
    p.add_argument("--base", default="resampled", choices=("resampled", "identity"),
                   help="resampled (default): geometric ops move the token grid first and "
                        "the network learns the correction; identity: the paper's form")
    p.set_defaults(func=_cmd_train_augnet)

    p = sub.add_parser("eval-augnet",
                       help="SSIM/PSNR of learned latent augmentations vs identity and naive ops")
    p.add_argument("augnet")
    p.add_argument("videos", nargs="+")
    p.add_argument("--codec", default=None,
                   help="the codec the network was trained for (default: the file recorded "
                        "at training time)")
    p.add_argument("--clips", type=int, default=8, help="evenly spaced clips evaluated")
    p.add_argument("--seed", type=int, default=0, help="seed of the op parameters")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the report as JSON")
    p.set_defaults(func=_cmd_eval_augnet)

    p = sub.add_parser("pack", help="pack videos into WebDataset shards (codes, video, rgb)")
    p.add_argument("inputs", nargs="+", help="video files, folders, .txt or .csv (path,label) lists")
    p.add_argument("--out", required=True)
    p.add_argument("--format", required=True, choices=("codes", "video", "rgb"))
    p.add_argument("--codec", default=None, help="codec file for --format codes")
    p.add_argument("--clip-frames", type=int, default=16)
    p.add_argument("--clip-stride", type=int, default=None, help="default: --clip-frames")
    p.add_argument("--size", type=_size, default=None, help="H[xW] for --format rgb")
    p.add_argument("--labels", default=None, help="CSV of path,label")
    p.add_argument("--shard-samples", type=int, default=256, help="samples per shard at most")
    p.add_argument("--shard-bytes", type=int, default=None,
                   help="aim for shards of about this many bytes (planned from clip sizes)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="ray: Ray Data tasks (a local cluster, or the one ray.init found)")
    p.add_argument("--handler", default=None, choices=("raise", "warn", "skip"),
                   help="a failing video or clip: skip it (listed in failures.jsonl; the "
                        "default), skip it with a warning, or stop (raise)")
    p.add_argument("--on-error", default=None, choices=("skip", "fail"),
                   help="deprecated: --handler skip / --handler raise")
    p.add_argument("--device", default="auto")
    p.add_argument("--shard-range", default=None, help="a:b, only work units a <= i < b (of shard-samples clips each); the run "
                        "finishing the last unit assembles the shards")
    p.set_defaults(func=_cmd_pack)

    p = sub.add_parser("inspect", help="summarise shards; --verify checks sha256 and decodes all")
    p.add_argument("target", help="a shard directory (with index.json) or one .tar")
    p.add_argument("--verify", action="store_true")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("eval-codec", help="PSNR/SSIM/compression vs JPEG and H.264 at same bytes")
    p.add_argument("codec")
    p.add_argument("videos", nargs="+")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--json", default=None, help="also write the report as JSON")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--frames", type=_fraction_range, default=(0.0, 1.0),
                   help="evaluate on this fraction of every video's frames, e.g. 0.8:1")
    p.set_defaults(func=_cmd_eval_codec)

    add_tool_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CvloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
