"""MVCGC: contrastive learning across the RGB and motion-vector views of the same clips.

    python examples/train_mvcgc.py VIDEOS_OR_LABELS_CSV --steps 2000
    python examples/train_mvcgc.py --quick     # generated videos, CPU

Video shards decode on the fly in the ``mvcgc`` layout (RGB frames and the motion fields
of the same frames, read from the bitstream: no optical flow); ``cvload.models.MVCGC``
trains both encoders with momentum keys, queues and top-k hard positives mined in the
other view. At the end, clips of the same motion class should be nearer to each other in
the motion view than clips of different classes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cvload  # noqa: E402
from cvload.models import MVCGC  # noqa: E402
from cvload.shards import pack  # noqa: E402
from cvload.video import ClipDecoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("inputs", nargs="*", help="videos, folders or a labels CSV")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--width", type=float, default=1.0, help="ResNet channel multiplier")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--queue", type=int, default=4096)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="cvload-mvcgc-")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        from _quick import quick_videos

        root, _ = quick_videos(work, frames=48)
        args.inputs = [os.path.join(root, "labels.csv")]
        args.steps, args.width, args.size, args.queue = 20, 0.125, 48, 64
    if not args.inputs:
        parser.error("give videos (or a labels CSV), or --quick")
    result = pack(args.inputs, out=os.path.join(work, "video"), format="video",
                  clip_frames=12, clip_stride=12, progress=False)
    print(f"packed {result.clips} video segments ({result.bytes} bytes)")
    decoder = ClipDecoder("mvcgc", num_frames=8, size=args.size)
    dataset = cvload.ShardDataset(os.path.join(work, "video"), decode=decoder, shuffle=True)
    loader = cvload.DataLoader(dataset, batch_size=8, drop_last=True, num_workers=2,
                               device=device)
    model = MVCGC(width=args.width, queue_size=args.queue, top_k=3).to(device)
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.03,
                                momentum=0.9, weight_decay=1e-4)
    step, epoch, started = 0, 0, time.perf_counter()
    while step < args.steps:
        loader.set_epoch(epoch)
        for batch in loader:
            loss = model(batch)["loss"]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if step % max(1, args.steps // 10) == 0 or step == 1:
                print(f"step {step}: loss {loss.item():.3f}  (rgb {tuple(batch['rgb'].shape)}, "
                      f"mv {tuple(batch['mv'].shape)})")
            if step >= args.steps:
                break
        epoch += 1
    print(f"{step} steps in {time.perf_counter() - started:.0f}s; {loader.stats}")
    model.eval()
    embeddings, labels = [], []
    with torch.no_grad():
        for batch in cvload.DataLoader(cvload.ShardDataset(os.path.join(work, "video"),
                                                           decode=decoder), batch_size=8):
            embeddings.append(model(batch)["mv"].cpu())
            labels.append(batch["label"])
    z, y = torch.cat(embeddings), torch.cat(labels)
    similarity = z @ z.T
    same = (y[:, None] == y[None]) & ~torch.eye(len(y), dtype=torch.bool)
    different = y[:, None] != y[None]
    print(f"motion-view cosine similarity: same class {similarity[same].mean():.3f}, "
          f"different classes {similarity[different].mean():.3f}")


if __name__ == "__main__":
    main()
