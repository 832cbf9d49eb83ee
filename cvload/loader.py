"""``cvload.DataLoader``: torch's DataLoader, plus shards split across ranks and workers,
exact resumption and a device stage.

With a plain torch dataset it *is* torch's DataLoader (a subclass; every keyword goes to
it unchanged) and adds the device stage, :attr:`~DataLoader.stats` and
``state_dict``/``load_state_dict``. With a :class:`cvload.ShardDataset` it makes the batches
itself:

- an epoch's order is a deterministic function of ``(seed, epoch)`` over the global
  sample ids (:meth:`ShardDataset.order`);
- rank ``r`` of ``W`` takes positions ``r, r + W, ...`` of the remaining order, padded by
  wrapping around to a multiple of ``W`` (the only duplicates, at most ``W - 1`` samples
  per epoch; with ``drop_last`` nothing is padded and the tail that cannot fill a batch
  on every rank is left out), so every rank yields the same number of batches and
  collectives never hang;
- batches of ids go to workers through a batch sampler in the main process, so the order
  does not depend on ``num_workers``, and each worker reads a whole batch at once
  (``__getitems__``) straight out of memory-mapped shards;
- the state records which samples of the epoch were consumed *globally* (all ranks step
  in lockstep), so a resume yields exactly the rest, in the same order, whatever the new
  ``num_workers`` or world size.
"""

from __future__ import annotations

import collections
import itertools
import os
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures import wait as futures_wait
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.utils.data as tud

from cvload.errors import CvloadError, InvalidArgumentError, SkipCounter, check_handler
from cvload.batching import BatchRequest, Fetched
from cvload.shards import ShardDataset

__all__ = ["DataLoader", "LoaderStats", "ShardBatchSampler", "distributed_context"]

STATE_VERSION = 1
INLINE_SAMPLES = 256  # inline reads take up to this many samples per kernel pass
STAGES = ("read", "decode", "collate", "transfer", "transforms", "wait")


