"""Issue 12: a codec trained briefly on some videos beats the equal-bytes thumbnail on
videos of other content and other motion, encoded by a real encoder."""

from __future__ import annotations

import numpy as np
import pytest

from cvload.codec import CodecConfig, VideoCodec, evaluate, train
from cvload.synthetic import encode_frames, write_video

SIZE, FRAMES = 96, 32


def rings(seed: int) -> np.ndarray:
    """Coloured concentric rings that expand and drift: radial structure and zoom motion,
    unlike the translating noise textures the codec is trained on."""
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    frames = []
    for t in range(FRAMES):
        cx, cy = SIZE / 2 + 10 * np.sin(t / 7), SIZE / 2 + 8 * np.cos(t / 9)
        r = np.hypot(x - cx, y - cy)
        frame = np.stack([np.sin(r / (4 + c) - 0.4 * t + phase[c]) for c in range(3)], -1)
        frames.append(((frame * 0.5 + 0.5) * 255).astype(np.uint8))
    return np.stack(frames)


def blobs(seed: int) -> np.ndarray:
    """Soft coloured discs on curved paths over a tilted gradient: smooth regions, sharp-ish
    edges, non-rigid motion."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    background = np.stack([x / SIZE, y / SIZE, 1 - x / SIZE], -1) * 160 + 40
    params = rng.uniform(0, 1, (6, 7))
    frames = []
    for t in range(FRAMES):
        frame = background.copy()
        for p in params:
            cx = SIZE * (0.2 + 0.6 * p[0]) + 20 * np.sin(t / (3 + 4 * p[1]))
            cy = SIZE * (0.2 + 0.6 * p[2]) + 20 * np.cos(t / (3 + 4 * p[3]))
            alpha = 1 / (1 + np.exp((np.hypot(x - cx, y - cy) - (6 + 10 * p[4])) / 1.5))
            frame = frame * (1 - alpha[..., None]) + alpha[..., None] * 255 * p[4:7]
        frames.append(frame.clip(0, 255).astype(np.uint8))
    return np.stack(frames)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("generalisation")
    training = [write_video(root / f"train{i}.mp4", width=SIZE, height=SIZE, num_frames=FRAMES,
                            motion=m, seed=i).path
                for i, m in enumerate([(1, 0), (0, 1), (-1, 1), (2, -1)])]
    unseen = []
    for name, make in (("rings", rings), ("blobs", blobs)):
        path = root / f"{name}.mp4"
        encode_frames(make(7), path, quality=16)
        unseen.append(str(path))
    return training, unseen


def test_short_training_beats_the_thumbnail_on_other_content(videos, tmp_path):
    training, unseen = videos
    config = CodecConfig(clip_frames=8, size=(64, 64), channels=16, res_blocks=1)
    result = train(training, out=tmp_path / "codec.pt", config=config, steps=60,
                   batch_size=8, val_every=30, checkpoint_every=60, progress=False)
    report = evaluate(VideoCodec.load(result.path), unseen, clips=8)
    assert report["nominal_compression"] >= 180
    neural, thumbnail = report["neural"], report["thumbnail"]
    assert thumbnail["bytes"] <= report["bytes_per_clip"]  # the baseline had no more bytes
    assert neural["psnr"] > thumbnail["psnr"] + 1.0, (neural, thumbnail)
    assert neural["ssim"] > thumbnail["ssim"], (neural, thumbnail)
