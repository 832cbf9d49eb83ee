"""VideoDataset layouts, DataLoader workers, seeded sampling and the error policy."""

import numpy as np
import pytest
import torch

import cvload
from cvload.errors import CorruptVideoError, EmptyVideoError
from tests import shared_videos as sv


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from cvload.synthetic import write_video

    root = tmp_path_factory.mktemp("ds")
    return [write_video(root / f"v{i}.mp4", bframes=2 * (i % 2), num_frames=30, gop=10,
                        motion=[(2, 0), (0, 2), (-2, 1)][i % 3], seed=i, width=96, height=64)
            for i in range(4)]


def _dataset(videos, **kw):
    return cvload.VideoDataset([v.path for v in videos], labels=[i for i in range(len(videos))],
                               **kw)


def test_rgb_layout(videos):
    item = _dataset(videos, layout="rgb", num_frames=5, step=2)[1]
    assert item["rgb"].shape == (5, 3, 64, 96) and item["rgb"].dtype == torch.uint8
    idx = item["frame_indices"].numpy()
    assert np.all(np.diff(idx) == 2) and item["label"] == 1 and item["index"] == 1
    full = cvload.read_clip(videos[1].path, start=0, num_frames=30, streams=("rgb",)).rgb
    np.testing.assert_array_equal(item["rgb"].permute(0, 2, 3, 1).numpy(), full[idx])


def test_mvcgc_layout(videos):
    item = _dataset(videos, layout="mvcgc", num_frames=6)[0]
    assert item["rgb"].shape == (6, 3, 64, 96) and item["mv"].shape == (6, 4, 16, 24)
    assert np.all(np.diff(item["frame_indices"].numpy()) == 1)  # consecutive frames
    p = [t for t, i in enumerate(item["frame_indices"].tolist()) if i % 10]
    assert torch.median(item["mv"][p, 0]).item() == -2  # content moves +2 px in x


def test_imrnet_layout_reads_gop_length_from_file(videos):
    item = _dataset(videos, layout="imrnet", num_frames=3, gop_frames=4, sampling="center")[0]
    assert item["iframe"].shape == (3, 3, 64, 96)
    assert item["mv"].shape == (3, 3, 4, 16, 24) and item["residual"].shape == (3, 3, 3, 64, 96)
    frames = item["frame_indices"].numpy()
    np.testing.assert_array_equal(frames[:, 0], [0, 10, 20])  # the I-frames, GOP 10 from file
    np.testing.assert_array_equal(frames[0], [0, 1, 5, 9])  # 3 later frames, evenly spread
    assert item["residual"].dtype == torch.int16 and item["residual"].abs().sum() > 0


def test_coviar_layout(videos):
    item = _dataset(videos, layout="coviar", num_segments=3, sampling="center")[0]
    assert item["iframe"].shape == (3, 3, 64, 96) and item["mv"].shape == (3, 2, 16, 24)
    assert item["residual"].shape == (3, 3, 64, 96)
    frames = item["frame_indices"].numpy()
    np.testing.assert_array_equal(frames, [4, 14, 24])
    # accumulated from the I-frame 4 frames back, content moving (+2, 0) per frame
    assert torch.median(item["mv"][0, 0, 2:-2, 2:-2]).item() == -8


def test_dataloader_two_workers_equals_main_process(videos):
    ds = _dataset(videos, layout="mvcgc", num_frames=4, seed=3)
    def run(workers):
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers,
                                             collate_fn=ds.collate)
        return [b for b in loader]
    a, b = run(0), run(2)
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        for key in x:
            assert torch.equal(x[key], y[key]), key


def test_random_sampling_is_seeded_per_epoch(videos):
    ds = _dataset(videos, layout="rgb", num_frames=4)
    first = [ds[i]["frame_indices"][0].item() for i in range(4)]
    assert first == [ds[i]["frame_indices"][0].item() for i in range(4)]  # same epoch: same
    epochs = []
    for e in range(5):
        ds.set_epoch(e)
        epochs.append(tuple(ds[i]["frame_indices"][0].item() for i in range(4)))
    assert len(set(epochs)) > 1  # positions move between epochs


@pytest.mark.needs_shared
def test_handler_skip_counts_bad_videos(videos):
    bad = [sv.get("decord/corrupted.mp4").path, sv.get("libwebm/fixed_lacing_bad_lace_size.mkv").path]
    paths = [videos[0].path, bad[0], bad[1], videos[1].path]
    ds = cvload.VideoDataset(paths, layout="rgb", num_frames=4, sampling="center", size=(32, 48),
                             handler="skip")
    # the corrupted file decodes until frame 28: a centred clip of 4 frames reaches 23..26
    ds_far = cvload.VideoDataset([bad[0]], layout="rgb", num_frames=4, step=10, handler="skip")
    assert ds_far[0] is None and ds_far.skipped.counts == {"CorruptVideoError": 1}
    batch = ds.collate([ds[i] for i in range(4)])
    assert batch["rgb"].shape[0] == 3 and ds.skipped.counts == {"EmptyVideoError": 1}
    with pytest.warns(RuntimeWarning, match="fixed_lacing"):
        assert cvload.VideoDataset([bad[1]], handler="warn")[0] is None
    with pytest.raises(EmptyVideoError):
        cvload.VideoDataset([bad[1]])[0]
    with pytest.raises(CorruptVideoError):
        cvload.VideoDataset([bad[0]], num_frames=4, step=10)[0]


def test_invalid_options(videos):
    with pytest.raises(cvload.errors.InvalidArgumentError, match="'rgb', 'mvcgc'"):
        _dataset(videos, layout="flow")
    with pytest.raises(cvload.errors.InvalidArgumentError, match="labels"):
        cvload.VideoDataset([videos[0].path], labels=[0, 1])


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_decoding_leaves_no_native_threads_behind(videos):
    """Threads alive when DataLoader forks its workers can deadlock them (seen here with
    PyAV's default swscale threading): decoding in the main process must not leave any."""
    import os

    def threads():
        return len(os.listdir("/proc/self/task"))

    cvload.read_clip(videos[1].path, start=0, num_frames=2)  # warm-up: compile, caches
    before = threads()
    for layout in ("rgb", "mvcgc", "imrnet", "coviar"):
        _dataset(videos, layout=layout, num_frames=4)[1]
    list(cvload.iter_motion_vectors(videos[1].path))
    cvload.probe(videos[1].path, decode=True)
    assert threads() == before