def distributed_context() -> tuple[int, int]:
    """``(rank, world_size)`` from ``torch.distributed`` when initialised, else from the
    ``RANK`` / ``WORLD_SIZE`` environment variables, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world < 1 or not 0 <= rank < world:
        raise InvalidArgumentError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent")
    return rank, world


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


class _ShardCollate:
    """Runs in the worker after ``ShardDataset.fetch``: applies the user's ``collate_fn``
    to the sample list (timed), passes a stacked batch through."""

    def __init__(self, collate_fn: Callable | None) -> None:
        self.collate_fn = collate_fn

    def __call__(self, fetched: Fetched) -> Fetched:
        if fetched.stacked:
            return fetched
        started = time.perf_counter()
        batch = self.collate_fn(fetched.batch) if fetched.batch else None
        stats = dataclasses.replace(fetched.stats, collate=time.perf_counter() - started)
        return Fetched(fetched.seq, batch, stats, True)


# -- the device stage ----------------------------------------------------------------------


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


class _WorkerInit:
    """Runs in each worker process before the user's ``worker_init_fn``: tunes the
    allocator for decoding (see :mod:`cvload._alloc`; ``CVLOAD_TUNE_ALLOCATOR=0`` skips
    it). Picklable, so it also works with the ``spawn`` and ``forkserver`` contexts."""

    def __init__(self, fn: Callable | None) -> None:
        self.__wrapped__ = fn

    def __call__(self, worker_id: int) -> None:
        from cvload._alloc import tune_allocator, tuning_wanted

        if tuning_wanted():
            tune_allocator()
        if self.__wrapped__ is not None:
            self.__wrapped__(worker_id)


def _worker_init(fn: Callable | None) -> _WorkerInit:
    return fn if isinstance(fn, _WorkerInit) else _WorkerInit(fn)


class DataLoader(tud.DataLoader):
    """Drop-in replacement for :class:`torch.utils.data.DataLoader`.

    Every torch argument is accepted and means what it means in torch. Extra, keyword-only:

    Args:
        device: move every batch there (``"cuda"``, ``"cuda:1"``, ``"cpu"``; ``None``
            leaves batches where collate put them). On CUDA, batches come from pinned
            memory with ``non_blocking`` copies, and the next batch is copied on a side
            stream while the current one is in use.
        gpu_transforms: callables ``batch -> batch`` applied on ``device``, batched, in
            the main process (for instance :class:`cvload.augment` transforms).
        seed: seeds shuffling (``None``: the dataset's seed, else 0). With a plain dataset
            and ``shuffle=True`` without a ``generator``, the sampler's generator is
            seeded from ``(seed, epoch)``, so epochs are reproducible and resumable.
        handler: ``"raise"`` | ``"warn"`` | ``"skip"`` (``None``: the dataset's policy,
            else ``"raise"``). With a ``ShardDataset`` it applies per sample; with a
            plain dataset a batch whose loading raised a :class:`cvload.CvloadError` is
            skipped and counted.

    With a :class:`cvload.ShardDataset`: ``sampler`` and ``batch_sampler`` must be left
    unset (the loader splits the data across ranks and workers itself); ``shuffle=None``
    takes the dataset's setting. ``len(loader)`` is this rank's exact number of batches
    per epoch; the rank and world size come from ``torch.distributed`` when it is
    initialised, else from ``RANK``/``WORLD_SIZE``.

    Workers (``worker_type``, shards only): ``"process"`` is torch's worker processes;
    ``"thread"`` reads shard batches with ``num_workers`` threads of the main process;
    ``"inline"`` reads each batch in the calling thread when it is asked for. ``"auto"``
    (the default) reads ``codes`` shards inline: a batch of codes is copied in tenths
    of a millisecond, less than handing it over from a worker process or thread costs
    (measured in ``benchmarks/test_bench_loader.py``); ``rgb`` shards with threads (large
    copies that release the GIL, no second copy into shared memory); everything that
    decodes (``video`` shards, custom decoding or ``collate_fn``, plain datasets) with
    torch's worker processes. Each worker process first tunes glibc's allocator to keep
    freed decode buffers for reuse (:func:`cvload.tune_allocator`; 5-10% faster decoding
    of 720p clips; ``CVLOAD_TUNE_ALLOCATOR=0`` leaves it alone), then runs your
    ``worker_init_fn``.

    Epochs: :meth:`set_epoch` chooses the epoch; without it, each new pass over the
    loader after a complete one moves to the next epoch.
    """

    def __init__(
        self,
        dataset,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler=None,
        batch_sampler=None,
        num_workers: int = 0,
        collate_fn: Callable | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable | None = None,
        multiprocessing_context=None,
        generator=None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        device: str | torch.device | None = None,
        non_blocking: bool = True,
        gpu_transforms: Sequence[Callable] = (),
        seed: int | None = None,
        handler: str | None = None,
        worker_type: str = "auto",
    ) -> None:
        if worker_type not in ("auto", "process", "thread", "inline"):
            raise InvalidArgumentError(f"Invalid worker_type {worker_type!r}. Supported values "
                                       "are 'auto', 'process', 'thread' and 'inline'.")
        self._shards = isinstance(dataset, ShardDataset)
        default_seed = getattr(dataset, "seed", 0) if self._shards else 0
        self._seed = int(default_seed if seed is None else seed)
        dataset_handler = getattr(getattr(dataset, "skipped", None), "handler", None)
        self._handler = check_handler(handler or dataset_handler or "raise")
        self._device = None if device is None else torch.device(device)
        if self._device is not None and self._device.type == "cuda" \
                and not torch.cuda.is_available():
            raise InvalidArgumentError(
                f"device={device!r} but torch sees no CUDA device",
                hint="pass device='cpu' (the same stage runs on the CPU), or None")
        self._non_blocking = bool(non_blocking)
        self._gpu_transforms = tuple(gpu_transforms)
        for transform in self._gpu_transforms:
            if not callable(transform):
                raise InvalidArgumentError(f"gpu_transforms holds {transform!r}, which is not "
                                           "callable; pass functions or modules batch -> batch")
        self._epoch = 0
        self._epoch_set = False
        self._completed_epoch = False
        self._resume: dict | None = None
        self._iterating = False
        self._yielded: set[int] = set()
        self._consumed_before = np.zeros(0, np.int64)
        self._resume_base = 0
        self.stats = LoaderStats()
        on_cuda = self._device is not None and self._device.type == "cuda"
        if on_cuda and not pin_memory:
            pin_memory = True  # copies overlap compute only from pinned memory
        self._plain_generator = None
        if self._shards:
            if sampler is not None or batch_sampler is not None:
                raise InvalidArgumentError(
                    "A ShardDataset is split across ranks and workers by cvload.DataLoader "
                    "itself: leave sampler and batch_sampler unset (use shuffle=, seed=).")
            if batch_size is None or int(batch_size) < 1:
                raise InvalidArgumentError(f"Invalid batch_size={batch_size!r}: must be >= 1 "
                                           "with a ShardDataset.")
            rank, world = distributed_context()
            self.rank, self.world_size = rank, world
            stacked = collate_fn is None
            copy_only = (dataset.format in ("codes", "rgb") and dataset.decode is None
                         and stacked and worker_init_fn is None)
            if worker_type == "auto":
                worker_type = "process"
                if copy_only:  # rgb copies are large and release the GIL: threads overlap
                    worker_type = "inline" if dataset.format == "codes" else "thread"
            self.worker_type = worker_type
            self._batch_sampler = ShardBatchSampler(
                dataset, batch_size=batch_size, drop_last=drop_last,
                shuffle=dataset.shuffle if shuffle is None else shuffle, seed=self._seed,
                rank=rank, world_size=world, handler=self._handler, stacked=stacked)
            super().__init__(
                dataset, batch_sampler=self._batch_sampler, num_workers=num_workers,
                collate_fn=_ShardCollate(collate_fn), pin_memory=pin_memory, timeout=timeout,
                worker_init_fn=_worker_init(worker_init_fn),
                multiprocessing_context=multiprocessing_context,
                generator=generator, prefetch_factor=prefetch_factor,
                persistent_workers=persistent_workers, pin_memory_device=pin_memory_device,
                in_order=in_order)
            # torch reports batch_size=None with a batch sampler; keep what the user asked
            object.__setattr__(self, "batch_size", int(batch_size))
            object.__setattr__(self, "drop_last", bool(drop_last))
        else:
            self.rank, self.world_size = 0, 1
            if worker_type in ("thread", "inline"):
                raise InvalidArgumentError(f"worker_type={worker_type!r} needs a ShardDataset; "
                                           "other datasets are read by torch's worker processes")
            self.worker_type = "process"
            if (shuffle and sampler is None and batch_sampler is None and generator is None
                    and not isinstance(dataset, tud.IterableDataset)):
                generator = self._plain_generator = torch.Generator()
            super().__init__(
                dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                batch_sampler=batch_sampler, num_workers=num_workers, collate_fn=collate_fn,
                pin_memory=pin_memory, drop_last=drop_last, timeout=timeout,
                worker_init_fn=_worker_init(worker_init_fn),
                multiprocessing_context=multiprocessing_context,
                generator=generator, prefetch_factor=prefetch_factor,
                persistent_workers=persistent_workers, pin_memory_device=pin_memory_device,
                in_order=in_order)

    # -- epochs and state ------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order (and clip positions) for the next pass. A state loaded
        for another epoch is dropped; one loaded for this epoch is kept."""
        epoch = int(epoch)
        if self._resume is not None and self._resume["epoch"] != epoch:
            self._resume = None
        self._epoch, self._epoch_set, self._completed_epoch = epoch, True, False
        if hasattr(self.dataset, "set_epoch") and not self._shards:
            self.dataset.set_epoch(epoch)

    @property
    def _index_sampler(self):
        sampler = super()._index_sampler
        skip = self._pending_skip if not self._shards else 0
        if skip:
            return _SkipFirst(sampler, skip)
        return sampler

    _pending_skip = 0

    def state_dict(self) -> dict:
        """Where this pass stands: the epoch and the samples already yielded (globally,
        assuming all ranks have yielded the same batches, as in lockstep training)."""
        if self._resume is not None:  # loaded and not yet iterated: still that state
            return dict(self._resume)
        state = {"version": STATE_VERSION, "epoch": self._epoch, "seed": self._seed,
                 "completed": self._completed_epoch}
        if self._shards:
            sampler = self._batch_sampler
            remaining = sampler.remaining()
            taken = [remaining[_positions_of(s, sampler.batch_size, sampler.world_size,
                                             len(remaining))] for s in sorted(self._yielded)]
            consumed = np.concatenate([self._consumed_before, *taken]) if taken \
                else self._consumed_before
            if self._completed_epoch:
                consumed = np.arange(len(self.dataset), dtype=np.int64)
            order = sampler.order()
            mask = np.isin(order, consumed)
            prefix = int(np.argmin(mask)) if not mask.all() else len(order)
            extra = np.setdiff1d(consumed, order[:prefix])
            state.update(kind="shards", dataset=self.dataset.fingerprint,
                         samples=len(self.dataset), world_size=self.world_size,
                         batch_size=sampler.batch_size, shuffle=sampler.shuffle,
                         consumed_prefix=prefix, consumed_extra=extra.tolist())
        else:
            if isinstance(self.dataset, tud.IterableDataset):
                raise InvalidArgumentError(
                    "state_dict() needs a map-style dataset or a ShardDataset; an "
                    "IterableDataset cannot be positioned", hint="wrap the data in a ShardDataset")
            yielded = self._resume_base + len(self._yielded)
            state.update(kind="plain", batches_yielded=yielded, samples=len(self.dataset))
        return state

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next pass yields exactly what the saved pass had not yet yielded."""
        if self._iterating:
            raise InvalidArgumentError(
                "load_state_dict() after iteration began: load the state before iterating "
                "(right after creating the loader)")
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise InvalidArgumentError("not a cvload.DataLoader state (or another version)",
                                       hint="pass what loader.state_dict() returned")
        kind = "shards" if self._shards else "plain"
        if state.get("kind") != kind:
            raise InvalidArgumentError(f"state was saved for a {state.get('kind')} dataset, "
                                       f"this loader reads a {kind} one")
        if self._shards and state["dataset"] != self.dataset.fingerprint:
            raise InvalidArgumentError(
                "state was saved for another set of shards (fingerprint "
                f"{state['dataset']}, this dataset {self.dataset.fingerprint})")
        if state.get("samples") != len(self.dataset):
            raise InvalidArgumentError(f"state was saved for {state.get('samples')} samples, "
                                       f"the dataset has {len(self.dataset)}")
        self._seed = int(state["seed"])
        self._epoch, self._epoch_set = int(state["epoch"]), True
        self._completed_epoch = bool(state.get("completed", False))
        if self._completed_epoch:
            self._resume = None
            self._epoch_set = False
            return
        self._resume = dict(state)
        if self._shards:
            self._batch_sampler.seed = self._seed
            self._batch_sampler.shuffle = bool(state["shuffle"])

    # -- iteration ---------------------------------------------------------------------------

    def __len__(self) -> int:
        if self._shards:
            self._sync_ranks()
            return len(self._batch_sampler)
        return super().__len__()

    def _sync_ranks(self) -> None:
        """Follow torch.distributed when it was initialised after the loader was made
        (RANK / WORLD_SIZE are read once, when the loader is made)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = distributed_context()
            self.rank = self._batch_sampler.rank = rank
            self.world_size = self._batch_sampler.world_size = world

    def __iter__(self):
        if self._completed_epoch and not self._epoch_set:
            self._epoch += 1
        self._completed_epoch = False
        self._epoch_set = False
        resume = self._resume if (self._resume and self._resume["epoch"] == self._epoch) else None
        self._resume = None
        self._yielded = set()
        if self._shards:
            self._sync_ranks()
            sampler = self._batch_sampler
            sampler.epoch = self._epoch
            sampler.seed = self._seed
            if resume is not None:
                order = sampler.order()
                consumed = np.concatenate([order[:resume["consumed_prefix"]],
                                           np.asarray(resume["consumed_extra"], np.int64)])
            else:
                consumed = np.zeros(0, np.int64)
            sampler.consumed = self._consumed_before = consumed
            self.dataset.set_epoch(self._epoch)
        else:
            if self._plain_generator is not None:
                self._plain_generator.manual_seed(
                    int(np.random.default_rng([self._seed, self._epoch]).integers(2**62)))
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self._epoch)
            self._pending_skip = 0 if resume is None else int(resume["batches_yielded"])
            self._resume_base = self._pending_skip
        self._iterating = True
        if self._shards and (self.worker_type != "process" or self.num_workers == 0):
            inner = _thread_batches(self)
        else:
            inner = super().__iter__()
        self._pending_skip = 0
        return _Iterator(self, inner)


