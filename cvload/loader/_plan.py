"""Who reads what, in which order: the rank split of a shard epoch (every rank the
same number of batches), batch requests for workers, and skipping the batches a
resumed plain pass already yielded."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.utils.data as tud

from cvload.errors import InvalidArgumentError
from cvload.batching import BatchRequest
from cvload.shards import ShardDataset

__all__ = ["ShardBatchSampler", "distributed_context"]


def distributed_context() -> tuple[int, int]:
    """``(rank, world_size)`` from ``torch.distributed`` when initialised, else from the
    ``RANK`` / ``WORLD_SIZE`` environment variables, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world < 1 or not 0 <= rank < world:
        raise InvalidArgumentError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent")
    return rank, world

def _positions_of(seq: int, batch_size: int, world: int, length: int) -> np.ndarray:
    """Positions (in the epoch's remaining order) that batch ``seq`` covers on all ranks."""
    per_rank = np.arange(seq * batch_size, (seq + 1) * batch_size, dtype=np.int64)
    positions = (per_rank[:, None] * world + np.arange(world)[None, :]).ravel()
    return positions[positions < length]

class ShardBatchSampler(tud.Sampler):
    """Batches of global sample ids for one rank: the epoch's order minus what a resumed
    state already consumed, padded to a multiple of the world size, strided by rank."""

    def __init__(self, dataset: ShardDataset, *, batch_size: int, drop_last: bool,
                 shuffle: bool, seed: int, rank: int, world_size: int, handler: str,
                 stacked: bool) -> None:
        self.dataset = dataset
        self.batch_size, self.drop_last = int(batch_size), bool(drop_last)
        self.shuffle, self.seed = bool(shuffle), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.handler, self.stacked = handler, stacked
        self.epoch = 0
        self.consumed = np.zeros(0, np.int64)  # ids consumed in this epoch before a resume

    def order(self) -> np.ndarray:
        return self.dataset.order(self.epoch, shuffle=self.shuffle, seed=self.seed)

    def remaining(self) -> np.ndarray:
        order = self.order()
        if len(self.consumed):
            order = order[~np.isin(order, self.consumed)]
        return order

    def _count(self, length: int) -> int:
        if self.drop_last:  # no padding: the tail that does not fill a batch everywhere waits
            return (length // self.world_size) // self.batch_size
        return -(-(-(-length // self.world_size)) // self.batch_size)

    def __len__(self) -> int:
        """Batches of a whole epoch on this rank (a resumed epoch yields fewer)."""
        return self._count(len(self.dataset))

    def __iter__(self):
        remaining = self.remaining()
        length = len(remaining)
        if length == 0:
            return
        padded = -(-length // self.world_size) * self.world_size
        positions = np.arange(self.rank, padded, self.world_size)
        ids = remaining[positions % length]
        for seq in range(self._count(length)):
            chunk = ids[seq * self.batch_size:(seq + 1) * self.batch_size]
            yield BatchRequest(chunk.tolist(), seq=seq, epoch=self.epoch, handler=self.handler,
                               stacked=self.stacked)

class _SkipFirst:
    """A batch sampler that leaves out its first ``count`` batches (plain-dataset resume)."""

    def __init__(self, sampler, count: int) -> None:
        self.sampler, self.count = sampler, count

    def __iter__(self):
        # a generator, like torch's samplers: nothing is drawn from the sampler's
        # generator before torch has drawn its worker base seed
        iterator = iter(self.sampler)
        for _ in range(self.count):
            next(iterator, None)
        yield from iterator

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.count)
