"""The neural codec: grids, dtypes, determinism, files, ratios, metrics, training."""

import io
import math

import numpy as np
import pytest
import torch

from cvload.codec import CodecConfig, VideoCodec, perplexity, psnr, ssim
from cvload.errors import CodecFileError, CodecMismatchError, InvalidArgumentError

TINY = dict(clip_frames=8, size=(32, 32), channels=8, res_blocks=0, temporal_stride=2, groups=3,
            fsq_levels=(8, 6, 5))


def tiny(**changes) -> CodecConfig:
    """A codec small enough to train in seconds (uint8 codes)."""
    return CodecConfig(**{**TINY, **changes})


@pytest.mark.parametrize("ts", [1, 2, 4])
@pytest.mark.parametrize("ss", [4, 8])
@pytest.mark.parametrize("quantizer", ["fsq", "vq"])
def test_exact_grids_and_dtypes(ts, ss, quantizer):
    codec = VideoCodec(tiny(groups=2, temporal_stride=ts, spatial_stride=ss, quantizer=quantizer))
    video = torch.randint(0, 256, (2, 8, 32, 32, 3), dtype=torch.uint8)
    codes = codec.encode(video)
    assert codes.shape == (2, 8 // ts, 32 // ss, 32 // ss, 2) and codes.dtype == torch.uint8
    assert codec.embed(codes).shape == (2, codec.config.latent_channels, 8 // ts, 32 // ss, 32 // ss)
    out = codec.decode(codes)
    assert out.shape == (2, 8, 32, 32, 3) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_uint16_codes_when_codebook_exceeds_a_byte():
    codec = VideoCodec(tiny(fsq_levels=(8, 8, 8, 5), groups=1))
    assert codec.config.codebook_size == 2560 and codec.config.code_dtype == np.uint16
    codes = codec.encode(torch.rand(1, 8, 32, 32, 3))
    assert int(codes.max()) < 2560 and codes.dtype != torch.uint8


def test_encode_is_deterministic_and_does_not_update_codebooks():
    codec = VideoCodec(tiny(quantizer="vq"))
    video = torch.rand(2, 8, 32, 32, 3)
    codec.train()
    codec(video)  # initialises the codebooks from data
    before = codec.quantizer.embed.clone()
    a, b = codec.encode(video), codec.encode(video)
    assert torch.equal(a, b) and torch.equal(before, codec.quantizer.embed)
    assert codec.training  # encode restores the mode it found


def test_uint8_and_float_inputs_agree():
    codec = VideoCodec(tiny())
    video = torch.randint(0, 256, (1, 8, 32, 32, 3), dtype=torch.uint8)
    assert torch.equal(codec.encode(video), codec.encode(video.float() / 255))


def test_bad_shapes_and_codes_are_explained():
    codec = VideoCodec(tiny())
    with pytest.raises(CodecMismatchError, match="does not divide"):
        codec.encode(torch.rand(1, 8, 30, 32, 3))
    with pytest.raises(CodecMismatchError, match="expected"):
        codec.decode(torch.zeros(1, 4, 4, 4, 5, dtype=torch.uint8))
    with pytest.raises(CodecMismatchError, match="beyond"):
        codec.decode(torch.full((1, 4, 4, 4, 3), 250, dtype=torch.uint8))
    with pytest.raises(InvalidArgumentError, match="Supported values are 4 and 8"):
        CodecConfig(spatial_stride=16)


def test_save_load_round_trip_and_id(tmp_path):
    codec = VideoCodec(tiny(quantizer="vq"))
    codec.train()
    codec(torch.rand(2, 8, 32, 32, 3))
    codec_id = codec.save(tmp_path / "c.pt")
    back = VideoCodec.load(tmp_path / "c.pt")
    assert back.codec_id == codec_id == codec.codec_id and len(codec_id) == 16
    video = torch.rand(1, 8, 32, 32, 3)
    assert torch.equal(back.encode(video), codec.encode(video))
    assert torch.allclose(back.decode(codec.encode(video)), codec.decode(codec.encode(video)))
    # another codec has another id
    assert VideoCodec(tiny()).codec_id != codec_id


def test_load_refuses_what_is_not_a_cvload_codec(tmp_path, capsys):
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil()))
    for name, match in [("text.pt", "not a loadable"), ("other.pt", "not a cvload codec"),
                        ("evil.pt", "not a loadable"), ("missing.pt", "no such file")]:
        with pytest.raises(CodecFileError, match=match):
            VideoCodec.load(tmp_path / name)
    assert "pwned" not in capsys.readouterr().out  # nothing was unpickled
    codec = VideoCodec(tiny())
    codec.save(tmp_path / "c.pt")
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    payload["state_dict"]["decoder.synthesis.bias"] += 1  # edited weights
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(CodecFileError, match="hash mismatch"):
        VideoCodec.load(tmp_path / "edited.pt")


