"""Learned latent augmentations vs naive latent ops vs identity (issue 14), on clips of
videos never seen in training.

    python benchmarks/measure_augnet.py CODEC_MIN AUGNET_MIN [BASES]
    python benchmarks/measure_augnet.py 4 5 resampled,identity

Trains a codec of the default code format (16x128x128 clips, stride 4x8x8, 2 groups of
16-bit FSQ) for CODEC_MIN minutes, then one augmentation network (ops crop and flip) per
base for AUGNET_MIN minutes each, on the training videos of ``measure_codec.py``; evaluates
each on the three held-out videos with what ``cvload eval-augnet`` reports. Needs
../shared/videos. Writes /tmp/cvload-augnet-*.pt and their .eval.json. Not a pytest file:
it runs for minutes by design.
"""
import json
import os
import sys
import time

import torch

torch.set_num_threads(2)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.measure_codec_sets import EVAL, TRAIN  # noqa: E402
from cvload.augment import evaluate, format_report, train  # noqa: E402
from cvload.codec import CodecConfig, train as train_codec  # noqa: E402

codec_minutes, augnet_minutes = float(sys.argv[1]), float(sys.argv[2])
bases = sys.argv[3].split(",") if len(sys.argv) > 3 else ["resampled"]
codec_path = f"/tmp/cvload-augnet-codec_{codec_minutes:g}min.pt"
if not os.path.exists(codec_path):
    r = train_codec(TRAIN, out=codec_path, config=CodecConfig(), steps=10**6,
                    max_seconds=codec_minutes * 60, progress=False)
    print(f"== codec {r.steps} steps in {r.seconds:.0f}s, val {r.val_psnr[-1][1]:.2f} dB",
          flush=True)
# the resampled base alone (an untrained network is the identity on top of it): how much
# of the result the grid resampling gives before any learning
from cvload.augment import AugmentationNetwork, AugNetConfig  # noqa: E402
from cvload.codec import VideoCodec  # noqa: E402

codec = VideoCodec.load(codec_path)
c = codec.config
untrained = AugmentationNetwork(AugNetConfig(c.latent_channels, c.latent_shape(
    c.clip_frames, *c.size), ("crop", "flip")), codec.codec_id)
print("== the resampled base alone (untrained network)", flush=True)
print(format_report(evaluate(untrained, codec, EVAL, clips=12)), flush=True)
for base in bases:
    out = f"/tmp/cvload-augnet-{base}_{augnet_minutes:g}min.pt"
    for f in (out, out + ".ckpt"):
        if os.path.exists(f):
            os.remove(f)
    started = time.perf_counter()
    result = train(codec_path, TRAIN, out=out, ops=("crop", "flip"), steps=10**6,
                   max_seconds=augnet_minutes * 60, progress=False, base=base)
    print(f"== augnet base={base}: {result.steps} steps in {result.seconds:.0f}s "
          f"({result.steps / result.seconds:.2f} steps/s), held-out latent L2 "
          f"{result.val_loss[0][1]:.4f} -> {result.val_loss[-1][1]:.4f} (identity "
          f"{result.identity_val_loss:.4f})", flush=True)
    report = evaluate(out, codec_path, EVAL, clips=12)
    print(format_report(report), flush=True)
    json.dump(report, open(out + ".eval.json", "w"), indent=1)
    print(f"   wall {time.perf_counter() - started:.0f}s", flush=True)
