"""The ``cvload`` command: argument parsing only; each subcommand calls one public function."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from cvload.errors import CvloadError


def _cmd_doctor(args: argparse.Namespace) -> int:
    from cvload._doctor import report

    print(report())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from cvload._demo import run

    run(args.root, videos_per_class=args.videos_per_class)
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
        record = {k: v for k, v in asdict(info).items() if k != "packet_pts"}
        record["frame_rate"] = str(info.frame_rate)
        record["time_base"] = str(info.time_base)
        print(json.dumps(record) if args.json else "\n".join(f"{k}: {v}" for k, v in record.items()))
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cvload", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="versions, CUDA, and which codecs export motion vectors")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("demo", help="the main job end to end on synthetic videos")
    p.add_argument("--root", default=None, help="where to write the videos (default: cache)")
    p.add_argument("--videos-per-class", type=int, default=2)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("probe", help="describe videos: codec, frames, GOPs, B-frames, MVs")
    p.add_argument("videos", nargs="+")
    p.add_argument("--stream", type=int, default=None, help="video stream index (default: best)")
    p.add_argument("--decode", action="store_true", help="decode every frame (verifies the file)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_cmd_probe)
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
