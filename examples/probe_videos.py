"""Probe a folder of videos and print what cvload sees: codec, frames, GOPs, B-frames, MVs.

    python examples/probe_videos.py PATH [PATH ...]
    python examples/probe_videos.py --quick      # on a few synthetic videos it writes
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cvload
from cvload._util import format_table

from cvload.shards import VIDEO_SUFFIXES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--quick", action="store_true", help="probe synthetic videos instead")
    args = parser.parse_args()
    paths = [Path(p) for p in args.paths]
    if args.quick:
        from cvload.synthetic import write_video

        tmp = Path(tempfile.mkdtemp(prefix="cvload-example-"))
        paths = [Path(write_video(tmp / f"clip_{c}_{b}{s}", codec=c, bframes=b).path)
                 for c, b, s in [("h264", 0, ".mp4"), ("h264", 2, ".mkv"), ("hevc", 2, ".mp4")]]
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))
             if f.suffix.lower() in VIDEO_SUFFIXES]
    rows = []
    for f in files:
        try:
            info = cvload.probe(f)
        except cvload.CvloadError as err:
            rows.append((f.name, "error", "", "", "", "", str(err).splitlines()[0][:60]))
            continue
        rows.append((f.name, info.codec, f"{info.width}x{info.height}", info.num_frames,
                     "/".join(map(str, info.gop_lengths)), "yes" if info.has_b_frames else "no",
                     {True: "yes", False: "no", None: "?"}[info.exports_motion_vectors]))
    print(format_table(["file", "codec", "size", "frames", "GOPs", "B-frames", "MVs"], rows))


if __name__ == "__main__":
    main()
