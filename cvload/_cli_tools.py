"""``cvload bench`` and ``cvload viz``: argument parsing only."""

from __future__ import annotations

import argparse

from cvload._cli_common import report as _report
from cvload._cli_common import size as _size
from cvload._cli_common import video_files as _video_files


def _cmd_bench(args: argparse.Namespace) -> int:
    from cvload.bench import BenchOptions, format_report, plot_report, run_bench

    chosen = {k: v for k, v in (("workers", args.workers), ("rounds", args.rounds),
                                ("clips", args.clips)) if v is not None}
    if args.lengths:
        chosen["lengths"] = tuple(int(x) for x in args.lengths.split(","))
        chosen["main_length"] = 16 if 16 in chosen["lengths"] else chosen["lengths"][0]
    if args.size:
        chosen["size"] = tuple(args.size)
    options = BenchOptions.quick(**chosen) if args.quick else BenchOptions(**chosen)
    report = run_bench(_video_files(args.videos) if args.videos else (), options=options,
                       codec=args.codec, workdir=args.workdir)
    _report(format_report(report), report.to_dict(), args.json)
    if args.plot:
        print(f"chart: {plot_report(report, args.plot)}")
    return 0


def _cmd_viz(args: argparse.Namespace) -> int:
    from cvload.viz import render_sheet

    sheet = render_sheet(args.source, args.out, codec=args.codec, columns=args.columns,
                         mv_grid=args.grid)
    psnr = f"; codec PSNR per frame {', '.join(f'{p:.1f}' for p in sheet.psnr)} dB" \
        if sheet.psnr else ""
    print(f"wrote {sheet.path}: frames {sheet.frames} ({sheet.frame_types})"
          f"{' with estimated motion' if sheet.mv_estimated else ''}{psnr}")
    return 0


def add_tool_commands(sub) -> None:
    p = sub.add_parser("bench", help="RGB vs compressed pipelines on your videos: a table "
                                     "(clips/s, MB/s, bytes/clip, ratio) and a chart")
    p.add_argument("videos", nargs="*", help="videos, folders or lists (default: generated)")
    p.add_argument("--quick", action="store_true", help="lengths 8,16, 8 clips, 3 rounds")
    p.add_argument("--json", default=None, help="also write the report as JSON")
    p.add_argument("--plot", default=None, help="draw the chart to this image (e.g. bench.png)")
    p.add_argument("--codec", default=None, help="time this codec's codes (default: an "
                                                 "untrained codec of the default format)")
    p.add_argument("--lengths", default=None, help="clip lengths, e.g. 8,16,32")
    p.add_argument("--size", type=_size, default=None, help="frame size, e.g. 128 or 96x128")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default 0)")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--clips", type=int, default=None, help="about this many clips per length")
    p.add_argument("--workdir", default=None, help="where shards are packed (default: cache)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("viz", help="contact sheet: frames, motion (colour wheel), residuals, "
                                   "frame types; with --codec, reconstructions and PSNR")
    p.add_argument("source")
    p.add_argument("--out", required=True, help="image to write, e.g. sheet.png")
    p.add_argument("--codec", default=None)
    p.add_argument("--columns", type=int, default=6, help="frames sampled across the video")
    p.add_argument("--grid", type=int, default=8, help="motion-field cell size in pixels")
    p.set_defaults(func=_cmd_viz)