@pytest.mark.parametrize("config, nominal", [
    # A 32x256x256 RGB clip is 32*256*256*3*8 = 50,331,648 bits in every case.
    # CR 30: ts 2, ss 4 -> 16x64x64 = 65,536 positions; 4 groups of FSQ (12, 7) = 84 codes:
    #   50331648 / (65536 * 4 * log2(84)) = 768 / (4 * 6.39232) = 30.036
    (dict(temporal_stride=2, spatial_stride=4, groups=4, fsq_levels=(12, 7)), 30.0361),
    # CR 256: ts 2, ss 8 -> 16x32x32 = 16,384 positions; 2 groups of FSQ (8, 8) = 64 codes:
    #   50331648 / (16384 * 2 * 6) = 256 exactly
    (dict(temporal_stride=2, spatial_stride=8, groups=2, fsq_levels=(8, 8)), 256.0),
    # CR 475: ts 2, ss 8; 1 group of FSQ (11, 8) = 88 codes:
    #   50331648 / (16384 * log2(88)) = 3072 / 6.45943 = 475.58
    (dict(temporal_stride=2, spatial_stride=8, groups=1, fsq_levels=(11, 8)), 475.584),
    # VQ: ts 4, ss 8 -> 8x32x32 = 8,192 positions; 2 codebooks of 256: 50331648/(8192*2*8) = 384
    (dict(temporal_stride=4, spatial_stride=8, groups=2, quantizer="vq"), 384.0),
])
def test_compression_ratio_arithmetic(config, nominal):
    codec = VideoCodec(CodecConfig(clip_frames=32, size=(256, 256), channels=8, res_blocks=0,
                                   **config))
    ratio = codec.compression_ratio((32, 256, 256))
    assert ratio.nominal == pytest.approx(nominal, rel=1e-4)
    c = codec.config
    t, h, w = c.latent_shape(32, 256, 256)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((t, h, w, c.groups), c.code_dtype))
    assert ratio.code_bytes == buffer.tell()  # what a shard actually stores
    assert ratio.stored == pytest.approx(32 * 256 * 256 * 3 / buffer.tell())


def test_psnr_known_values():
    a = torch.zeros(4, 8, 8, 3)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert psnr(torch.zeros(2, 2, 2, 3, dtype=torch.uint8),
                torch.full((2, 2, 2, 3), 255, dtype=torch.uint8)) == pytest.approx(0.0)


def test_ssim_known_cases():
    rng = np.random.default_rng(0)
    x = rng.random((2, 32, 32, 3)).astype(np.float32)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-5)
    # constant images a and b: SSIM = (2ab + C1) / (a^2 + b^2 + C1), variances are 0
    a, b, c1 = 0.2, 0.6, 0.01 ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((16, 16, 1), a), np.full((16, 16, 1), b)) == pytest.approx(expected, rel=1e-4)
    # structure matters: a negated pattern scores far below a slightly noisy copy
    noisy = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    assert ssim(x, noisy) > 0.7 > ssim(x, 1 - x)


def test_perplexity():
    assert perplexity(np.zeros((10, 1), np.uint8), 256) == pytest.approx(1.0)
    uniform = np.arange(256, dtype=np.uint8).reshape(-1, 1)
    assert perplexity(uniform, 256) == pytest.approx(256.0)


@pytest.fixture(scope="module")
def training_videos(tmp_path_factory):
    from cvload.synthetic import write_video

    root = tmp_path_factory.mktemp("codec-train")
    return [write_video(root / f"t{i}.mp4", width=64, height=64, num_frames=24, gop=12,
                        motion=[(1, 0), (0, 1), (-1, 1)][i], seed=i).path for i in range(3)]


def _held_out_clips(videos, config) -> torch.Tensor:
    """The clips train() validates on by default (the held-out ends of the videos)."""
    from cvload.codec import CropPolicy, FramePool

    held = FramePool(videos, config, clips_per_epoch=8, crop=CropPolicy()).hold_out(0.1, clips=8)
    return torch.stack([held[i] for i in range(len(held))])


