"""The same classifier trained on RGB frames and on neural codes, side by side.

    python examples/rgb_vs_codes.py VIDEOS_OR_LABELS_CSV --codec codec.pt --epochs 10
    python examples/rgb_vs_codes.py --quick [--plot curves.png]   # generated videos, CPU

Both inputs are packed from the same clips (``--format rgb`` at the codec's frame size
and ``--format codes``); S3D is built for each (``S3D.for_rgb``, ``S3D.for_codes``: the
same network, its stem adapted to the code grid) and trained with the same optimiser
and batches through ``cvload.DataLoader``. Prints loss and seconds per epoch of both, the
bytes each read, and with ``--plot`` draws the loss curves (matplotlib).
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
from cvload._util import format_table  # noqa: E402
from cvload.codec import VideoCodec  # noqa: E402
from cvload.models import S3D  # noqa: E402
from cvload.shards import pack  # noqa: E402


class RgbInput(torch.nn.Module):
    """Device transform: ``rgb`` (B, T, 3, H, W) uint8 -> ``x`` (B, 3, T, H, W) in [-1, 1]."""

    def forward(self, batch: dict) -> dict:
        return dict(batch, x=batch["rgb"].permute(0, 2, 1, 3, 4).float() / 127.5 - 1)


class CodeInput(torch.nn.Module):
    """Device transform: ``codes`` -> ``x``, the codec's latents (B, C, t, h, w)."""

    def __init__(self, codec) -> None:
        super().__init__()
        self.codec = codec

    @torch.no_grad()
    def forward(self, batch: dict) -> dict:
        return dict(batch, x=self.codec.embed(batch["codes"]))


def train(model, loader, epochs: int) -> tuple[list, list]:
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses, seconds = [], []
    torch.manual_seed(0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        started, epoch_losses = time.perf_counter(), []
        for batch in loader:
            loss = F.cross_entropy(model(batch["x"]), batch["label"])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            epoch_losses.append(loss.item())
        seconds.append(time.perf_counter() - started)
        losses.append(sum(epoch_losses) / len(epoch_losses))
    return losses, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("inputs", nargs="*", help="videos, folders or a labels CSV")
    parser.add_argument("--codec", help="a codec file")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=float, default=1.0, help="S3D channel multiplier")
    parser.add_argument("--plot", help="write the loss curves to this image")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="cvload-rgb-codes-")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        from _quick import quick_codec, quick_videos

        root, videos = quick_videos(work)
        args.inputs = [os.path.join(root, "labels.csv")]
        args.codec = quick_codec([v.path for v in videos], os.path.join(work, "codec.pt"))
        args.epochs, args.width = 3, 0.25
    if not (args.inputs and args.codec):
        parser.error("give videos (or a labels CSV) and --codec, or --quick")
    codec = VideoCodec.load(args.codec).to(device).eval()
    frames, size = codec.config.clip_frames, codec.config.size
    common = dict(clip_frames=frames, clip_stride=frames // 2, shard_samples=32, progress=False)
    packed = {"rgb": pack(args.inputs, out=os.path.join(work, "rgb"), format="rgb", size=size,
                          **common),
              "codes": pack(args.inputs, out=os.path.join(work, "codes"), format="codes",
                            codec=args.codec, **common)}
    dataset = cvload.ShardDataset(os.path.join(work, "codes"))
    classes = 1 + max(int(dataset[i]["label"]) for i in range(len(dataset)))
    models = {"rgb": S3D.for_rgb(classes, width=args.width),
              "codes": S3D.for_codes(codec, classes, width=args.width)}
    transforms = {"rgb": RgbInput(), "codes": CodeInput(codec)}
    curves, rows = {}, []
    for name in ("rgb", "codes"):
        loader = cvload.DataLoader(cvload.ShardDataset(os.path.join(work, name), shuffle=True,
                                                       seed=0),
                                   batch_size=8, drop_last=True, device=device,
                                   gpu_transforms=[transforms[name]])
        losses, seconds = train(models[name].to(device), loader, args.epochs)
        curves[name] = losses
        rows.append((name, packed[name].bytes // max(1, packed[name].clips),
                     f"{loader.stats.bytes_read / 1e6:.2f}",
                     " ".join(f"{x:.3f}" for x in losses),
                     " ".join(f"{s:.1f}" for s in seconds)))
    print(format_table(["input", "bytes/clip", "MB read", "loss per epoch", "s per epoch"],
                       rows))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for name, losses in curves.items():
            plt.plot(range(1, len(losses) + 1), losses, marker="o", label=name)
        plt.xlabel("epoch")
        plt.ylabel("training loss")
        plt.legend()
        plt.savefig(args.plot, dpi=100)
        print(f"loss curves in {args.plot}")


if __name__ == "__main__":
    main()
