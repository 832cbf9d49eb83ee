"""Reference models: shapes forward and backward on realistic small inputs, and each
overfits one small batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cvload.codec import CodecConfig, VideoCodec
from cvload.errors import InvalidArgumentError
from cvload.models import IMRNet, MVCGC, S3D, PastFuture
from cvload.tasks import CTP_KINDS, pmsp_classes, pmsp_labels


def _fit(model, loss_of, steps=25, lr=3e-3):
    """Train on one fixed batch; the first and last losses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = loss_of()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses[0], min(losses[-3:])


def test_s3d_rgb_and_codes_shapes_match_and_overfit():
    torch.manual_seed(0)
    rgb = S3D.for_rgb(4, width=0.25, dropout=0.0)
    codec = VideoCodec(CodecConfig())  # stride 4x8x8: a 16x128x128 clip is 4x16x16 codes
    codes = S3D.for_codes(codec, 4, width=0.25, dropout=0.0)
    assert codes.config.stem_stride == (1, 1) and rgb.config.stem_stride == (2, 8)
    clips = torch.randn(2, 3, 16, 128, 128)
    latents = torch.randn(2, codec.config.latent_channels, 4, 16, 16)
    # internal shapes roughly match: both enter Mixed_3b on a 16x16 grid
    assert rgb.stem(clips).shape[-2:] == codes.stem(latents).shape[-2:] == (16, 16)
    assert rgb(clips).shape == codes(latents).shape == (2, 4)
    stride4 = S3D.for_codes(VideoCodec(CodecConfig(spatial_stride=4, temporal_stride=2)), 4,
                            width=0.25)
    assert stride4.config.stem_stride == (1, 2)
    assert stride4.stem(torch.randn(1, stride4.config.in_channels, 8, 32, 32)).shape[-2:] == (16, 16)
    labels = torch.tensor([0, 3])
    first, last = _fit(codes, lambda: F.cross_entropy(codes(latents), labels))
    assert last < 0.3 * first, (first, last)
    with pytest.raises(InvalidArgumentError, match="permute"):
        rgb(torch.randn(1, 16, 3, 64, 64))


def _imrnet_batch(b=2, t=2, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"iframe": torch.randint(0, 255, (b, t, 3, 32, 48), generator=g, dtype=torch.uint8),
            "mv": torch.randn(b, t, k, 4, 8, 12, generator=g) * 4,
            "residual": torch.randint(-40, 40, (b, t, k, 3, 32, 48), generator=g).short()}


def test_imrnet_heads_and_overfit():
    torch.manual_seed(0)
    batch = _imrnet_batch()
    model = IMRNet(5, frames_per_gop=3, width=0.125, dropout=0.0)
    out = model(batch)
    assert out["logits"].shape == (2, 5) and out["ctp"].shape == (2, len(CTP_KINDS))
    assert [p.shape[1] for p in out["pmsp"]] == pmsp_classes()
    assert out["features"].shape == (2, 3 * model.iframe.out_channels)
    pmsp = torch.stack([pmsp_labels(m) for m in batch["mv"]])
    labels, ctp = torch.tensor([1, 4]), torch.tensor([0, 2])

    def loss():
        o = model(batch)
        return (F.cross_entropy(o["logits"], labels) + model.pmsp_loss(o["pmsp"], pmsp)
                + F.cross_entropy(o["ctp"], ctp))

    first, last = _fit(model, loss)
    assert last < 0.5 * first, (first, last)
    assert all(p.grad is not None for p in model.mv_links.parameters())  # connections train
    with pytest.raises(InvalidArgumentError, match="frames_per_gop=3"):
        model(_imrnet_batch(k=2))


def test_mvcgc_loss_falls_and_queue_advances():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    batch = {"rgb": torch.randint(0, 255, (4, 4, 3, 32, 32), generator=g, dtype=torch.uint8),
             "mv": torch.randn(4, 4, 4, 8, 8, generator=g) * 4}
    model = MVCGC(width=0.125, queue_size=16, top_k=2, momentum=0.9)
    out = model(batch)
    assert out["rgb"].shape == out["mv"].shape == (4, 128)
    assert torch.allclose(out["rgb"].norm(dim=1), torch.ones(4))
    assert int(model.queue_at) == 4
    before = model.queue_mv.clone()
    first, last = _fit(model, lambda: model(batch)["loss"], steps=30)
    assert last < 0.7 * first, (first, last)
    assert not torch.equal(model.queue_mv, before)
    model.eval()
    at = int(model.queue_at)
    assert set(model(batch)) == {"rgb", "mv"} and int(model.queue_at) == at  # no update


def test_past_future_overfits():
    torch.manual_seed(0)
    chunks, query = torch.randn(6, 4, 8, 2, 8, 8), torch.randn(6, 8, 2, 8, 8)
    labels = torch.tensor([1.0, 0, 1, 0, 0, 1])
    model = PastFuture(8, dim=32, slots=4)
    assert model(chunks, query).shape == (6,)
    first, last = _fit(model, lambda: F.binary_cross_entropy_with_logits(model(chunks, query),
                                                                         labels), steps=40)
    assert last < 0.3 * first, (first, last)
    with pytest.raises(InvalidArgumentError, match="embed the codes"):
        model(chunks[:, :, :4], query)
