"""Clip starts read / tried on the corpus, for a cvload tree (issue 11's before/after).

    python -m benchmarks.corpus_sweep refs OUT_DIR        # write the odd files + references
    python benchmarks/corpus_sweep.py sweep TREE OUT_DIR  # sweep with the cvload in TREE

References are plain single-threaded PyAV decodes (``tests/corpus.py``); the sweep reads
every 8th start as an 8-frame RGB clip (every start, 2 frames, under 16 frames) and
compares SHA-1 digests, then one 4-frame motion clip under ``mv_source="bitstream"``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path


def refs(out: Path) -> None:
    from tests import corpus
    from tests.oddvideos import GENERATORS

    import cvload

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, (generate, facts) in GENERATORS.items():
        path = out / name
        if not path.exists():
            generate(path)
        files[str(path)] = facts.get("order", "output")
    for video in corpus.real_videos():
        files.setdefault(str(video.path), video.order)
    table = {}
    for path, order in files.items():
        info = cvload.probe(path)
        ref = corpus.reference(Path(path), info.stream_index, order)
        table[path] = {"digests": list(ref.digests), "kinds": ref.kinds, "codec": info.codec,
                       "container": info.container}
    (out / "references.json").write_text(json.dumps(table))


def sweep(tree: str, out: Path) -> None:
    sys.path.insert(0, tree)
    import numpy as np

    import cvload

    warnings.simplefilter("ignore")
    table = json.loads((out / "references.json").read_text())
    result = {}
    for path, ref in table.items():
        row: dict = {}
        try:
            info = cvload.probe(path)
        except Exception as err:  # noqa: BLE001 - the sweep records whatever happens
            result[path] = {"probe": type(err).__name__}
            continue
        n = len(ref["digests"])
        length = 8 if n >= 16 else 2
        starts = list(range(0, max(1, n - length + 1), length if n >= 16 else 1))
        read = equal = 0
        errors: dict = {}
        for start in starts:
            try:
                clip = cvload.read_clip(path, start=start, num_frames=length, streams=("rgb",),
                                        info=info)
            except Exception as err:  # noqa: BLE001
                errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                continue
            read += 1
            got = [hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest() for x in clip.rgb]
            equal += got == ref["digests"][start:start + length]
        try:
            clip = cvload.read_clip(path, start=0, num_frames=min(4, n), streams=("mv",),
                                    info=info, mv_source="bitstream")
            motion = "nonzero" if np.abs(clip.mv).sum() > 0 else "ZERO"
        except Exception as err:  # noqa: BLE001
            motion = type(err).__name__
        row.update(probe=info.num_frames, tried=len(starts), read=read, equal=equal,
                   errors=errors, mv=motion)
        result[path] = row
    (out / f"sweep-{Path(tree).name}.json").write_text(json.dumps(result, indent=0))


if __name__ == "__main__":
    if sys.argv[1] == "refs":
        refs(Path(sys.argv[2]))
    else:
        sweep(sys.argv[2], Path(sys.argv[3]))
