"""The device stage's tensor moves: batches to the device (pinned, non-blocking on
CUDA), recording side-stream use."""

from __future__ import annotations


import time

import torch


__all__ = ["DeviceStage"]


def _has_device_tensor(batch) -> bool:
    """Whether anything in the batch lives off the CPU (cheap: no rebuilding)."""
    if isinstance(batch, torch.Tensor):
        return batch.device.type != "cpu"
    if isinstance(batch, dict):
        return any(_has_device_tensor(v) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return any(_has_device_tensor(v) for v in batch if not isinstance(v, (str, int)))
    return False

def _to_device(batch, device: torch.device, non_blocking: bool):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device, non_blocking) for v in batch)
    return batch

def _record_stream(batch, stream) -> None:
    if isinstance(batch, torch.Tensor):
        if batch.is_cuda:
            batch.record_stream(stream)
    elif isinstance(batch, dict):
        for v in batch.values():
            _record_stream(v, stream)
    elif isinstance(batch, (list, tuple)):
        for v in batch:
            _record_stream(v, stream)


# -- the loader ------------------------------------------------------------------------------


class DeviceStage:
    """The device stage of one pass: batches moved to ``device`` (on CUDA from pinned
    memory, ``non_blocking``, on a side stream so that the next batch's copies overlap the
    use of this one), then ``transforms`` applied there, batched, in the main process. GPU
    time of the transforms is read from CUDA events once it has happened; everything is
    added to ``stats.seconds`` (``transfer``, ``transforms``)."""

    def __init__(self, device: torch.device | None, *, non_blocking: bool, transforms,
                 stats) -> None:
        self.device, self.non_blocking = device, non_blocking
        self.transforms, self.stats = tuple(transforms), stats
        self.cuda = device is not None and device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.timings: list = []

    def begin_epoch(self, epoch: int) -> None:
        """Tell every transform with a ``set_epoch(epoch)`` method (random augmentations
        such as :class:`cvload.LatentAugment`) which epoch this pass is."""
        for transform in self.transforms:
            set_epoch = getattr(transform, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)

    @property
    def bare(self) -> bool:
        """Nothing to do: batches pass through as collate made them."""
        return self.device is None and not self.transforms

    @property
    def overlaps(self) -> bool:
        """Whether the next batch should be started before this one is handed out."""
        return self.cuda

    def transfer(self, batch):
        """Start moving ``batch``: ``(batch, event)``; on CUDA the copies run on the side
        stream and ``event`` marks their end (None elsewhere)."""
        if self.device is None:
            return batch, None
        started = time.perf_counter()
        event = None
        if self.cuda:
            with torch.cuda.stream(self.stream):
                batch = _to_device(batch, self.device, self.non_blocking)
                event = torch.cuda.Event()
                event.record(self.stream)
        elif self.device.type != "cpu" or _has_device_tensor(batch):
            batch = _to_device(batch, self.device, False)
        self.stats.seconds["transfer"] += time.perf_counter() - started
        return batch, event

    def apply(self, batch, event):
        """The batch ready for use: its copies waited for (only its own), then the
        transforms."""
        stream = None
        if self.cuda:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(event)  # this batch's copies only, not the next one's
            _record_stream(batch, stream)  # memory made on the side stream, used here
            self._collect_timings()
        if self.transforms:
            started = time.perf_counter()
            if self.cuda:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True)
                begin.record(stream)
            for transform in self.transforms:
                batch = transform(batch)
            if self.cuda:
                end.record(stream)
                self.timings.append((begin, end))  # GPU time, read once it has happened
            else:
                self.stats.seconds["transforms"] += time.perf_counter() - started
        return batch

    def finish(self) -> None:
        """End of the pass: read the GPU times still outstanding."""
        if self.cuda:
            self._collect_timings(wait=True)

    def _collect_timings(self, wait: bool = False) -> None:
        while self.timings and (wait or self.timings[0][1].query()):
            begin, end = self.timings.pop(0)
            end.synchronize()
            self.stats.seconds["transforms"] += begin.elapsed_time(end) / 1000
