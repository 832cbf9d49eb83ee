"""Shared fixtures and markers.

Markers: ``slow`` (long tests; they run by default, as in CI; skip them locally with
``make test PYTEST_ARGS='-m "not slow"'``), ``needs_cuda`` (skipped without a GPU),
``needs_shared`` (skipped, with the reason, when ../shared/videos is absent, as in a fresh
clone; CI has it).
"""

from __future__ import annotations

import random

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    import torch

    from tests import shared_videos as sv

    skip_cuda = pytest.mark.skip(reason="needs a CUDA device; none is available here")
    skip_shared = pytest.mark.skip(reason=sv.SKIP_REASON)
    has_cuda, has_shared = torch.cuda.is_available(), sv.available()
    for item in items:
        if "needs_cuda" in item.keywords and not has_cuda:
            item.add_marker(skip_cuda)
        if "needs_shared" in item.keywords and not has_shared:
            item.add_marker(skip_shared)


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Tests may seed freely: global RNG state is restored afterwards."""
    import torch

    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield
    random.setstate(py)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep CVLOAD_CACHE inside the test session's temporary directory."""
    monkeypatch.setenv("CVLOAD_CACHE", str(tmp_path_factory.getbasetemp() / "cvload-cache"))


@pytest.fixture(scope="session")
def video_factory(tmp_path_factory):
    """``make(**kwargs) -> SyntheticVideo``: real encoded videos with known motion.

    Keyword arguments are those of :func:`cvload.synthetic.write_video` (codec, width,
    height, num_frames, gop, bframes, motion, seed, ...) plus ``suffix`` (".mp4", ".264",
    ".mkv" ...). Identical requests reuse the same file within a session.
    """
    from cvload.synthetic import write_video

    root = tmp_path_factory.mktemp("synthetic")
    made: dict = {}

    def make(*, suffix: str = ".mp4", **kwargs):
        key = (suffix, tuple(sorted(kwargs.items())))
        if key not in made:
            name = f"v{len(made):03d}_{kwargs.get('codec', 'h264')}{suffix}"
            made[key] = write_video(root / name, **kwargs)
        return made[key]

    return make


def write_labelled_videos(root, count: int, *, num_frames: int, motion_y: int) -> list[str]:
    """``count`` small H.264 videos (every other one with B-frames) in ``root``, and a
    ``labels.csv`` giving video ``i`` the label ``i``: the input of ``cvload pack``."""
    from cvload.synthetic import write_video

    made = [write_video(root / f"v{i}.mp4", width=64, height=48, num_frames=num_frames, gop=8,
                        bframes=2 * (i % 2), motion=(i + 1, motion_y), seed=i).path
            for i in range(count)]
    (root / "labels.csv").write_text(
        "path,label\n" + "".join(f"v{i}.mp4,{i}\n" for i in range(count)))
    return made
