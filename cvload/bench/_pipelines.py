"""The pipelines ``cvload bench`` times: the same clips, each delivered as batches by a
``cvload.DataLoader`` with the same batch size and workers.

- ``file:rgb`` (the baseline): RGB frames decoded from the video files (PyAV through
  ``cvload.read_clip``), resized to the benchmark's size;
- ``file:mv``: the motion vectors alone (no pixels converted), ``file:mvcgc``: RGB and
  motion, ``file:imrnet``: T/4 GOPs of an I-frame and 3 motion/residual frames (T frames
  in all), ``file:coviar``: 3 segments of accumulated motion and residual (main length only);
- ``rgb-shards``: decoded frames stored in shards; ``video-shards:LAYOUT``: video
  segments in shards decoded on the fly to each layout (coviar at the main length only);
  ``codes-shards``: a codec's codes (what reaches the device; embedding happens there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from cvload.bench._workload import Workload

__all__ = ["BASELINE", "FileClips", "Pipeline", "pipelines"]

BASELINE = "file:rgb"
FileKind = Literal["rgb", "mv", "mvcgc", "imrnet", "coviar"]


class FileClips(torch.utils.data.Dataset):
    """Clips ``(path, start)`` of ``length`` frames decoded from their files into one
    kind of output; picklable (workers open the files themselves)."""

    def __init__(self, clips, kind: FileKind, *, length: int, size: tuple[int, int]) -> None:
        from cvload.video import ClipDecoder

        self.clips = [(v.path, int(start)) for v, start in clips]
        self.kind, self.length, self.size = kind, int(length), tuple(size)
        # imrnet / coviar choose their own frames: T/4 GOPs of 4 frames, or 3 segments
        self.decoder = ClipDecoder(kind, num_frames=max(1, self.length // 4), gop_frames=4,
                                   num_segments=3, size=self.size, sampling="random") \
            if kind in ("imrnet", "coviar") else None

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        from cvload.video import probe, read_clip

        path, start = self.clips[index]
        info = probe(path)  # cached per process
        if self.decoder is not None:
            return self.decoder(path, rng=np.random.default_rng(index), info=info)
        streams = {"rgb": ("rgb",), "mv": ("mv",), "mvcgc": ("rgb", "mv")}[self.kind]
        clip = read_clip(path, start=start, num_frames=self.length, streams=streams,
                         size=self.size, info=info)
        item = {}
        for name in streams:
            array = getattr(clip, name)
            item[name] = torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, -1, 1)))
        return item


@dataclass
class Pipeline:
    """One way of getting the workload's clips as batches."""

    name: str
    loader: object  # a cvload.DataLoader
    clips: int
    bytes_per_clip: float | None  # stored bytes a clip takes; None where no stored form
    output: str = ""  # the shapes of one sample, filled by the first pass
    repeats: int = 1  # passes per timed call (fast pipelines repeat to outlast timer noise)

    def run(self) -> int:
        """``repeats`` passes over the clips; returns the clips delivered."""
        n = 0
        for _ in range(self.repeats):
            for batch in self.loader:
                if not self.output:
                    self.output = describe(batch)
                n += _batch_size(batch)
        return n

    def calibrate(self, min_seconds: float) -> None:
        """Warm up (workers, caches, kernels), then choose ``repeats`` so that a timed
        call lasts at least ``min_seconds``."""
        import math
        import time

        self.repeats = 1
        self.run()
        start = time.perf_counter()
        delivered = self.run()
        seconds = time.perf_counter() - start
        if delivered != self.clips:
            raise RuntimeError(f"{self.name}: a pass delivered {delivered} clips, not "
                               f"{self.clips}")
        self.repeats = max(1, math.ceil(min_seconds / max(seconds, 1e-6)))

    @property
    def clips_per_call(self) -> int:
        return self.clips * self.repeats


def _batch_size(batch: dict) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim():
            return int(value.shape[0])
    return 0


def describe(batch: dict) -> str:
    """``name (shape) dtype`` of each sample tensor of a batch (the batch axis left out)."""
    parts = []
    for name, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 3 and name != "frame_indices":
            parts.append(f"{name} {tuple(value.shape[1:])} {str(value.dtype)[6:]}")
    return ", ".join(parts)


def pipelines(work: Workload, *, batch_size: int, workers: int,
              main: bool) -> list[Pipeline]:
    """The pipelines for one workload; ``main``: the length every pipeline runs at
    (``file:coviar``, whose clips do not grow with the length, only there)."""
    import cvload
    from cvload.video import ClipDecoder

    def loader(dataset):
        return cvload.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                 persistent_workers=workers > 0)

    n = len(work.clips)
    kinds: list[FileKind] = ["rgb", "mv", "mvcgc", "imrnet"] + (["coviar"] if main else [])
    out = [Pipeline(f"file:{k}", loader(FileClips(work.clips, k, length=work.length,
                                                  size=work.size)), n,
                    work.file_bytes_per_clip if k in ("rgb", "mv", "mvcgc") else None)
           for k in kinds]
    rgb, video, codes = (work.shards[f] for f in ("rgb", "video", "codes"))
    out.append(Pipeline("rgb-shards", loader(cvload.ShardDataset(rgb.directory)), rgb.clips,
                        rgb.bytes_per_clip))
    for layout in ("rgb", "mvcgc", "imrnet") + (("coviar",) if main else ()):
        frames = work.length if layout in ("rgb", "mvcgc") else max(1, work.length // 4)
        decode = ClipDecoder(layout, num_frames=frames, gop_frames=4, num_segments=3,
                             sampling="center", size=work.size)
        out.append(Pipeline(f"video-shards:{layout}",
                            loader(cvload.ShardDataset(video.directory, decode=decode)),
                            video.clips, video.bytes_per_clip))
    out.append(Pipeline("codes-shards", loader(cvload.ShardDataset(codes.directory)),
                        codes.clips, codes.bytes_per_clip))
    return out
