"""Registry of the real test videos in ``../shared/videos``, built from its manifest.json.

Every test that uses a real file gets it through :func:`get` (or :func:`entries`), which
skips the test with a clear reason when the folder is absent (a user's fresh clone has no
``../shared``; CI always has it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "videos"
MANIFEST = ROOT / "manifest.json"
SKIP_REASON = f"needs the shared test videos at {ROOT} (absent in a fresh clone; CI has them)"


@dataclass(frozen=True)
class SharedVideo:
    """One manifest entry: the file and the probe facts recorded for it."""

    name: str
    path: Path
    sha256: str
    bytes: int
    facts: dict = field(repr=False, hash=False, compare=False)

    @property
    def is_reference(self) -> bool:
        return "reference_motion_vectors_for" in self.facts

    def __getattr__(self, key):  # facts as attributes: .codec, .decoded_frames, ...
        facts = self.__dict__.get("facts", {})
        if key in facts:
            return facts[key]
        raise AttributeError(key)


def available() -> bool:
    return MANIFEST.is_file()


@lru_cache(maxsize=1)
def _load() -> dict[str, SharedVideo]:
    items = json.loads(MANIFEST.read_text())
    return {
        e["file"]: SharedVideo(e["file"], ROOT / e["file"], e["sha256"], e["bytes"], e)
        for e in items
    }


def entries(*, videos_only: bool = False) -> list[SharedVideo]:
    if not available():
        pytest.skip(SKIP_REASON)
    values = list(_load().values())
    return [v for v in values if not v.is_reference] if videos_only else values


def names() -> list[str]:
    """Manifest file names for parametrisation (empty when the folder is absent)."""
    return list(_load()) if available() else []


def get(name: str) -> SharedVideo:
    if not available():
        pytest.skip(SKIP_REASON)
    try:
        return _load()[name]
    except KeyError:
        raise KeyError(f"{name} is not in {MANIFEST}") from None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reference_mvs(video_name: str):
    """The mv-extractor reference arrays (``mvs``, ``counts``, ``frame_types``) for a video."""
    import numpy as np

    for entry in entries():
        if entry.facts.get("reference_motion_vectors_for") == video_name:
            with np.load(entry.path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
    raise KeyError(f"no reference motion vectors for {video_name}")
