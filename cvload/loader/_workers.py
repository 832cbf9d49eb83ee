"""Where batches are read: torch's worker processes (each first tunes the allocator),
or threads / inline reads of shard batches in the main process."""

from __future__ import annotations

import collections
import itertools
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures import wait as futures_wait
import dataclasses
from typing import Callable

import torch
import torch.utils.data as tud

from cvload.batching import Fetched

__all__: list[str] = []


INLINE_SAMPLES = 256  # inline reads take up to this many samples per kernel pass

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

def _thread_batches(loader: "tud.DataLoader"):
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
            yield dataclasses.replace(fetched, batch=pin_memory(fetched.batch)) if pin else fetched

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
