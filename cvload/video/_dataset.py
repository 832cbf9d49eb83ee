"""``VideoDataset``: a map-style torch dataset decoding compressed-domain layouts on the fly."""

from __future__ import annotations

import os
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from cvload.errors import CvloadError, InvalidArgumentError, SkipCounter
from cvload.video._clip import CompressedClip
from cvload.video._decode import read_frames
from cvload.video._options import MvSource, ReadOptions
from cvload.video._probe import VideoInfo, probe

__all__ = ["ClipDecoder", "VideoDataset", "LAYOUTS", "imrnet_frames"]

Layout = Literal["rgb", "mvcgc", "imrnet", "coviar"]
LAYOUTS: tuple[str, ...] = ("rgb", "mvcgc", "imrnet", "coviar")
Sampling = Literal["random", "center"]


def _chw(array: np.ndarray) -> torch.Tensor:
    """``(..., H, W, C)`` numpy -> ``(..., C, H, W)`` contiguous tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, -1, -3)))


def imrnet_frames(info: VideoInfo, gop: int, gop_frames: int) -> np.ndarray:
    """The frames IMRNet reads from GOP ``gop``: its I-frame, then ``gop_frames - 1``
    later frames spread evenly over the GOP's length as read from the file (a one-frame
    GOP repeats its I-frame, and gets zero motion and residual)."""
    key, length = info.keyframes[gop], info.gop_lengths[gop]
    k = gop_frames - 1
    if length > 1:
        later = key + np.linspace(1, length - 1, k).round().astype(np.int64)
    else:
        later = np.full(k, key, np.int64)
    return np.concatenate([[key], later]).astype(np.int64)


class ClipDecoder:
    """Decode one clip of a video into a layout: the layout logic of :class:`VideoDataset`,
    usable on any source (a path, ``bytes`` or a file-like object such as a shard member).

    ``decoder(source, rng=..., info=...)`` returns the layout's dict of tensors (see
    :class:`VideoDataset` for the keys, shapes and dtypes). Picklable and stateless, so it
    travels into DataLoader workers; ``rng`` (a ``numpy.random.Generator``) chooses clip
    positions under ``sampling="random"``.
    """

    def __init__(
        self,
        layout: Layout = "rgb",
        *,
        num_frames: int = 8,
        step: int = 1,
        gop_frames: int = 4,
        num_segments: int = 3,
        sampling: Sampling = "random",
        size: tuple[int, int] | int | None = None,
        mv_grid: int = 4,
        mv_source: MvSource = "auto",
        stream: int | None = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise InvalidArgumentError(
                f"Invalid layout {layout!r}. Supported values are {', '.join(map(repr, LAYOUTS))}."
            )
        if sampling not in ("random", "center"):
            raise InvalidArgumentError(
                f"Invalid sampling {sampling!r}. Supported values are 'random' and 'center'."
            )
        for name, value, low in (("num_frames", num_frames, 1), ("step", step, 1),
                                 ("gop_frames", gop_frames, 2), ("num_segments", num_segments, 1)):
            if int(value) < low:
                raise InvalidArgumentError(f"Invalid {name}={value!r}: must be >= {low}.")
        self.layout = layout
        self.num_frames, self.step = int(num_frames), int(step)
        self.gop_frames, self.num_segments = int(gop_frames), int(num_segments)
        self.sampling = sampling
        # how every read of this decoder goes; each layout picks its streams
        self.options = ReadOptions(size=size, mv_grid=mv_grid, mv_source=mv_source,
                                   stream=stream)

    size = property(lambda self: self.options.size, doc="frame size of the layout's tensors")
    mv_grid = property(lambda self: self.options.mv_grid, doc="motion-field cell size")
    mv_source = property(lambda self: self.options.mv_source, doc="where motion comes from")
    stream = property(lambda self: self.options.stream, doc="the video stream read")

    def __repr__(self) -> str:
        return (f"ClipDecoder(layout={self.layout!r}, num_frames={self.num_frames}, "
                f"step={self.step}, sampling={self.sampling!r}, size={self.size!r})")

    def _clip_start(self, span: int, total: int, rng: np.random.Generator) -> int:
        """First frame of a clip covering ``span`` frames; clips longer than the video
        start at 0 and are padded by repeating the last frame (see _clip_indices)."""
        room = max(0, total - span)
        if self.sampling == "center":
            return room // 2
        return int(rng.integers(0, room + 1))

    def _clip_indices(self, total: int, rng: np.random.Generator) -> np.ndarray:
        span = (self.num_frames - 1) * self.step + 1
        start = self._clip_start(span, total, rng)
        return np.minimum(start + self.step * np.arange(self.num_frames), total - 1)

    def _read(self, source, info, frames: np.ndarray, streams, accumulate=False) -> CompressedClip:
        return read_frames(source, frames, info=info, options=self.options,
                           streams=streams, accumulate=accumulate)

    def __call__(self, source, *, rng: np.random.Generator | None = None,
                 info: VideoInfo | None = None) -> dict:
        if info is None:
            info = probe(source, stream=self.stream)
        if rng is None:
            rng = np.random.default_rng(0)
        if self.layout in ("rgb", "mvcgc"):
            frames = self._clip_indices(info.num_frames, rng)
            streams = ("rgb",) if self.layout == "rgb" else ("rgb", "mv")
            clip = self._read(source, info, frames, streams)
            item = {"rgb": _chw(clip.rgb), "frame_indices": torch.from_numpy(frames)}
            if clip.mv is not None:
                item["mv"] = _chw(clip.mv)
                item["mv_estimated"] = torch.tensor(clip.mv_estimated)
            return item
        if self.layout == "imrnet":
            return self._imrnet(source, info, rng)
        return self._coviar(source, info, rng)

    def _imrnet(self, source, info: VideoInfo, rng: np.random.Generator) -> dict:
        gops = len(info.keyframes)
        if self.sampling == "center" or gops <= self.num_frames:
            chosen = np.linspace(0, gops - 1, self.num_frames).round().astype(np.int64)
        else:
            start = int(rng.integers(0, gops - self.num_frames + 1))
            chosen = np.arange(start, start + self.num_frames)
        iframes, mvs, residuals, all_frames = [], [], [], []
        for g in chosen:
            length = info.gop_lengths[g]
            frames = imrnet_frames(info, int(g), self.gop_frames)
            clip = self._read(source, info, frames, ("mv", "residual", "iframe"))
            iframes.append(clip.iframe[0])
            mv, residual = clip.mv[1:], clip.residual[1:]
            if length <= 1:
                mv, residual = np.zeros_like(mv), np.zeros_like(residual)
            mvs.append(mv)
            residuals.append(residual)
            all_frames.append(frames)
        return {
            "iframe": _chw(np.stack(iframes)),
            "mv": _chw(np.stack(mvs)),
            "residual": _chw(np.stack(residuals)),
            "frame_indices": torch.from_numpy(np.stack(all_frames)),
        }

    def _coviar(self, source, info: VideoInfo, rng: np.random.Generator) -> dict:
        total = info.num_frames
        bounds = np.linspace(0, total, self.num_segments + 1)
        iframes, mvs, residuals, picked = [], [], [], []
        for s in range(self.num_segments):
            lo, hi = int(bounds[s]), max(int(bounds[s]) + 1, int(bounds[s + 1]))
            hi = min(hi, total)
            frame = (lo + hi - 1) // 2 if self.sampling == "center" else int(rng.integers(lo, hi))
            clip = self._read(source, info, np.array([frame]), ("mv", "residual", "iframe"),
                              accumulate=True)
            iframes.append(clip.iframe[0])
            mvs.append(clip.mv[0])
            residuals.append(clip.residual[0])
            picked.append(frame)
        return {
            "iframe": _chw(np.stack(iframes)),
            "mv": _chw(np.stack(mvs)),
            "residual": _chw(np.stack(residuals)),
            "frame_indices": torch.tensor(picked),
        }


class VideoDataset(torch.utils.data.Dataset):
    """Clips from video files in one of the compressed-domain layouts of the literature.

    Each item is a dict of tensors (channels first) plus ``label`` (when labels are
    given), ``index`` and ``frame_indices``:

    - ``layout="rgb"``: ``rgb`` ``(T, 3, H, W)`` uint8, T = ``num_frames`` frames
      ``step`` apart (the baseline).
    - ``layout="mvcgc"``: ``rgb`` ``(T, 3, H, W)`` uint8 and ``mv`` ``(T, 4, h, w)`` float32,
      the motion fields of the same T consecutive frames (MVCGC).
    - ``layout="imrnet"``: ``num_frames`` GOPs, each its I-frame and ``gop_frames - 1``
      later frames' motion and residual (sub-sampled evenly when the GOP is longer; GOP
      lengths come from the file): ``iframe`` ``(T, 3, H, W)`` uint8, ``mv``
      ``(T, K-1, 4, h, w)`` float32, ``residual`` ``(T, K-1, 3, H, W)`` int16 (IMRNet).
    - ``layout="coviar"``: ``num_segments`` segments, one frame each, with its GOP's
      I-frame, motion accumulated back to it and the residual against it: ``iframe``
      ``(N, 3, H, W)`` uint8, ``mv`` ``(N, 2, h, w)`` float32, ``residual`` ``(N, 3, H, W)``
      int16 (CoViAR).

    Sampling: ``"random"`` draws clip positions from a generator seeded by
    ``(seed, epoch, index)`` (call :meth:`set_epoch` each epoch), so results do not depend
    on which worker loads the item; ``"center"`` is deterministic (evaluation).

    Decoders are opened inside ``__getitem__`` only, so the dataset is safe to fork into
    DataLoader workers; probes are cached per process.

    ``handler``: under ``"raise"`` a bad video raises its :mod:`cvload.errors` exception;
    under ``"warn"``/``"skip"`` the item is ``None``, counted in :attr:`skipped`, and
    :meth:`collate` (pass it as ``collate_fn``) leaves it out of the batch.
    """

    def __init__(
        self,
        sources: Sequence[str | os.PathLike[str]],
        *,
        layout: Layout = "rgb",
        labels: Sequence[int] | None = None,
        num_frames: int = 8,
        step: int = 1,
        gop_frames: int = 4,
        num_segments: int = 3,
        sampling: Sampling = "random",
        size: tuple[int, int] | int | None = None,
        mv_grid: int = 4,
        mv_source: MvSource = "auto",
        stream: int | None = None,
        transform: Callable[[dict], dict] | None = None,
        handler: str = "raise",
        seed: int = 0,
    ) -> None:
        self.decoder = ClipDecoder(
            layout, num_frames=num_frames, step=step, gop_frames=gop_frames,
            num_segments=num_segments, sampling=sampling, size=size, mv_grid=mv_grid,
            mv_source=mv_source, stream=stream)
        if labels is not None and len(labels) != len(sources):
            raise InvalidArgumentError(
                f"labels has {len(labels)} entries for {len(sources)} sources; give one each."
            )
        self.sources = [os.fspath(s) for s in sources]
        self.labels = None if labels is None else [int(x) for x in labels]
        self.layout = layout
        self.stream = stream
        self.transform = transform
        self.skipped = SkipCounter(handler)
        self.seed = int(seed)
        self.epoch = 0
        self._infos: dict[int, VideoInfo] = {}

    def __len__(self) -> int:
        return len(self.sources)

    # the layout options live on the decoder (one place); read-only views of them here
    num_frames = property(lambda self: self.decoder.num_frames, doc="frames per clip")
    step = property(lambda self: self.decoder.step, doc="frames between clip frames")
    gop_frames = property(lambda self: self.decoder.gop_frames, doc="frames per GOP (imrnet)")
    num_segments = property(lambda self: self.decoder.num_segments, doc="segments (coviar)")
    sampling = property(lambda self: self.decoder.sampling, doc="random or center clips")
    options = property(lambda self: self.decoder.options, doc="the ReadOptions of every read")
    size = property(lambda self: self.decoder.size, doc="frame size of the tensors")
    mv_grid = property(lambda self: self.decoder.mv_grid, doc="motion-field cell size")
    mv_source = property(lambda self: self.decoder.mv_source, doc="where motion comes from")

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random clip positions ``__getitem__`` draws."""
        self.epoch = int(epoch)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_infos"] = {}  # each process probes for itself
        return state

    # -- sampling ---------------------------------------------------------------------

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def info(self, index: int) -> VideoInfo:
        if index not in self._infos:
            self._infos[index] = probe(self.sources[index], stream=self.stream)
        return self._infos[index]

    # -- items ------------------------------------------------------------------------

    def __getitem__(self, index: int) -> dict | None:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        try:
            item = self._load(index)
        except CvloadError as err:
            self.skipped.handle(err)
            return None
        if self.labels is not None:
            item["label"] = torch.tensor(self.labels[index])
        item["index"] = torch.tensor(index)
        return self.transform(item) if self.transform is not None else item

    def _load(self, index: int) -> dict:
        return self.decoder(self.sources[index], rng=self._rng(index), info=self.info(index))

    @staticmethod
    def collate(batch: list[dict | None]) -> dict | None:
        """``default_collate`` over the items that were not skipped (None when all were)."""
        kept = [b for b in batch if b is not None]
        if not kept:
            return None
        return torch.utils.data.default_collate(kept)
