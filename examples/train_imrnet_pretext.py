"""IMRNet pretraining on compressed video: PMSP + CTP steps from video shards.

    python examples/train_imrnet_pretext.py VIDEOS_OR_LABELS_CSV --steps 1000
    python examples/train_imrnet_pretext.py --quick     # generated videos, CPU

Video shards hold GOP-aligned segments of the source bitstream; ``ShardDataset`` decodes
them on the fly in the ``imrnet`` layout (I-frames, motion vectors, residuals) inside the
loader's workers, where the pretext labels are made too (they are data): the pyramidal
motion statistics of each sample's motion (:func:`cvload.tasks.pmsp_labels`) and a random
correspondence type (:func:`cvload.tasks.ctp_transform`). IMRNet learns both.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cvload  # noqa: E402
from cvload.models import IMRNet  # noqa: E402
from cvload.shards import pack  # noqa: E402
from cvload.tasks import CTP_KINDS, ctp_transform, pmsp_labels  # noqa: E402
from cvload.video import ClipDecoder  # noqa: E402


class PretextSamples(torch.utils.data.Dataset):
    """``imrnet`` samples of video shards with ``pmsp`` and ``ctp_label`` added: each item
    gets a correspondence type drawn from ``(seed, epoch, index)`` (``random`` takes the
    P streams of another sample)."""

    def __init__(self, shards: cvload.ShardDataset, seed: int = 0) -> None:
        self.shards, self.seed, self.epoch = shards, seed, 0

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample = self.shards[index]
        kind = CTP_KINDS[int(rng.integers(len(CTP_KINDS)))]
        other = None
        if kind == "random":
            other = self.shards[int((index + rng.integers(1, len(self))) % len(self))]
        out = ctp_transform(sample, kind, rng=rng, other=other)
        out["pmsp"] = pmsp_labels(out["mv"])
        return {k: v for k, v in out.items() if torch.is_tensor(v)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("inputs", nargs="*", help="videos, folders or a labels CSV")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--width", type=float, default=1.0, help="ResNet channel multiplier")
    parser.add_argument("--size", type=int, default=112, help="frame size the layout decodes to")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="cvload-imrnet-")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        from _quick import quick_videos

        root, _ = quick_videos(work, frames=48)
        args.inputs = [os.path.join(root, "labels.csv")]
        args.steps, args.width, args.size = 12, 0.125, 48
    if not args.inputs:
        parser.error("give videos (or a labels CSV), or --quick")
    # segments of two 12-frame GOPs: the layout reads each GOP's I-frame and 3 P-frames
    result = pack(args.inputs, out=os.path.join(work, "video"), format="video",
                  clip_frames=24, clip_stride=12, progress=False)
    print(f"packed {result.clips} video segments ({result.bytes} bytes, no re-encoding)")
    decoder = ClipDecoder("imrnet", num_frames=2, gop_frames=4, size=args.size,
                          sampling="center")
    samples = PretextSamples(cvload.ShardDataset(os.path.join(work, "video"), decode=decoder))
    loader = cvload.DataLoader(samples, batch_size=4, shuffle=True, drop_last=True,
                               num_workers=2, device=device, persistent_workers=True)
    model = IMRNet(num_classes=5, frames_per_gop=3, width=args.width).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step, epoch, started = 0, 0, time.perf_counter()
    while step < args.steps:
        loader.set_epoch(epoch)
        samples.epoch = epoch
        for batch in loader:
            out = model(batch)
            pmsp = model.pmsp_loss(out["pmsp"], batch["pmsp"])
            ctp = F.cross_entropy(out["ctp"], batch["ctp_label"])
            loss = pmsp + ctp
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            accuracy = (out["ctp"].argmax(1) == batch["ctp_label"]).float().mean()
            print(f"step {step}: PMSP {pmsp.item():.3f}  CTP {ctp.item():.3f} "
                  f"(accuracy {accuracy.item():.2f})  batch mv {tuple(batch['mv'].shape)}")
            if step >= args.steps:
                break
        epoch += 1
    print(f"{step} steps in {time.perf_counter() - started:.0f}s "
          f"({loader.stats.samples} samples decoded and labelled in 2 worker processes)")


if __name__ == "__main__":
    main()
