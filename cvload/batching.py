"""The batch protocol between :class:`cvload.DataLoader` and the sources it reads.

A source that implements ``fetch(request: BatchRequest) -> Fetched`` (and, optionally,
``fetch_many``) gets whole batches from the loader's batch sampler inside the worker, so it
can read a batch in one pass (the codes fast path of :class:`cvload.ShardDataset` copies a
whole batch of code arrays at once). Per-batch timings and counts travel back as a
:class:`BatchStats`, which the loader folds into :class:`cvload.LoaderStats`.

Data flow: sampler -> ``BatchRequest`` (ids, sequence number, epoch, error policy) -> worker
``source.fetch`` -> ``Fetched`` (batch, ``BatchStats``) -> main process (order restored,
stats folded) -> device stage -> model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from cvload.errors import Handler

__all__ = ["BatchRequest", "BatchStats", "Fetched", "collate_samples"]


class BatchRequest(list):
    """The sample ids of one batch, as the loader's batch sampler hands them to a worker
    (a list, so that torch's fetcher passes it through whole), with the batch's sequence
    number, epoch, error policy and whether the source should stack it."""

    def __init__(self, ids: Iterable[int], *, seq: int = 0, epoch: int = 0,
                 handler: Handler = "raise", stacked: bool = True) -> None:
        super().__init__(ids)
        self.seq, self.epoch, self.handler, self.stacked = seq, epoch, handler, stacked


@dataclass
class BatchStats:
    """What a worker measured for one batch: seconds reading, decoding and collating,
    bytes read, samples delivered, failures by exception type (with up to a few examples),
    samples that stood in for a batch whose every sample failed, and whether CUDA was
    initialised in the worker (never allowed: the loader raises)."""

    read: float = 0.0
    decode: float = 0.0
    collate: float = 0.0
    bytes: int = 0
    samples: int = 0
    skipped: Counter = field(default_factory=Counter)
    skip_examples: dict = field(default_factory=dict)
    substituted: int = 0
    cuda_in_worker: bool = False

    def seconds(self) -> dict[str, float]:
        """The timed stages, by name."""
        return {"read": self.read, "decode": self.decode, "collate": self.collate}


@dataclass
class Fetched:
    """What a worker returns for a :class:`BatchRequest`: the batch (a stacked dict, or the
    list of samples when ``stacked`` is false), its sequence number and its stats."""

    seq: int
    batch: object
    stats: BatchStats
    stacked: bool


def collate_samples(samples: list[dict]) -> dict:
    """Stack same-shaped tensors, keep strings, dicts and odd shapes as lists."""
    if not samples:
        return {}
    out: dict = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor) and all(
                isinstance(v, torch.Tensor) and v.shape == first.shape and v.dtype == first.dtype
                for v in values):
            out[key] = torch.stack(values)
        elif isinstance(first, (int, np.integer)) and not isinstance(first, bool):
            out[key] = torch.tensor(values, dtype=torch.int64)
        else:
            out[key] = values
    return out
