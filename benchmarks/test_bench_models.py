"""S3D forward+backward on codes vs on RGB for the same clips (issue 15; the paper:
0.052 s vs 0.089 s at batch 8 on a V100), on CUDA when there is one, else the CPU.

Batch of 8 clips of 16x128x128: RGB ``(8, 3, 16, 128, 128)`` into ``S3D.for_rgb``; their
codes in the default format (stride 4x8x8: ``(8, 8, 4, 16, 16)`` latents, embedding
included) into ``S3D.for_codes``. Full width (the published network), 400 classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.conftest import interleaved


def test_s3d_codes_vs_rgb(benchmark):
    from cvload.codec import CodecConfig, VideoCodec
    from cvload.models import S3D

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    codec = VideoCodec(CodecConfig()).to(device).eval()
    clips = torch.randint(0, 256, (8, 16, 128, 128, 3), dtype=torch.uint8)
    codes = codec.encode(clips).to(device)
    rgb = (clips.permute(0, 4, 1, 2, 3).float() / 127.5 - 1).to(device)
    labels = torch.randint(0, 400, (8,), device=device)
    models = {"rgb": S3D.for_rgb(400).to(device), "codes": S3D.for_codes(codec, 400).to(device)}

    def step(name):
        def run():
            model = models[name]
            model.zero_grad(set_to_none=True)
            x = rgb if name == "rgb" else codec.embed(codes)
            F.cross_entropy(model(x), labels).backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        return run

    interleaved(benchmark, "models", f"{device.type} batch=8 16x128x128", {
        "s3d_rgb_fwd_bwd": (step("rgb"), 8, "clips"),
        "s3d_codes_fwd_bwd": (step("codes"), 8, "clips"),
    }, rounds=5)
