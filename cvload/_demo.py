"""``cvload demo``: the main job end to end, on a small synthetic labelled video set.

It grows as the project does: today it generates real H.264 videos (with and without
B-frames, five motion classes), probes them, decodes every compressed-domain layout
through a 2-worker torch DataLoader, and checks the motion read from the bitstream
against the ground truth each class was made with.
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
    print_fn(f"[1/3] synthetic labelled videos in {root}")
    start = time.perf_counter()
    videos = make_dataset(root, videos_per_class=videos_per_class)
    print_fn(f"      {len(videos)} videos ready in {time.perf_counter() - start:.2f}s")

    print_fn("[2/3] probe")
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
    layouts = decode_layouts(videos, print_fn=print_fn)
    return {"root": str(root), "videos": videos, "infos": infos, "layouts": layouts}


def decode_layouts(videos, *, print_fn=print) -> dict:
    """Step 3: every layout through a DataLoader; recovered motion vs ground truth."""
    import numpy as np
    import torch

    from cvload import VideoDataset

    print_fn("[3/3] decode compressed-domain layouts (DataLoader, 2 workers)")
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
