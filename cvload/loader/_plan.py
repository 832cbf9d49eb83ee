"""Who reads what, in which order: the rank split of a shard epoch (every rank the
same number of batches), batch requests for workers, and skipping the batches a
resumed plain pass already yielded."""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
import torch.utils.data as tud

from cvload.errors import InvalidArgumentError
from cvload.batching import BatchRequest
from cvload.loader._stats import batch_len
from cvload.shards import ShardDataset

__all__ = ["PlainPlan", "ShardBatchSampler", "ShardPlan", "distributed_context"]


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


class ShardPlan:
    """The plan of a loader over a :class:`~cvload.shards.ShardDataset`: the rank split and
    order (a :class:`ShardBatchSampler` of batch requests), which samples this pass has
    consumed, and the state that resumes it exactly. Batches come back as
    :class:`~cvload.batching.Fetched` with their worker's stats."""

    kind = "shards"

    def __init__(self, dataset: ShardDataset, *, batch_size, shuffle, sampler, batch_sampler,
                 drop_last: bool, seed: int, handler, stacked: bool) -> None:
        if sampler is not None or batch_sampler is not None:
            raise InvalidArgumentError(
                "A ShardDataset is split across ranks and workers by cvload.DataLoader "
                "itself: leave sampler and batch_sampler unset (use shuffle=, seed=).")
        if batch_size is None or int(batch_size) < 1:
            raise InvalidArgumentError(f"Invalid batch_size={batch_size!r}: must be >= 1 "
                                       "with a ShardDataset.")
        self.dataset = dataset
        rank, world = distributed_context()
        self.sampler = ShardBatchSampler(
            dataset, batch_size=int(batch_size), drop_last=drop_last,
            shuffle=dataset.shuffle if shuffle is None else shuffle, seed=seed, rank=rank,
            world_size=world, handler=handler, stacked=stacked)
        self.consumed_before = np.zeros(0, np.int64)

    @property
    def rank(self) -> int:
        return self.sampler.rank

    @property
    def world_size(self) -> int:
        return self.sampler.world_size

    def sync_ranks(self) -> None:
        """Follow torch.distributed when it was initialised after the loader was made
        (RANK / WORLD_SIZE are read once, when the loader is made)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.sampler.rank, self.sampler.world_size = distributed_context()

    def batches(self) -> int:
        """This rank's batches in a whole epoch."""
        self.sync_ranks()
        return len(self.sampler)

    @staticmethod
    def reads_in_main_process(worker_type: str, num_workers: int) -> bool:
        """Threads or inline reads (or no workers): batches come from the main process."""
        return worker_type != "process" or num_workers == 0

    def iteration_started(self) -> None:
        """Nothing to undo: the sampler itself leaves out what was consumed."""

    def index_sampler(self, sampler):
        return sampler  # the shard sampler leaves out what a resumed pass consumed

    def begin(self, epoch: int, seed: int, resume: dict | None) -> int:
        """Set up a pass over ``epoch``; returns the batches a plain sampler should skip
        (none: the sampler leaves out what was consumed)."""
        self.sync_ranks()
        sampler = self.sampler
        sampler.epoch, sampler.seed = epoch, seed
        consumed = np.zeros(0, np.int64)
        if resume is not None:
            order = sampler.order()
            consumed = np.concatenate([order[:resume["consumed_prefix"]],
                                       np.asarray(resume["consumed_extra"], np.int64)])
        sampler.consumed = self.consumed_before = consumed
        self.dataset.set_epoch(epoch)
        return 0

    def state(self, yielded: set[int], completed: bool) -> dict:
        """The samples consumed so far (globally: all ranks step in lockstep), as the
        order's consumed prefix plus the ids beyond it."""
        sampler = self.sampler
        remaining = sampler.remaining()
        taken = [remaining[_positions_of(s, sampler.batch_size, sampler.world_size,
                                         len(remaining))] for s in sorted(yielded)]
        consumed = np.concatenate([self.consumed_before, *taken]) if taken \
            else self.consumed_before
        if completed:
            consumed = np.arange(len(self.dataset), dtype=np.int64)
        order = sampler.order()
        mask = np.isin(order, consumed)
        prefix = int(np.argmin(mask)) if not mask.all() else len(order)
        extra = np.setdiff1d(consumed, order[:prefix])
        return dict(dataset=self.dataset.fingerprint, samples=len(self.dataset),
                    world_size=sampler.world_size, batch_size=sampler.batch_size,
                    shuffle=sampler.shuffle, consumed_prefix=prefix,
                    consumed_extra=extra.tolist())

    def check(self, state: dict) -> None:
        if state["dataset"] != self.dataset.fingerprint:
            raise InvalidArgumentError(
                "state was saved for another set of shards (fingerprint "
                f"{state['dataset']}, this dataset {self.dataset.fingerprint})")

    def load(self, state: dict, seed: int) -> None:
        self.sampler.seed, self.sampler.shuffle = seed, bool(state["shuffle"])

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do before the pass: :meth:`begin` sets the dataset's epoch."""

    #: a failed batch raises: samples fail one by one inside ``fetch``, under the handler
    skips_failed_batches = False

    def skipped_batch(self) -> None:  # pragma: no cover - never called (see above)
        raise AssertionError("shard batches are never skipped whole")

    def receive(self, fetched, stats, handler, yielded: set) -> tuple | None:
        """Fold a worker's :class:`~cvload.batching.BatchStats` into the loader's ``stats``;
        ``(seq, batch)``, or None when every sample of the batch failed (the batch then
        counts as yielded, so a resume does not ask for it again)."""
        seq, batch, worker = fetched.seq, fetched.batch, fetched.stats
        for stage, spent in worker.seconds().items():
            stats.seconds[stage] += spent
        stats.bytes_read += worker.bytes
        stats.skipped.update(worker.skipped)
        if handler == "warn":
            for reason, count in worker.skipped.items():
                example = worker.skip_examples.get(reason, "")
                warnings.warn(f"skipped {count} sample(s) of batch {seq} ({reason}): "
                              f"{example}", RuntimeWarning, stacklevel=4)
        stats.substituted += worker.substituted
        stats.samples += worker.samples
        if worker.cuda_in_worker:
            raise RuntimeError("CUDA was initialised inside a DataLoader worker; "
                               "cvload keeps CUDA in the main process")
        if batch is None:
            stats.batches_skipped += 1
            yielded.add(seq)
            return None
        return seq, batch


