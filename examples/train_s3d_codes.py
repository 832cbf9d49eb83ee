"""S3D on neural codes, with learned latent augmentation on the device.

    python examples/train_s3d_codes.py VIDEOS_OR_LABELS_CSV --codec codec.pt --epochs 20
    python examples/train_s3d_codes.py --quick     # generated videos, tiny codec, CPU

Steps: train a codec (or load ``--codec``), pack code shards (``cvload pack``), train an
augmentation network for the codec (crop + flip), train ``S3D.for_codes`` through
``cvload.DataLoader`` with ``LatentAugment`` as a device transform, and evaluate on the
held-out shards averaging the predictions over test-time views (crops and flips).
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
from cvload.augment import AugmentationNetwork, test_time_views  # noqa: E402
from cvload.augment import train as train_augnet  # noqa: E402
from cvload.codec import VideoCodec  # noqa: E402
from cvload.models import S3D  # noqa: E402
from cvload.shards import pack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("inputs", nargs="*", help="videos, folders or a labels CSV")
    parser.add_argument("--test", nargs="*", help="held-out videos or labels CSV (default: "
                        "the last shard)")
    parser.add_argument("--codec", help="a codec file (default: train one on the inputs)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--augnet-steps", type=int, default=1000)
    parser.add_argument("--width", type=float, default=1.0, help="S3D channel multiplier")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="cvload-s3d-")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        from _quick import quick_codec, quick_videos, split_csv

        root, videos = quick_videos(work, per_class=3)
        args.inputs, args.test = split_csv(root, videos, work, test_index=2)
        args.codec = quick_codec([v.path for v in videos], os.path.join(work, "codec.pt"))
        args.epochs, args.augnet_steps, args.width = 4, 60, 0.25
    if not args.inputs:
        parser.error("give videos (or a labels CSV), or --quick")
    if args.codec is None:
        from cvload.codec import train

        args.codec = train(args.inputs, out=os.path.join(work, "codec.pt"), steps=2000).path
    codec = VideoCodec.load(args.codec)
    shards = os.path.join(work, "shards")
    result = pack(args.inputs, out=shards, format="codes", codec=args.codec,
                  clip_frames=codec.config.clip_frames, clip_stride=codec.config.clip_frames // 2,
                  shard_samples=16, progress=False)
    print(f"packed {result.clips} clips into {result.shards} shards ({result.bytes} bytes)")

    videos = cvload.shards.gather_inputs(args.inputs)
    augnet_path = os.path.join(work, "augnet.pt")
    started = time.perf_counter()
    trained = train_augnet(codec, [p for p, _ in videos], out=augnet_path, ops=("crop", "flip"),
                           steps=args.augnet_steps, progress=False, device=device,
                           val_every=max(1, args.augnet_steps // 2))
    print(f"augmentation network: {trained.steps} steps in {time.perf_counter() - started:.0f}s, "
          f"held-out latent L2 {trained.val_loss[0][1]:.4f} -> {trained.val_loss[-1][1]:.4f}")

    if args.test:
        pack(args.test, out=os.path.join(work, "test"), format="codes", codec=args.codec,
             clip_frames=codec.config.clip_frames, progress=False)
        train_set = cvload.ShardDataset(shards, shuffle=True)
        test_set = cvload.ShardDataset(os.path.join(work, "test"))
    else:  # train on every shard but the last, evaluate on the last
        names = sorted(f for f in os.listdir(shards) if f.endswith(".tar"))
        train_set = cvload.ShardDataset([os.path.join(shards, f) for f in names[:-1]],
                                        shuffle=True)
        test_set = cvload.ShardDataset(os.path.join(shards, names[-1]))
    codec = codec.to(device).eval()
    augment = cvload.LatentAugment(augnet_path, codec, p=0.5, seed=0)
    loader = cvload.DataLoader(train_set, batch_size=8, drop_last=True, device=device,
                               gpu_transforms=[augment])
    classes = 1 + max(int(train_set[i]["label"]) for i in range(len(train_set)))
    model = S3D.for_codes(codec, num_classes=classes, width=args.width).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        model.train()
        losses, started = [], time.perf_counter()
        for batch in loader:
            loss = F.cross_entropy(model(batch["latents"]), batch["label"])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        print(f"epoch {epoch}: loss {sum(losses) / len(losses):.3f} "
              f"({time.perf_counter() - started:.1f}s, augmentation "
              f"{loader.stats.seconds['transforms']:.2f}s so far)")

    net = AugmentationNetwork.load(augnet_path).to(device)
    model.eval()
    correct = single = total = 0
    with torch.no_grad():
        for batch in cvload.DataLoader(test_set, batch_size=8, device=device):
            latents = codec.embed(batch["codes"])
            views = test_time_views(net, latents, crops=3, flips=True)
            averaged = torch.stack([model(v).softmax(1) for v in views]).mean(0)
            correct += int((averaged.argmax(1) == batch["label"]).sum())
            single += int((model(latents).argmax(1) == batch["label"]).sum())
            total += len(batch["label"])
    print(f"held-out clips: accuracy {correct}/{total} averaged over {len(views)} test-time "
          f"views, {single}/{total} on the plain latents")


if __name__ == "__main__":
    main()
