"""``cvload demo``: the main job end to end, on a small synthetic labelled video set.

It grows as the project does: today it generates real H.264 videos (with and without
B-frames, five motion classes) and probes them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cvload._util import cache_dir, format_table


def run(root: str | os.PathLike[str] | None = None, *, videos_per_class: int = 2,
        print_fn=print) -> dict:
    """Run the demo; returns what it measured (also printed)."""
    from cvload import probe
    from cvload.synthetic import make_dataset

    root = Path(root) if root is not None else cache_dir("demo", "videos")
    print_fn(f"[1/2] synthetic labelled videos in {root}")
    start = time.perf_counter()
    videos = make_dataset(root, videos_per_class=videos_per_class)
    print_fn(f"      {len(videos)} videos ready in {time.perf_counter() - start:.2f}s")

    print_fn("[2/2] probe")
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
    return {"root": str(root), "videos": videos, "infos": infos}