class PlainPlan:
    """The plan of a loader over any other dataset: torch's samplers as the user gave
    them, a shuffling generator seeded from ``(seed, epoch)`` (when the loader made it),
    and a resume that skips the batches already yielded."""

    kind = "plain"

    def __init__(self, dataset, *, generator: torch.Generator | None) -> None:
        self.dataset = dataset
        self.generator = generator  # only when the loader made it, so it may seed it
        self.pending_skip = 0  # batches the next pass's sampler leaves out
        self.resume_base = 0  # batches a resumed pass had yielded before it began
        self.rank, self.world_size = 0, 1
        self.seq = 0

    def sync_ranks(self) -> None:
        """A plain dataset is not split across ranks by the loader."""

    def batches(self) -> None:
        """None: torch's own length (of the user's sampler) holds."""
        return None

    @staticmethod
    def reads_in_main_process(worker_type: str, num_workers: int) -> bool:
        """Always torch's iterator (its worker processes, or the main process)."""
        return False

    def iteration_started(self) -> None:
        """Torch's iterator has taken its sampler: later passes skip nothing."""
        self.pending_skip = 0

    def begin(self, epoch: int, seed: int, resume: dict | None) -> int:
        if self.generator is not None:
            self.generator.manual_seed(
                int(np.random.default_rng([seed, epoch]).integers(2**62)))
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.pending_skip = 0 if resume is None else int(resume["batches_yielded"])
        self.resume_base = self.pending_skip
        self.seq = 0
        return self.pending_skip

    def index_sampler(self, sampler):
        return _SkipFirst(sampler, self.pending_skip) if self.pending_skip else sampler

    def state(self, yielded: set[int], completed: bool) -> dict:
        if isinstance(self.dataset, tud.IterableDataset):
            raise InvalidArgumentError(
                "state_dict() needs a map-style dataset or a ShardDataset; an "
                "IterableDataset cannot be positioned", hint="wrap the data in a ShardDataset")
        return dict(batches_yielded=self.resume_base + len(yielded), samples=len(self.dataset))

    def check(self, state: dict) -> None:
        """Nothing beyond the sample count identifies a plain dataset."""

    def load(self, state: dict, seed: int) -> None:
        """The seed is the loader's; nothing else to restore before the pass."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    #: a batch whose loading raised a CvloadError is skipped and counted (unless "raise")
    skips_failed_batches = True

    def skipped_batch(self) -> None:
        self.seq += 1

    def receive(self, batch, stats, handler, yielded: set) -> tuple:
        """``(seq, batch)``: plain batches are numbered as they arrive."""
        seq, self.seq = self.seq, self.seq + 1
        stats.samples += batch_len(batch)
        return seq, batch
