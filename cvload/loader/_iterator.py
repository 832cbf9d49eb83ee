"""The loader's iterator: unpacks worker results, keeps order and counts, and runs
the device stage one batch ahead on a side CUDA stream."""

from __future__ import annotations

import time

import torch
import torch.utils.data as tud

from cvload.errors import CvloadError, SkipCounter
from cvload.loader._device import _has_device_tensor, _record_stream, _to_device

__all__: list[str] = []


class _Iterator:
    """Wraps torch's iterator: unpacks shard batches, records what was yielded, counts,
    and runs the device stage (one batch ahead on a side CUDA stream)."""

    def __init__(self, loader: "tud.DataLoader", inner) -> None:
        self.loader, self.inner = loader, inner
        device = loader._device
        self.cuda = device is not None and device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.ahead: tuple | None = None
        self.bare = device is None and not loader._gpu_transforms
        self.timings: list = []
        self.done = False

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return len(self.loader)

    def _fetch(self):
        """The next (seq, batch) from torch's iterator, counted; None at the end."""
        loader, stats = self.loader, self.loader.stats
        seconds = stats.seconds
        while True:
            started = time.perf_counter()
            try:
                item = next(self.inner)
            except StopIteration:
                return None
            except CvloadError as err:
                if not loader._plan.skips_failed_batches or loader._handler == "raise":
                    raise
                stats.seconds["wait"] += time.perf_counter() - started
                SkipCounter(loader._handler).handle(err)
                stats.skipped[type(err).__name__] += 1
                stats.batches_skipped += 1
                loader._plan.skipped_batch()
                continue
            seconds["wait"] += time.perf_counter() - started
            received = loader._plan.receive(item, stats, loader._handler, loader._yielded)
            if received is None:  # every sample of the batch failed
                continue
            seq, batch = received
            return seq, batch

    def _transfer(self, batch):
        """Start moving ``batch`` to the device: on CUDA, on the side stream, returning
        the event the consumer's stream waits for (the copies run while the previous
        batch is being used)."""
        loader = self.loader
        if loader._device is None:
            return batch, None
        started = time.perf_counter()
        event = None
        if self.cuda:
            with torch.cuda.stream(self.stream):
                batch = _to_device(batch, loader._device, loader._non_blocking)
                event = torch.cuda.Event()
                event.record(self.stream)
        elif loader._device.type != "cpu" or _has_device_tensor(batch):
            batch = _to_device(batch, loader._device, False)
        loader.stats.seconds["transfer"] += time.perf_counter() - started
        return batch, event

    def __next__(self):
        loader = self.loader
        if self.done:
            raise StopIteration
        if self.bare:  # no device stage: the shortest way through
            fetched = self._fetch()
            if fetched is None:
                self._finish()
                raise StopIteration
            loader._yielded.add(fetched[0])
            loader.stats.batches += 1
            return fetched[1]
        current = self.ahead if self.ahead is not None else self._pull()
        if current is None:
            self._finish()
            raise StopIteration
        # start the next batch's copy before handing this one out
        self.ahead = self._pull() if self.cuda else None
        seq, batch, event = current
        if self.cuda:
            stream = torch.cuda.current_stream(loader._device)
            stream.wait_event(event)  # this batch's copies only, not the next one's
            _record_stream(batch, stream)  # memory made on the side stream, used here
            self._collect_timings()
        if loader._gpu_transforms:
            started = time.perf_counter()
            if self.cuda:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True)
                begin.record(stream)
            for transform in loader._gpu_transforms:
                batch = transform(batch)
            if self.cuda:
                end.record(stream)
                self.timings.append((begin, end))  # GPU time, read once it has happened
            else:
                loader.stats.seconds["transforms"] += time.perf_counter() - started
        loader._yielded.add(seq)
        loader.stats.batches += 1
        return batch

    def _collect_timings(self, wait: bool = False) -> None:
        while self.timings and (wait or self.timings[0][1].query()):
            begin, end = self.timings.pop(0)
            end.synchronize()
            self.loader.stats.seconds["transforms"] += begin.elapsed_time(end) / 1000

    def _pull(self):
        fetched = self._fetch()
        if fetched is None:
            return None
        seq, batch = fetched
        return (seq, *self._transfer(batch))

    def _finish(self) -> None:
        self.done = True
        if self.cuda:
            self._collect_timings(wait=True)
        loader = self.loader
        loader._completed_epoch = True
        loader._iterating = False