def test_training_improves_on_the_initial_transform_and_resumes(tmp_path, training_videos):
    from cvload.codec._train import validate
    from cvload.codec import train

    config = tiny()
    out = tmp_path / "codec.pt"
    first = train(training_videos, out=out, config=config, steps=30, batch_size=4,
                  val_every=10, checkpoint_every=10, progress=False, lr=3e-3)
    # the codec starts as the principal-component transform of the training clips: far
    # better than the same network untrained, and training improves on it
    held_out = _held_out_clips(training_videos, config)
    untrained = validate(VideoCodec(config), held_out)
    assert first.init_psnr is not None and first.val_psnr[0][1] > untrained + 6, \
        (first.val_psnr[0][1], untrained)
    assert first.val_psnr[-1][1] > first.val_psnr[0][1]
    assert "held out" in first.val_source
    # measured before the first step too, so progress never shows nan
    assert first.val_psnr[0][0] == 0 and all(np.isfinite(v) for _, v in first.val_psnr)
    codec = VideoCodec.load(out)
    assert codec.codec_id == first.codec_id
    # resume continues from the checkpoint to the new step count
    more = train(training_videos, out=out, config=config, steps=40, batch_size=4,
                 val_every=10, checkpoint_every=10, progress=False, lr=3e-3, resume=True)
    assert more.resumed_from == 30 and more.steps == 40 and len(more.losses) == 40


def test_vq_codes_stay_in_use(training_videos, tmp_path):
    """EMA codebooks with data-dependent init and dead-code restart do not collapse."""
    from cvload.codec import train

    config = tiny(quantizer="vq", groups=2, vq_codebook_size=64, vq_dim=4)
    result = train(training_videos, out=tmp_path / "vq.pt", config=config, steps=25,
                   batch_size=4, progress=False, lr=3e-3, val_every=25)
    codec = VideoCodec.load(result.path)
    from cvload.codec import clip_loader

    _, loader = clip_loader(training_videos, config, batch_size=8, sampling="random",
                            shuffle=False, clips_per_epoch=64)
    codes = torch.cat([codec.encode(b) for b in loader]).numpy()
    used = np.mean([len(np.unique(codes[..., g])) for g in range(2)])
    assert used > 0.75 * 64, used  # most of the codebook is in use
    assert perplexity(codes, 64) > 20
    assert int(codec.quantizer.restarts) > 0  # dead codes were moved back onto the data


def test_baselines_match_the_byte_budget():
    from cvload.codec._eval import h264_at_bytes, jpeg_at_bytes
    from cvload.synthetic import translating_frames

    clip = translating_frames(8, 64, 64, motion=(1, 0), seed=3)
    for budget in (2000, 4000, 8000, 16000):
        jpeg = jpeg_at_bytes(clip, budget)
        h264 = h264_at_bytes(clip, budget)
        assert h264["bytes"] <= budget and h264["recon"].shape == clip.shape
        assert jpeg["recon"].shape == clip.shape
        if budget >= 8000:  # JPEG's floor (quality 1) is about 5.7 kB for these 8 frames
            assert jpeg["bytes"] <= budget
    # a bigger budget buys better quality (each within its own range)
    assert jpeg_at_bytes(clip, 16000)["quality"] > jpeg_at_bytes(clip, 8000)["quality"]
    assert h264_at_bytes(clip, 4000)["crf"] < h264_at_bytes(clip, 2000)["crf"]
    # an impossible budget is reported, not hidden
    assert jpeg_at_bytes(clip, 10)["bytes"] > 10


