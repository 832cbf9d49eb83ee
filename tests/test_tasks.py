"""Loader-side labels and samplers of the reference tasks (cvload.tasks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cvload
from cvload.errors import InvalidArgumentError
from cvload.tasks import CTP_KINDS, PastFutureChunks, ctp_transform, pmsp_classes, pmsp_labels


def _reference_sums(field, t_edges, y_edges, x_edges):
    """Prewitt magnitude summed per cell, written with numpy (edges replicated)."""
    f = np.pad(field.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (f[..., :-2, 2:] + f[..., 1:-1, 2:] + f[..., 2:, 2:]
          - f[..., :-2, :-2] - f[..., 1:-1, :-2] - f[..., 2:, :-2])
    gy = (f[..., 2:, :-2] + f[..., 2:, 1:-1] + f[..., 2:, 2:]
          - f[..., :-2, :-2] - f[..., :-2, 1:-1] - f[..., :-2, 2:])
    magnitude = np.sqrt((gx ** 2 + gy ** 2).sum(1))  # (T, h, w)
    out = np.zeros((len(t_edges) - 1, len(y_edges) - 1, len(x_edges) - 1))
    for a in range(out.shape[0]):
        for b in range(out.shape[1]):
            for c in range(out.shape[2]):
                out[a, b, c] = magnitude[t_edges[a]:t_edges[a + 1], y_edges[b]:y_edges[b + 1],
                                         x_edges[c]:x_edges[c + 1]].sum()
    return out


def test_cell_gradient_sums_match_a_numpy_reference():
    import cvload_ext

    rng = np.random.default_rng(0)
    field = rng.normal(size=(7, 4, 10, 13)).astype(np.float32)
    edges = (np.array([0, 2, 5, 7]), np.array([0, 3, 10]), np.array([0, 4, 9, 13]))
    out = np.empty((3, 2, 3))
    cvload_ext.cell_gradient_sums(field, *edges, out)
    np.testing.assert_allclose(out, _reference_sums(field, *edges), rtol=1e-5)


def test_pmsp_labels_find_motion_placed_in_a_known_cell():
    field = np.zeros((6, 2, 12, 12), np.float32)
    field[4:6, :, 9:11, 5:7] = 5.0  # frames 4-5, rows 9-10, columns 5-6 (with its edges)
    labels = pmsp_labels(field, spatial=(3,), temporal=(1, 3))
    # 3x3 grid: row 2 (8..11), column 1 (4..7); 3 spans of 2 frames: the last (frames 4-5)
    assert labels.tolist() == [2 * 3 + 1, (2 * 3 + 2) * 3 + 1]
    assert pmsp_classes((3,), (1, 3)) == [9, 27]
    moved = np.zeros_like(field)
    moved[0:2, :, 1:3, 9:11] = 5.0  # frames 0-1, row 0, column 2
    assert pmsp_labels(torch.from_numpy(moved), spatial=(3,), temporal=(1, 3)).tolist() == [2, 2]
    # the imrnet layout (T, K, C, h, w) reads as T*K frames in order
    assert pmsp_labels(field.reshape(3, 2, 2, 12, 12), spatial=(3,), temporal=(1, 3)).tolist() \
        == labels.tolist()
    assert pmsp_labels(np.zeros_like(field)).tolist() == [0] * 9  # still: the first cell
    assert len(pmsp_labels(field)) == len(pmsp_classes()) == 9
    with pytest.raises(InvalidArgumentError, match="motion"):
        pmsp_labels(np.zeros((4, 4)))


def _imrnet_sample(seed, gops=4):
    g = torch.Generator().manual_seed(seed)
    return {"iframe": torch.randint(0, 255, (gops, 3, 8, 8), generator=g, dtype=torch.uint8),
            "mv": torch.randn(gops, 2, 4, 2, 2, generator=g),
            "residual": torch.randint(-9, 9, (gops, 2, 3, 8, 8), generator=g).short()}


def test_ctp_transforms_do_what_they_say():
    sample, other = _imrnet_sample(0), _imrnet_sample(1)
    rng = np.random.default_rng(3)
    aligned = ctp_transform(sample, "aligned")
    assert int(aligned["ctp_label"]) == CTP_KINDS.index("aligned") == 0
    assert all(torch.equal(aligned[k], sample[k]) for k in ("iframe", "mv", "residual"))
    rand = ctp_transform(sample, "random", other=other)
    assert torch.equal(rand["mv"], other["mv"]) and torch.equal(rand["residual"], other["residual"])
    assert torch.equal(rand["iframe"], sample["iframe"]) and int(rand["ctp_label"]) == 1
    for _ in range(10):
        shuffled = ctp_transform(sample, "shuffle", rng=rng)
        # every GOP's motion and residual moved together, none left at its own I-frame
        where = [next(j for j in range(4) if torch.equal(shuffled["mv"][i], sample["mv"][j]))
                 for i in range(4)]
        assert sorted(where) == [0, 1, 2, 3] and all(w != i for i, w in enumerate(where))
        assert all(torch.equal(shuffled["residual"][i], sample["residual"][w])
                   for i, w in enumerate(where))
        shifted = ctp_transform(sample, "shift", rng=rng)
        k = next(k for k in range(1, 4) if torch.equal(shifted["mv"], sample["mv"].roll(k, 0)))
        assert torch.equal(shifted["residual"], sample["residual"].roll(k, 0))
        assert int(shuffled["ctp_label"]) == 2 and int(shifted["ctp_label"]) == 3
    assert torch.equal(shifted["iframe"], sample["iframe"])
    with pytest.raises(InvalidArgumentError, match="needs other="):
        ctp_transform(sample, "random")
    with pytest.raises(InvalidArgumentError, match="at least 2 GOPs"):
        ctp_transform(_imrnet_sample(0, gops=1), "shift")
    with pytest.raises(InvalidArgumentError, match="Invalid kind"):
        ctp_transform(sample, "reverse")


@pytest.fixture(scope="module")
def long_codes(tmp_path_factory):
    from cvload.codec import CodecConfig, VideoCodec
    from cvload.synthetic import write_video

    root = tmp_path_factory.mktemp("long")
    videos = [write_video(root / f"long{i}.mp4", num_frames=48, seed=i, width=64, height=48,
                          gop=12).path for i in range(2)]
    codec = root / "codec.pt"
    VideoCodec(CodecConfig(clip_frames=8, size=(32, 32), channels=8, res_blocks=0,
                           temporal_stride=2, groups=3, fsq_levels=(8, 6, 5))).save(codec)
    cvload.shards.pack(videos, out=root / "codes", format="codes", codec=codec, clip_frames=8,
                       shard_samples=5, progress=False)
    return cvload.ShardDataset(root / "codes")


def test_past_future_chunks(long_codes):
    chunks = PastFutureChunks(long_codes, context=3, seed=1)
    assert [len(v) for v in chunks.videos.values()] == [6, 6]
    assert len(chunks) == 2 * (6 - 3)
    labels, offsets = [], []
    for epoch in range(4):
        chunks.set_epoch(epoch)
        for i in range(len(chunks)):
            item = chunks[i]
            video, p = chunks.items[i]
            order = chunks.videos[video]
            assert item["chunks"].shape == (3, *long_codes[0]["codes"].shape)
            assert all(torch.equal(item["chunks"][j], long_codes[order[p - 3 + j]]["codes"])
                       for j in range(3))
            q = p + int(item["query_offset"])
            assert torch.equal(item["query"], long_codes[order[q]]["codes"])
            assert bool(item["label"]) == (p - 3 <= q < p) and (bool(item["label"]) or q >= p)
            labels.append(int(item["label"]))
            offsets.append(int(item["query_offset"]))
    assert 0 < sum(labels) < len(labels)
    chunks.set_epoch(0)
    again = PastFutureChunks(long_codes, context=3, seed=1)
    assert all(int(again[i]["query_offset"]) == int(chunks[i]["query_offset"])
               for i in range(len(chunks)))
    with pytest.raises(InvalidArgumentError, match="no video has the 7 chunks"):
        PastFutureChunks(long_codes, context=6)
