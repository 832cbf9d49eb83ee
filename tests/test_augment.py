"""Learned latent augmentations: ops, network, training, LatentAugment in the loader."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import cvload
from cvload.augment import (
    AugmentationNetwork,
    AugNetConfig,
    Brightness,
    HorizontalFlip,
    LatentAugment,
    RandomResizedCrop,
    Rotation,
    Saturation,
    evaluate,
    naive_crop,
    naive_flip,
    test_time_views,
    train,
)
from cvload.codec import CodecConfig, VideoCodec
from cvload.codec import train as train_codec
from cvload.errors import CodecMismatchError, InvalidArgumentError

OPS = [RandomResizedCrop(), HorizontalFlip(), Brightness(), Saturation(), Rotation()]
TINY = dict(clip_frames=8, size=(32, 32), channels=8, res_blocks=0, temporal_stride=2,
            groups=3, fsq_levels=(8, 6, 5))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from cvload.synthetic import write_video

    root = tmp_path_factory.mktemp("aug-videos")
    return [write_video(root / f"v{i}.mp4", num_frames=48, seed=i, motion=(i % 3 - 1, 1)).path
            for i in range(4)]


@pytest.fixture(scope="module")
def codec_path(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("aug-codec") / "codec.pt"
    train_codec(videos, out=out, config=CodecConfig(**TINY), steps=30, batch_size=8,
                progress=False, val_every=30, checkpoint_every=30)
    return out


@pytest.fixture(scope="module")
def trained(videos, codec_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("aug-net") / "augnet.pt"
    result = train(codec_path, videos, out=out, ops=("crop", "flip"), steps=150, batch_size=8,
                   progress=False, val_every=50, checkpoint_every=50)
    return result


# -- ops ------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_sampling_is_deterministic_per_seed_and_in_range(op):
    draw = lambda seed: op.sample(64, torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = draw(1), draw(1), draw(2)
    assert a.shape == (64, op.num_params) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    if op.name == "crop":
        x0, y0, w, h = a.unbind(1)
        assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 1 + 1e-6).all()
        assert (y0 + h <= 1 + 1e-6).all()
        assert ((w * h >= 0.25 - 1e-4) | (w == 1) | (h == 1)).all()
    elif op.name == "flip":
        assert set(a[:, 0].tolist()) == {0.0, 1.0}
    elif op.name in ("brightness", "saturation"):
        assert (a >= op.range[0]).all() and (a <= op.range[1]).all()
    else:
        assert (a.abs() <= math.radians(op.degrees) + 1e-6).all()


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_identity_parameters_leave_clips_unchanged(op):
    video = torch.rand(3, 4, 16, 24, 3)
    out = op.apply(video, op.identity(3))
    torch.testing.assert_close(out, video, atol=2e-6, rtol=0)


def test_pixel_ops_on_known_cases():
    video = torch.rand(2, 3, 16, 24, 3)
    flip = HorizontalFlip()
    ones = torch.ones(2, 1)
    assert torch.equal(flip.apply(flip.apply(video, ones), ones), video)
    assert torch.equal(flip.apply(video, ones)[..., 0, :], video[..., -1, :])
    # the left half of a horizontal ramp, resized to the full width, is the ramp of 0..0.5
    ramp = torch.linspace(0, 1, 33)[:-1] + 1 / 64  # pixel centres of 32 columns
    clip = ramp[None, None, None, :, None].expand(1, 1, 8, 32, 3).contiguous()
    half = RandomResizedCrop().apply(clip, torch.tensor([[0.0, 0.0, 0.5, 1.0]]))
    expected = ramp / 2
    torch.testing.assert_close(half[0, 0, 4, 1:-1, 0], expected[1:-1], atol=1e-5, rtol=0)
    # brightness scales and clips; saturation 0 is grey
    bright = Brightness().apply(torch.full((1, 1, 2, 2, 3), 0.6), torch.tensor([[1.5]]))
    assert torch.allclose(bright, torch.full_like(bright, 0.9))
    grey = Saturation().apply(video, torch.zeros(2, 1))
    assert torch.allclose(grey[..., 0], grey[..., 1]) and torch.allclose(grey[..., 1], grey[..., 2])
    # +90 degrees turns a dot right of the centre to above it (counter-clockwise)
    dot = torch.zeros(1, 1, 33, 45, 3)
    dot[0, 0, 16, 30] = 1.0
    turned = Rotation(90).apply(dot, torch.tensor([[math.pi / 2]]))
    assert (turned[0, 0, ..., 0] > 0.3).nonzero().tolist() == [[8, 22]]
    with pytest.raises(InvalidArgumentError, match=r"parameters must be \(2, 4\)"):
        RandomResizedCrop().apply(video, torch.zeros(3, 4))


@pytest.mark.needs_cuda
@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_pixel_ops_agree_on_cuda(op):
    video = torch.rand(3, 2, 16, 24, 3)
    params = op.sample(3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(op.apply(video.cuda(), params.cuda()).cpu(),
                               op.apply(video, params), atol=1e-5, rtol=0)


# -- network --------------------------------------------------------------------------------


def test_network_shapes_vectors_and_identity_at_start():
    config = AugNetConfig(channels=6, grid=(2, 4, 5), ops=("crop", "flip", "brightness"),
                          base="identity")
    assert config.param_dim == 3 + 4
    vector = config.vector("flip", torch.ones(2, 1))
    assert vector.tolist() == [[0, 1, 0, 1, 0, 0, 0]] * 2
    net = AugmentationNetwork(config)
    z = torch.randn(2, 6, 2, 4, 5)
    out = net.apply_op(z, "crop", RandomResizedCrop().sample(2))
    assert out.shape == z.shape
    assert torch.equal(out, z)  # zero-initialised head: an untrained network is the identity
    with pytest.raises(InvalidArgumentError, match="do not fit"):
        net(torch.randn(2, 6, 2, 4, 4), vector)
    with pytest.raises(InvalidArgumentError, match="not trained for op 'rotation'"):
        net.apply_op(z, "rotation", torch.zeros(2, 1))
    resampled = AugmentationNetwork(AugNetConfig(channels=6, grid=(2, 4, 5), ops=("flip",)))
    # the resampled base moves the grid as the op moves pixels: a flip mirrors the tokens
    assert torch.allclose(resampled.apply_op(z, "flip", torch.ones(2, 1)), z.flip(-1), atol=1e-6)


def test_naive_baselines():
    z = torch.arange(2 * 1 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 1, 4, 4)
    assert torch.equal(naive_flip(z), z.flip(-1))
    assert torch.equal(naive_flip(z, torch.tensor([[1.0], [0.0]]))[1], z[1])
    full = naive_crop(z, torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2))
    assert torch.equal(full, z)
    quarter = naive_crop(z, torch.tensor([[0.5, 0.5, 0.5, 0.5]] * 2))
    # the bottom-right 2x2 tokens, each repeated twice in both directions
    assert torch.equal(quarter[0, 0, 0], z[0, 0, 0, 2:, 2:].repeat_interleave(2, 0)
                       .repeat_interleave(2, 1))


# -- training and evaluation ----------------------------------------------------------------


def test_training_reduces_the_held_out_loss_and_beats_identity(trained, codec_path, videos):
    first, last = trained.val_loss[0][1], trained.val_loss[-1][1]
    assert trained.steps == 150 and last < 0.7 * first, trained.val_loss
    assert last < 0.7 * trained.identity_val_loss
    net = AugmentationNetwork.load(trained.path)
    assert net.codec_id == VideoCodec.load(codec_path).codec_id
    report = evaluate(net, codec_path, videos, clips=8)
    for op in ("crop", "flip"):
        row = report["ops"][op]
        learned, naive, identity = (row[m]["vs_decoded"]["ssim"]
                                    for m in ("learned", "naive", "identity"))
        assert learned > naive and learned > identity, (op, row)


def test_resume_continues_and_codec_mismatch_is_refused(videos, codec_path, trained, tmp_path):
    out = tmp_path / "augnet.pt"
    train(codec_path, videos, out=out, ops=("flip",), steps=20, batch_size=4, progress=False,
          checkpoint_every=10, val_every=10)
    resumed = train(codec_path, videos, out=out, ops=("flip",), steps=30, batch_size=4,
                    progress=False, checkpoint_every=10, val_every=10, resume=True)
    assert resumed.resumed_from == 20 and resumed.steps == 30
    assert [s for s, _ in resumed.losses][:1] == [1] and len(resumed.losses) == 30
    other = VideoCodec(CodecConfig(**TINY))
    with pytest.raises(CodecMismatchError, match="trained for codec"):
        LatentAugment(trained.path, other)
    with pytest.raises(CodecMismatchError, match="trained for codec"):
        train(other, videos, out=out, ops=("flip",), steps=40, progress=False, resume=True)


@pytest.fixture(scope="module")
def codes_shards(videos, codec_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("aug-shards")
    cvload.shards.pack(videos, out=out, format="codes", codec=codec_path, clip_frames=8,
                       shard_samples=6, progress=False)
    return out


def _latents(loader):
    return [(b["__index__"].clone(), b["latents"].clone()) for b in loader]


def test_latent_augment_in_the_loader_is_reproducible(trained, codec_path, codes_shards):
    def make(seed, workers=0):
        augment = LatentAugment(trained.path, codec_path, p=0.5, seed=seed)
        loader = cvload.DataLoader(cvload.ShardDataset(codes_shards, shuffle=True),
                                   batch_size=4, device="cpu", gpu_transforms=[augment],
                                   num_workers=workers, worker_type="process" if workers else "auto")
        return loader, augment

    def run(seed, workers=0):
        loader, augment = make(seed, workers)
        return loader, augment, _latents(loader)

    loader, augment, first = run(7)
    _, _, again = run(7)
    _, _, workers = run(7, workers=2)
    _, _, other = run(8)
    assert len(first) == len(loader) and first[0][1].shape[1:] == (9, 4, 4, 4)
    for (ia, a), (ib, b), (ic, c) in zip(first, again, workers):
        assert torch.equal(ia, ib) and torch.equal(a, b)
        assert torch.equal(ia, ic) and torch.equal(a, c)
    assert any(not torch.equal(a, b) for (_, a), (_, b) in zip(first, other))
    # some samples were transformed and some were not
    applied = torch.cat([augment.last_params[o][1] for o in ("crop", "flip")])
    assert applied.any() and not applied.all()
    # a resumed epoch gives the rest of the same augmented batches
    head_loader, _ = make(7)
    iterator = iter(head_loader)
    [next(iterator) for _ in range(2)]
    state = head_loader.state_dict()
    resumed, _ = make(7, workers=2)
    resumed.load_state_dict(state)
    rest = _latents(resumed)
    assert len(rest) == len(first) - 2
    for (ia, a), (ib, b) in zip(first[2:], rest):
        assert torch.equal(ia, ib) and torch.equal(a, b)
    # the next epoch draws new augmentations for the same samples
    by_id = {int(i): z for ids, lat in first for i, z in zip(ids, lat)}
    second = {int(i): z for ids, lat in _latents(loader) for i, z in zip(ids, lat)}
    assert loader.epoch == 1 and set(second) == set(by_id)
    assert any(not torch.equal(by_id[i], second[i]) for i in by_id)
    # also with the same batches in both epochs (no shuffle): the epoch itself changes them
    ordered = cvload.DataLoader(cvload.ShardDataset(codes_shards), batch_size=4, device="cpu",
                                gpu_transforms=[LatentAugment(trained.path, codec_path, p=0.5,
                                                              seed=7)])
    epoch0, epoch1 = _latents(ordered), _latents(ordered)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epoch0, epoch1))
    assert any(not torch.equal(a[1], b[1]) for a, b in zip(epoch0, epoch1))
    # with p=0 the latents are exactly the codec's embedding of each sample
    codec = VideoCodec.load(codec_path)
    plain = by_id
    dataset = cvload.ShardDataset(codes_shards)
    augment = LatentAugment(trained.path, codec, p=0.0)
    for ids, lat in _latents(cvload.DataLoader(dataset, batch_size=5, gpu_transforms=[augment],
                                               device="cpu")):
        for i, z in zip(ids.tolist(), lat):
            torch.testing.assert_close(z, codec.embed(dataset[i]["codes"])[0])
    assert len(plain) == len(dataset)


def test_latent_augment_refuses_shards_of_another_codec(trained, codec_path, videos, tmp_path):
    other = tmp_path / "other.pt"
    VideoCodec(CodecConfig(**TINY)).save(other)
    cvload.shards.pack(videos[:1], out=tmp_path / "s", format="codes", codec=other,
                       clip_frames=8, progress=False)
    with pytest.raises(CodecMismatchError, match="shards hold codes of codec"):
        cvload.DataLoader(cvload.ShardDataset(tmp_path / "s"), batch_size=2,
                          gpu_transforms=[LatentAugment(trained.path, codec_path)])


def test_requantised_output_and_test_time_views(trained, codec_path, codes_shards):
    codec = VideoCodec.load(codec_path)
    dataset = cvload.ShardDataset(codes_shards)
    batch = cvload.DataLoader(dataset, batch_size=4).__iter__().__next__()
    out = LatentAugment(trained.path, codec, p=1.0, output="codes")(batch)
    assert out["codes"].dtype == batch["codes"].dtype and out["codes"].shape == batch["codes"].shape
    assert not torch.equal(out["codes"], batch["codes"]) and "latents" not in out
    net = AugmentationNetwork.load(trained.path)
    views = test_time_views(net, codec.embed(batch["codes"]), crops=3, flips=True)
    assert len(views) == 6 and all(v.shape == (4, 9, 4, 4, 4) for v in views)
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[0], views[2])


def test_cli_train_and_eval_augnet(videos, codec_path, tmp_path):
    out, report = tmp_path / "net.pt", tmp_path / "r.json"
    run = subprocess.run([sys.executable, "-m", "cvload", "train-augnet", *videos, "--codec",
                          str(codec_path), "--ops", "flip,brightness", "--out", str(out),
                          "--steps", "20", "--batch-size", "4", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "ops flip,brightness" in run.stdout and "held-out latent L2" in run.stdout
    run = subprocess.run([sys.executable, "-m", "cvload", "eval-augnet", str(out), *videos,
                          "--json", str(report), "--clips", "4"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    data = json.loads(report.read_text())
    assert set(data["ops"]) == {"flip", "brightness"}
    assert "naive" in data["ops"]["flip"] and "naive" not in data["ops"]["brightness"]
    assert np.isfinite(data["ops"]["flip"]["learned"]["vs_pixels"]["psnr"])
    bad = subprocess.run([sys.executable, "-m", "cvload", "train-augnet", *videos, "--codec",
                          str(codec_path), "--ops", "zoom", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "Invalid op 'zoom'" in bad.stderr


@pytest.mark.needs_shared
@pytest.mark.slow
def test_training_on_real_footage_reduces_the_held_out_loss(tmp_path):
    """Real clips (../shared/videos), a tiny codec: the network learns crops and flips of
    held-out frames, well below the identity."""
    from tests import shared_videos as sv

    videos = [str(sv.get("libvpl/cars_320x240.h264").path),
              str(sv.get("mv_extractor/vid_h264.264").path)]
    codec = tmp_path / "codec.pt"
    train_codec(videos, out=codec, config=CodecConfig(**TINY), steps=20, batch_size=8,
                progress=False, val_every=20, checkpoint_every=20)
    result = train(codec, videos, out=tmp_path / "augnet.pt", ops=("crop", "flip"),
                   steps=120, batch_size=8, progress=False, val_every=40, checkpoint_every=120)
    first, last = result.val_loss[0][1], result.val_loss[-1][1]
    assert last < 0.8 * first and last < 0.8 * result.identity_val_loss, result.val_loss


def test_damaged_or_foreign_augnet_files_raise_naming_the_file(trained, tmp_path):
    """A truncated network file, a file of another kind and a missing one each raise a
    cvload error that names the path; nothing is unpickled."""
    from cvload.errors import CvloadError

    data = open(trained.path, "rb").read()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something-else", "weights": torch.zeros(2)}, foreign)
    for path, match in ((truncated, "not a readable augmentation network file"),
                        (foreign, "not an augmentation network file"),
                        (tmp_path / "missing.pt", "no such augmentation network file")):
        with pytest.raises(CvloadError, match=match) as info:
            AugmentationNetwork.load(path)
        assert str(path) in str(info.value)
    # a file torch would only open by unpickling is refused, not executed
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "cvload-augnet", "obj": object()}, pickled)
    with pytest.raises(CvloadError):
        AugmentationNetwork.load(pickled)
