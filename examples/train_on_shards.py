"""A training loop on codes shards with cvload.DataLoader: resumable mid-epoch.

    python examples/train_on_shards.py SHARD_DIR --codec codec.pt --epochs 5
    python examples/train_on_shards.py --quick     # synthetic videos, tiny codec, 2 epochs

The loop is ordinary torch; the loader is the only cvload piece in it. It embeds codes
with the codec on the device (a ``gpu_transform``), trains a small classifier, saves
model + optimiser + loader state in the middle of an epoch, then starts again from that
checkpoint and checks that the resumed run sees exactly the samples the first run had
not yet seen.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

import cvload
from cvload.codec import VideoCodec


class EmbedCodes(torch.nn.Module):
    """codes (B, t, h, w, G) integers -> float latents (B, C, t, h, w), on the device."""

    def __init__(self, codec: VideoCodec) -> None:
        super().__init__()
        self.codec = codec

    @torch.no_grad()
    def forward(self, batch: dict) -> dict:
        return dict(batch, latents=self.codec.embed(batch["codes"].long()))


def make_model(channels: int, classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv3d(channels, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(), torch.nn.Linear(32, classes))


def run(shards: str, codec_path: str, *, epochs: int, stop_at: tuple[int, int] | None,
        checkpoint: str, device: str, classes: int) -> list:
    """Train; with ``stop_at=(epoch, step)`` save a checkpoint there and return early.
    Returns the sample ids seen, per epoch."""
    codec = VideoCodec.load(codec_path).to(device).eval()
    loader = cvload.DataLoader(cvload.ShardDataset(shards, shuffle=True, seed=1),
                               batch_size=4, drop_last=True, device=device,
                               gpu_transforms=[EmbedCodes(codec)], handler="skip")
    probe = loader.dataset[0]["codes"][None].long().to(device)  # one sample: latent channels
    model = make_model(codec.embed(probe).shape[1], classes).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    start_epoch = 0
    if os.path.exists(checkpoint):
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        loader.load_state_dict(state["loader"])
        start_epoch = state["epoch"]
        print(f"resumed at epoch {start_epoch}, {state['step']} batches in")
    seen = []
    for epoch in range(start_epoch, epochs):
        loader.set_epoch(epoch)
        ids, losses = [], []
        for step, batch in enumerate(loader):
            loss = torch.nn.functional.cross_entropy(model(batch["latents"]), batch["label"])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            ids += batch["__index__"].tolist()
            losses.append(loss.item())
            if stop_at == (epoch, step + 1):
                torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                            "loader": loader.state_dict(), "epoch": epoch, "step": step + 1},
                           checkpoint)
                print(f"checkpoint after epoch {epoch} step {step + 1}; stopping")
                return seen + [ids]
        seen.append(ids)
        print(f"epoch {epoch}: {len(ids)} clips, mean loss {sum(losses) / len(losses):.3f}")
    print(loader.stats)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("shards", nargs="?")
    parser.add_argument("--codec")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = tempfile.mkdtemp(prefix="cvload-train-")
    if args.quick:
        from cvload.codec import CodecConfig, train
        from cvload.shards import pack
        from cvload.synthetic import make_dataset

        videos = os.path.join(work, "videos")
        made = make_dataset(videos, videos_per_class=2, num_frames=32, width=64, height=64)
        args.codec = os.path.join(work, "codec.pt")
        train([v.path for v in made], out=args.codec, steps=10, batch_size=4, progress=False,
              config=CodecConfig(clip_frames=8, size=(32, 32), channels=8, res_blocks=0))
        args.shards = os.path.join(work, "shards")
        pack([os.path.join(videos, "labels.csv")], out=args.shards, format="codes",
             codec=args.codec, clip_frames=8, clip_stride=4, shard_samples=8, progress=False)
        args.epochs = 2
    if not (args.shards and args.codec):
        parser.error("give SHARD_DIR and --codec, or --quick")
    checkpoint = os.path.join(work, "checkpoint.pt")
    options = dict(epochs=args.epochs, device=device, classes=args.classes)
    # the reference: one uninterrupted run
    full = run(args.shards, args.codec, stop_at=None, checkpoint=checkpoint + ".none", **options)
    # interrupted in the middle of the last epoch, then resumed
    stop = (args.epochs - 1, max(1, len(full[-1]) // 8))
    first = run(args.shards, args.codec, stop_at=stop, checkpoint=checkpoint, **options)
    rest = run(args.shards, args.codec, stop_at=None, checkpoint=checkpoint, **options)
    assert first[-1] + rest[0] == full[-1], "the resumed epoch differs from the uninterrupted one"
    print(f"resume check: epoch {stop[0]} = {len(first[-1])} clips before the checkpoint + "
          f"{len(rest[0])} after = the uninterrupted epoch, in order")


if __name__ == "__main__":
    main()
