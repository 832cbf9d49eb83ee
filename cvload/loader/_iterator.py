"""The loader's iterator: unpacks worker results, keeps order and counts, and runs
the device stage one batch ahead on a side CUDA stream."""

from __future__ import annotations

import time

import torch.utils.data as tud

from cvload.errors import CvloadError, SkipCounter
from cvload.loader._device import DeviceStage

__all__: list[str] = []


class _Iterator:
    """Wraps torch's iterator: unpacks shard batches, records what was yielded, counts,
    and runs the device stage (one batch ahead on a side CUDA stream)."""

    def __init__(self, loader: "tud.DataLoader", inner) -> None:
        self.loader, self.inner = loader, inner
        self.stage = DeviceStage(loader._device, non_blocking=loader._non_blocking,
                                 transforms=loader._gpu_transforms, stats=loader.stats)
        self.stage.begin_epoch(loader.epoch)
        self.ahead: tuple | None = None
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

    def __next__(self):
        loader = self.loader
        if self.done:
            raise StopIteration
        stage = self.stage
        if stage.bare:  # no device stage: the shortest way through
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
        self.ahead = self._pull() if stage.overlaps else None
        seq, batch, event = current
        batch = stage.apply(batch, event)
        loader._yielded.add(seq)
        loader.stats.batches += 1
        return batch

    def _pull(self):
        fetched = self._fetch()
        if fetched is None:
            return None
        seq, batch = fetched
        return (seq, *self.stage.transfer(batch))

    def _finish(self) -> None:
        self.done = True
        self.stage.finish()
        loader = self.loader
        loader._completed_epoch = True
        loader._iterating = False
