"""What the examples' ``--quick`` runs share: small generated videos and a tiny codec.
(Not an example itself: files starting with ``_`` are not run by tests/test_examples.py.)"""

from __future__ import annotations

import os


def quick_videos(work: str, *, per_class: int = 2, frames: int = 32, size: int = 64):
    """Five motion classes of generated H.264 videos (half with B-frames): ``(root, videos)``;
    ``root/labels.csv`` lists them with their labels."""
    from cvload.synthetic import make_dataset

    root = os.path.join(work, "videos")
    return root, make_dataset(root, videos_per_class=per_class, num_frames=frames, width=size,
                              height=size)


def quick_codec(paths, out: str, *, steps: int = 20) -> str:
    """A tiny codec (8x32x32 clips, the default code format's strides) trained briefly."""
    from cvload.codec import CodecConfig, train

    train(list(paths), out=out, steps=steps, batch_size=4, progress=False,
          val_every=steps, checkpoint_every=steps,
          config=CodecConfig(clip_frames=8, size=(32, 32), channels=8, res_blocks=0))
    return out


def split_csv(root: str, videos, work: str, *, test_index: int) -> tuple[list, list]:
    """Labels CSVs of the training videos and of the held-out ones (the ``test_index``-th
    video of every class): ``([train.csv], [test.csv])``."""
    import csv

    rows = {"train": [], "test": []}
    for v in videos:
        held = v.path.endswith(f"_{test_index}.mp4")
        rows["test" if held else "train"].append((v.path, v.label))
    paths = {}
    for name, items in rows.items():
        paths[name] = os.path.join(work, f"{name}.csv")
        with open(paths[name], "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            writer.writerows(items)
    return [paths["train"]], [paths["test"]]