def _thread_batches(loader: DataLoader):
    """Shard batches read in the main process: inline (in the calling thread), or by
    ``num_workers`` threads up to ``num_workers * prefetch_factor`` batches ahead,
    yielded in order (or as they finish with ``in_order=False``). Codes batches are read
    a few at a time (one kernel pass, which runs without the GIL, so threads copy in
    parallel), each yielded as its own view."""
    from torch.utils.data._utils.pin_memory import pin_memory

    requests = iter(loader._batch_sampler)
    fetch_many, collate = loader.dataset.fetch_many, loader.collate_fn
    pin = loader.pin_memory and torch.cuda.is_available()
    group = max(1, min(8, INLINE_SAMPLES // max(1, loader._batch_sampler.batch_size)))
    chunks = iter(lambda: list(itertools.islice(requests, group)), [])

    def deliver(results):
        for fetched in results:
            if isinstance(fetched, BaseException):
                raise fetched
            fetched = collate(fetched)
            yield fetched._replace(batch=pin_memory(fetched.batch)) if pin else fetched

    if loader.num_workers == 0 or loader.worker_type == "inline":
        for chunk in chunks:
            yield from deliver(fetch_many(chunk))
        return
    depth = max(loader.num_workers,
                -(-loader.num_workers * (loader.prefetch_factor or 2) // group))
    pool = ThreadPoolExecutor(loader.num_workers, thread_name_prefix="cvload-reader")
    pending: collections.deque = collections.deque()
    timeout = loader.timeout or None
    try:
        for chunk in itertools.islice(chunks, depth):
            pending.append(pool.submit(fetch_many, chunk))
        while pending:
            if loader.in_order:
                future = pending.popleft()
            else:
                done, _ = futures_wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
                future = next(iter(done)) if done else pending[0]
                pending.remove(future)
            try:
                results = future.result(timeout=timeout)
            except FuturesTimeout as err:
                raise RuntimeError(f"DataLoader timed out after {timeout} seconds") from err
            chunk = next(chunks, None)
            if chunk is not None:
                pending.append(pool.submit(fetch_many, chunk))
            yield from deliver(results)
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


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


class _Iterator:
    """Wraps torch's iterator: unpacks shard batches, records what was yielded, counts,
    and runs the device stage (one batch ahead on a side CUDA stream)."""

    def __init__(self, loader: DataLoader, inner) -> None:
        self.loader, self.inner = loader, inner
        device = loader._device
        self.cuda = device is not None and device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.ahead: tuple | None = None
        self.bare = device is None and not loader._gpu_transforms
        self.timings: list = []
        self.done = False
        self.plain_seq = 0

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
                if loader._shards or loader._handler == "raise":
                    raise
                stats.seconds["wait"] += time.perf_counter() - started
                SkipCounter(loader._handler).handle(err)
                stats.skipped[type(err).__name__] += 1
                stats.batches_skipped += 1
                self.plain_seq += 1
                continue
            seconds["wait"] += time.perf_counter() - started
            if loader._shards:
                seq, batch, worker = item.seq, item.batch, item.stats
                for stage, spent in worker.seconds().items():
                    stats.seconds[stage] += spent
                stats.bytes_read += worker.bytes
                stats.skipped.update(worker.skipped)
                if loader._handler == "warn":
                    for reason, count in worker.skipped.items():
                        example = worker.skip_examples.get(reason, "")
                        warnings.warn(f"skipped {count} sample(s) of batch {seq} "
                                      f"({reason}): {example}", RuntimeWarning, stacklevel=2)
                stats.substituted += worker.substituted
                stats.samples += worker.samples
                if worker.cuda_in_worker:
                    raise RuntimeError("CUDA was initialised inside a DataLoader worker; "
                                       "cvload keeps CUDA in the main process")
                if batch is None:
                    stats.batches_skipped += 1
                    loader._yielded.add(seq)
                    continue
            else:
                seq, batch = self.plain_seq, item
                self.plain_seq += 1
                stats.samples += _batch_len(batch)
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


def _batch_len(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        for value in batch.values():
            return _batch_len(value)
    if isinstance(batch, (list, tuple)) and batch:
        first = batch[0]
        return _batch_len(first) if isinstance(first, (torch.Tensor, dict, list, tuple)) \
            else len(batch)
    return 0
