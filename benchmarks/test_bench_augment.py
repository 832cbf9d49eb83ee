"""Cost of learned latent augmentation per batch against an S3D training step on codes
(issue 14: at most 10% of the step), on the same device: CUDA when there is one, else
the CPU.

Batch of 8 clips of the default code format (16x128x128 clips -> 4x16x16x2 codes, 8
latent channels). ``s3d_codes_step``: ``codec.embed``, S3D forward, backward, AdamW step.
``latent_augment``: :class:`cvload.LatentAugment` as the loader's device stage calls it
(embedding included), ops crop and flip each with p=0.5; ``latent_augment_5ops_p1``: one
network serving all five ops, every op applied to every sample (the worst case).
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.conftest import interleaved


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@pytest.mark.parametrize("batch_size", [8])
def test_latent_augment_cost(benchmark, batch_size):
    import cvload
    from cvload.augment import OP_NAMES, AugmentationNetwork, AugNetConfig, naive_flip
    from cvload.codec import CodecConfig, VideoCodec
    from cvload.models import S3D

    device = _device()
    torch.manual_seed(0)
    codec = VideoCodec(CodecConfig()).to(device).eval()
    c = codec.config
    grid = c.latent_shape(c.clip_frames, *c.size)
    codes = torch.randint(0, c.codebook_size, (batch_size, *grid, c.groups),
                          dtype=torch.int32).to(device)
    batch = {"codes": codes, "__index__": torch.arange(batch_size)}

    def augment(ops, p):
        net = AugmentationNetwork(AugNetConfig(c.latent_channels, grid, ops), codec.codec_id)
        return cvload.LatentAugment(net, codec, p=p)

    two = augment(("crop", "flip"), 0.5)
    five = augment(OP_NAMES, 1.0)
    model = S3D.for_codes(codec, num_classes=400).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    labels = torch.randint(0, 400, (batch_size,), device=device)

    def step():
        latents = codec.embed(codes)
        loss = torch.nn.functional.cross_entropy(model(latents), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)

    def run(transform):
        def go():
            transform(batch)
            _sync(device)
        return go

    def naive():
        naive_flip(codec.embed(codes))
        _sync(device)

    interleaved(benchmark, "augment", f"{device.type} batch={batch_size}", {
        "s3d_codes_step": (step, batch_size, "clips"),
        "latent_augment": (run(two), batch_size, "clips"),
        "latent_augment_5ops_p1": (run(five), batch_size, "clips"),
        "embed_naive_flip": (naive, batch_size, "clips"),
    }, rounds=9)


def test_pixel_vs_latent_augment(benchmark):
    """Device stage, issue 16: the same batch of 8 clips (16x128x128) augmented with crop
    and flip (each with p=0.5 per sample) as pixels on RGB (``rgb_pixel_augment``: uint8
    host batch -> device -> float, then the ops' pixel references, as a pixel pipeline
    does it) and as codes (``codes_latent_augment``: host codes -> device ->
    :class:`cvload.LatentAugment`, embedding included); both end with float tensors ready
    for a model. ``*_transfer_only``: the copy to the device and conversion alone."""
    import cvload
    from cvload.augment import AugmentationNetwork, AugNetConfig, HorizontalFlip, \
        RandomResizedCrop
    from cvload.codec import CodecConfig, VideoCodec

    device = _device()
    torch.manual_seed(0)
    codec = VideoCodec(CodecConfig()).to(device).eval()
    c = codec.config
    clips = torch.randint(0, 256, (8, 16, 128, 128, 3), dtype=torch.uint8)
    codes = codec.encode(clips.to(device)).cpu()
    grid = c.latent_shape(c.clip_frames, *c.size)
    net = AugmentationNetwork(AugNetConfig(c.latent_channels, grid, ("crop", "flip")),
                              codec.codec_id)
    latent = cvload.LatentAugment(net, codec, p=0.5)
    crop, flip = RandomResizedCrop(), HorizontalFlip(p=1.0)
    generator = torch.Generator().manual_seed(0)
    pin = device.type == "cuda"
    host_rgb = clips.pin_memory() if pin else clips
    host_codes = codes.pin_memory() if pin else codes

    def pixels():
        video = host_rgb.to(device, non_blocking=True).float() / 255.0
        for op in (crop, flip):
            chosen = torch.rand(len(video), generator=generator) < 0.5
            if chosen.any():
                mask = chosen.to(device)
                video[mask] = op.apply(video[mask], op.sample(int(chosen.sum()), generator)
                                       .to(device))
        _sync(device)

    def rgb_transfer():
        host_rgb.to(device, non_blocking=True).float().div_(255.0)
        _sync(device)

    def latents():
        latent({"codes": host_codes.to(device, non_blocking=True),
                "__index__": torch.arange(8)})
        _sync(device)

    def codes_transfer():
        codec.embed(host_codes.to(device, non_blocking=True))
        _sync(device)

    interleaved(benchmark, "device_stage", f"{device.type} batch=8 16x128x128", {
        "rgb_pixel_augment": (pixels, 8, "clips"),
        "rgb_transfer_only": (rgb_transfer, 8, "clips"),
        "codes_latent_augment": (latents, 8, "clips"),
        "codes_transfer_embed_only": (codes_transfer, 8, "clips"),
    }, rounds=11)
