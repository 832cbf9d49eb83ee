"""The long-video past/future task of Compressed Vision on code shards.

    python examples/past_future.py LONG_VIDEOS... --codec codec.pt --steps 2000
    python examples/past_future.py --quick     # generated long videos, tiny codec, CPU

A long video packed as codes is a sequence of chunks (its clips in frame order).
``cvload.tasks.PastFutureChunks`` gives, per item, ``context`` consecutive chunks as the
past and a query chunk of the same video, seen in that past (label 1) or from later on
(label 0); ``cvload.models.PastFuture`` (a 3D-CNN adapter, a slot memory, cross-attention)
learns to tell which. The codes are embedded on the device by a ``gpu_transform``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cvload  # noqa: E402
from cvload.codec import VideoCodec  # noqa: E402
from cvload.models import PastFuture  # noqa: E402
from cvload.shards import pack  # noqa: E402
from cvload.tasks import PastFutureChunks  # noqa: E402


class EmbedChunks(torch.nn.Module):
    """Device transform: the item's codes (``chunks``, ``query``) -> codec latents."""

    def __init__(self, codec) -> None:
        super().__init__()
        self.codec = codec

    @torch.no_grad()
    def forward(self, batch: dict) -> dict:
        b, n = batch["chunks"].shape[:2]
        chunks = self.codec.embed(batch["chunks"].flatten(0, 1))
        return dict(batch, chunks=chunks.view(b, n, *chunks.shape[1:]),
                    query=self.codec.embed(batch["query"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("videos", nargs="*", help="long videos")
    parser.add_argument("--codec", help="a codec file")
    parser.add_argument("--context", type=int, default=8, help="past chunks per item")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="cvload-pastfuture-")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        from _quick import quick_codec

        from cvload.synthetic import write_video

        args.videos = [write_video(os.path.join(work, f"long{i}.mp4"), width=64, height=64,
                                   num_frames=160, seed=i, motion=(1 + i % 2, i % 3 - 1)).path
                       for i in range(3)]
        args.codec = quick_codec(args.videos, os.path.join(work, "codec.pt"))
        args.context, args.steps = 4, 60
    if not (args.videos and args.codec):
        parser.error("give long videos and --codec, or --quick")
    codec = VideoCodec.load(args.codec).to(device).eval()
    frames = codec.config.clip_frames
    pack(args.videos, out=os.path.join(work, "codes"), format="codes", codec=args.codec,
         clip_frames=frames, clip_stride=frames, progress=False)
    items = PastFutureChunks(cvload.ShardDataset(os.path.join(work, "codes")),
                             context=args.context)
    print(f"{len(items.videos)} videos, {sum(len(c) for c in items.videos.values())} chunks of "
          f"{frames} frames, {len(items)} items")
    loader = cvload.DataLoader(items, batch_size=8, shuffle=True, drop_last=True,
                               device=device, gpu_transforms=[EmbedChunks(codec)])
    model = PastFuture(codec.config.latent_channels, dim=64).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    step, epoch, started, recent = 0, 0, time.perf_counter(), []
    while step < args.steps:
        loader.set_epoch(epoch)
        items.set_epoch(epoch)
        for batch in loader:
            logits = model(batch["chunks"], batch["query"])
            loss = F.binary_cross_entropy_with_logits(logits, batch["label"].float())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            recent = (recent + [float(((logits > 0).long() == batch["label"]).float().mean())])[-10:]
            if step % max(1, args.steps // 6) == 0:
                print(f"step {step}: loss {loss.item():.3f}, accuracy over the last "
                      f"{len(recent)} batches {sum(recent) / len(recent):.2f}")
            if step >= args.steps:
                break
        epoch += 1
    print(f"{step} steps in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