def test_thumbnail_and_block_mean_baselines():
    from cvload.codec._eval import block_mean_at_bytes, thumbnail_at_bytes
    from cvload.codec._metrics import psnr
    from cvload.synthetic import translating_frames

    clip = translating_frames(8, 64, 96, motion=(1, 0), seed=3)
    raw = clip.size
    whole = thumbnail_at_bytes(clip, raw)  # enough bytes: nothing is lost
    assert whole["size"] == (64, 96) and np.array_equal(whole["recon"], clip)
    assert np.array_equal(block_mean_at_bytes(clip, raw)["recon"], clip)
    flat = np.full_like(clip, 77)  # constant blocks are coded exactly at any blocking
    assert np.array_equal(block_mean_at_bytes(flat, 100)["recon"], flat)
    previous = (0.0, 0.0)
    for budget in (raw // 256, raw // 64, raw // 16):
        thumb, blocks = thumbnail_at_bytes(clip, budget), block_mean_at_bytes(clip, budget)
        assert thumb["bytes"] <= budget and blocks["bytes"] <= budget
        assert thumb["recon"].shape == blocks["recon"].shape == clip.shape
        quality = (psnr(thumb["recon"], clip), psnr(blocks["recon"], clip))
        assert quality[0] > previous[0] and quality[1] > previous[1]  # more bytes, better
        previous = quality
    bt, b, _ = block_mean_at_bytes(clip, raw // 16)["block"]
    assert bt * b * b <= 16  # the finest blocking that fits: 16 pixels per stored byte


def test_cli_train_and_eval(tmp_path, training_videos, capsys):
    import json

    from cvload.cli import main

    out = tmp_path / "cli.pt"
    assert main(["train-codec", *training_videos, "--out", str(out), "--clip-frames", "8",
                 "--size", "32", "--channels", "8", "--steps", "6", "--batch-size", "2",
                 "--val-every", "3", "--checkpoint-every", "3"]) == 0
    printed = capsys.readouterr().out
    assert "saved" in printed and out.exists()
    assert "steps/s" in printed and "(initial transform) ->" in printed and "held out" in printed
    assert main(["eval-codec", str(out), training_videos[0], "--clips", "2", "--json",
                 str(tmp_path / "r.json")]) == 0
    text = capsys.readouterr().out
    assert "neural codes" in text and "JPEG per frame" in text and "H.264" in text
    assert "thumbnail" in text and "block means" in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["clips"] == 2 and report["nominal_compression"] == pytest.approx(192, rel=1e-3)
    for key in ("neural", "jpeg", "h264", "thumbnail", "block_mean"):
        assert {"psnr", "ssim", "mae", "bytes"} <= set(report[key])
    for key in ("thumbnail", "block_mean"):
        assert report[key]["bytes"] <= report["bytes_per_clip"]
    assert main(["eval-codec", str(tmp_path / "missing.pt"), training_videos[0]]) == 1


@pytest.mark.slow
@pytest.mark.needs_shared
def test_loss_decreases_on_real_video(tmp_path):
    """A tiny codec learns on real footage (../shared/videos), not only on synthetic clips."""
    from cvload.codec import train
    from tests import shared_videos as sv

    videos = [str(sv.get("libvpl/cars_320x240.h264").path),
              str(sv.get("mv_extractor/vid_h264.264").path)]
    # 64x64 clips: an 8x8 grid of codes gives the decoder's 3x3x3 refinement neighbours.
    # The first steps of the residual branches cost a little; by 120 steps they gain.
    result = train(videos, out=tmp_path / "real.pt", config=tiny(channels=32, res_blocks=1,
                   size=(64, 64)), steps=120, batch_size=8, val_every=60,
                   checkpoint_every=120, progress=False)
    assert result.val_psnr[-1][1] > result.val_psnr[0][1] + 0.3, result.val_psnr


def test_initialise_uses_every_channel_even_with_two_levels():
    """A 2-level FSQ channel (grid {-1, 0}) still gets a component: its range is finite."""
    codec = VideoCodec(tiny(groups=2, fsq_levels=(2, 8, 4)))
    clips = torch.randint(0, 256, (16, 8, 32, 32, 3), dtype=torch.uint8)
    assert np.isfinite(codec.initialise(clips))
    weight = codec.encoder.analysis.weight.flatten(1)
    assert torch.isfinite(weight).all() and (weight.abs().sum(1) > 0).all()


def test_training_skips_videos_that_do_not_decode(tmp_path, training_videos):
    """An empty file and a text file among the training videos are left out and named
    (FramePool.skipped); the codec trains on the rest; with nothing decodable it says so."""
    from cvload.codec import FramePool, train

    empty, text = tmp_path / "empty.mp4", tmp_path / "notes.mp4"
    empty.write_bytes(b"")
    text.write_text("not a video")
    videos = [str(empty), *training_videos, str(text)]
    pool = FramePool(videos, tiny(), clips_per_epoch=4)
    assert [source for source, _ in pool.skipped] == [str(empty), str(text)]
    assert pool.sources == list(training_videos)
    result = train(videos, out=tmp_path / "c.pt", config=tiny(), steps=3, batch_size=2,
                   val_every=3, checkpoint_every=3, progress=False)
    assert result.steps == 3 and np.isfinite(result.val_psnr[-1][1])
    with pytest.raises(InvalidArgumentError, match="none of the 2 videos"):
        train([str(empty), str(text)], out=tmp_path / "d.pt", config=tiny(), steps=1,
              progress=False)
