"""``LoaderStats``: what a loader measured, stage by stage."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

__all__ = ["LoaderStats", "STAGES", "batch_len"]


STAGES = ("read", "decode", "collate", "transfer", "transforms", "wait")

@dataclass
class LoaderStats:
    """What the loader did, summed over batches (and over epochs until :meth:`reset`).

    ``seconds`` per stage: ``read`` and ``decode`` (in workers, summed over them),
    ``collate`` (workers), ``transfer`` (issuing the copies to the device), ``transforms``
    (the ``gpu_transforms``; on CUDA their GPU time, from events, without synchronising),
    ``wait`` (the main process waiting for the next batch).
    """

    samples: int = 0
    batches: int = 0
    bytes_read: int = 0
    skipped: Counter = field(default_factory=Counter)
    substituted: int = 0
    batches_skipped: int = 0
    seconds: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def reset(self) -> None:
        self.__init__()

    def as_dict(self) -> dict:
        return {"samples": self.samples, "batches": self.batches, "bytes_read": self.bytes_read,
                "skipped": dict(self.skipped), "skipped_total": sum(self.skipped.values()),
                "substituted": self.substituted, "batches_skipped": self.batches_skipped,
                "seconds": dict(self.seconds)}

    def __str__(self) -> str:
        stages = ", ".join(f"{k} {v:.3f}s" for k, v in self.seconds.items())
        return (f"{self.samples} samples in {self.batches} batches, {self.bytes_read / 1e6:.2f} MB "
                f"read, skipped {dict(self.skipped) or 0}; {stages}")


# -- batches of shard samples ------------------------------------------------------------------


def batch_len(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        for value in batch.values():
            return batch_len(value)
    if isinstance(batch, (list, tuple)) and batch:
        first = batch[0]
        return batch_len(first) if isinstance(first, (torch.Tensor, dict, list, tuple)) \
            else len(batch)
    return 0
