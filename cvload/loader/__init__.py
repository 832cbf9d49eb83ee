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

Where each concern lives: ``_plan`` holds the two plans a loader delegates to, chosen once
by the dataset's type: ``ShardPlan`` (order, rank split, batch requests of
:mod:`cvload.batching`, consumed samples and their resume state) and ``PlainPlan`` (torch's
samplers, a ``(seed, epoch)``-seeded shuffle, resume by skipping yielded batches), with the
same methods, so the loader has no mode flags; ``_workers`` (worker processes, reader threads
or inline reads), ``_iterator`` (order and counts), ``_device`` (``DeviceStage``: copies on a side CUDA
stream one batch ahead, batched transforms, their timings), ``_stats`` (:class:`LoaderStats`); this module holds the
``DataLoader`` itself: arguments, epochs and ``state_dict``.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
import torch.utils.data as tud

from cvload.errors import InvalidArgumentError, check_handler
from cvload.loader._iterator import _Iterator
from cvload.loader._plan import PlainPlan, ShardBatchSampler, ShardPlan, distributed_context
from cvload.loader._stats import LoaderStats
from cvload.loader._workers import _ShardCollate, _thread_batches, _worker_init
from cvload.shards import ShardDataset

__all__ = ["DataLoader", "LoaderStats", "ShardBatchSampler", "WorkerType", "distributed_context"]

WorkerType = Literal["auto", "process", "thread", "inline"]


STATE_VERSION = 1

class DataLoader(tud.DataLoader):
    """Drop-in replacement for :class:`torch.utils.data.DataLoader`.

    Every torch argument is accepted and means what it means in torch. Extra, keyword-only:

    Args:
        device: move every batch there (``"cuda"``, ``"cuda:1"``, ``"cpu"``; ``None``
            leaves batches where collate put them). On CUDA, batches come from pinned
            memory with ``non_blocking`` copies, and the next batch is copied on a side
            stream while the current one is in use.
        gpu_transforms: callables ``batch -> batch`` applied on ``device``, batched, in
            the main process (for instance :class:`cvload.LatentAugment`). A transform
            with ``check_dataset(dataset)`` is shown the dataset once (to refuse codes of
            another codec); one with ``set_epoch(epoch)`` is told each pass's epoch.
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
        shards = isinstance(dataset, ShardDataset)
        default_seed = getattr(dataset, "seed", 0) if shards else 0
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
            check = getattr(transform, "check_dataset", None)
            if callable(check):
                check(dataset)
        self._epoch = 0
        self._epoch_set = False
        self._completed_epoch = False
        self._resume: dict | None = None
        self._iterating = False
        self._yielded: set[int] = set()
        self.stats = LoaderStats()
        on_cuda = self._device is not None and self._device.type == "cuda"
        if on_cuda and not pin_memory:
            pin_memory = True  # copies overlap compute only from pinned memory
        if shards:
            stacked = collate_fn is None
            self._plan = ShardPlan(dataset, batch_size=batch_size, shuffle=shuffle,
                                   sampler=sampler, batch_sampler=batch_sampler,
                                   drop_last=drop_last, seed=self._seed, handler=self._handler,
                                   stacked=stacked)
            copy_only = (dataset.format in ("codes", "rgb") and dataset.decoding.copy_only
                         and stacked and worker_init_fn is None)
            if worker_type == "auto":
                worker_type = "process"
                if copy_only:  # rgb copies are large and release the GIL: threads overlap
                    worker_type = "inline" if dataset.format == "codes" else "thread"
            torch_batching = dict(batch_sampler=self._plan.sampler,
                                  collate_fn=_ShardCollate(collate_fn))
        else:
            if worker_type in ("thread", "inline"):
                raise InvalidArgumentError(f"worker_type={worker_type!r} needs a ShardDataset; "
                                           "other datasets are read by torch's worker processes")
            worker_type = "process"
            if (shuffle and sampler is None and batch_sampler is None and generator is None
                    and not isinstance(dataset, tud.IterableDataset)):
                generator = torch.Generator()  # seeded from (seed, epoch) by the plan
                self._plan = PlainPlan(dataset, generator=generator)
            else:
                self._plan = PlainPlan(dataset, generator=None)
            torch_batching = dict(batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                                  batch_sampler=batch_sampler, collate_fn=collate_fn,
                                  drop_last=drop_last)
        self.worker_type = worker_type
        super().__init__(
            dataset, num_workers=num_workers, pin_memory=pin_memory, timeout=timeout,
            worker_init_fn=_worker_init(worker_init_fn),
            multiprocessing_context=multiprocessing_context, generator=generator,
            prefetch_factor=prefetch_factor, persistent_workers=persistent_workers,
            pin_memory_device=pin_memory_device, in_order=in_order, **torch_batching)
        if shards:  # torch reports batch_size=None with a batch sampler: keep the request
            object.__setattr__(self, "batch_size", int(batch_size))
            object.__setattr__(self, "drop_last", bool(drop_last))

    @property
    def rank(self) -> int:
        return self._plan.rank

    @property
    def world_size(self) -> int:
        return self._plan.world_size

    @property
    def _batch_sampler(self) -> ShardBatchSampler:
        """The shard plan's batch sampler (the main-process readers iterate it)."""
        return self._plan.sampler

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
        self._plan.set_epoch(epoch)

    @property
    def _index_sampler(self):
        sampler = super()._index_sampler
        plan = self.__dict__.get("_plan")  # torch reads this during its own __init__
        return sampler if plan is None else plan.index_sampler(sampler)

    def state_dict(self) -> dict:
        """Where this pass stands: the epoch and the samples already yielded (globally,
        assuming all ranks have yielded the same batches, as in lockstep training)."""
        if self._resume is not None:  # loaded and not yet iterated: still that state
            return dict(self._resume)
        state = {"version": STATE_VERSION, "epoch": self._epoch, "seed": self._seed,
                 "completed": self._completed_epoch}
        state.update(kind=self._plan.kind,
                     **self._plan.state(self._yielded, self._completed_epoch))
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
        kind = self._plan.kind
        if state.get("kind") != kind:
            raise InvalidArgumentError(f"state was saved for a {state.get('kind')} dataset, "
                                       f"this loader reads a {kind} one")
        self._plan.check(state)
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
        self._plan.load(state, self._seed)

    # -- iteration ---------------------------------------------------------------------------

    def __len__(self) -> int:
        batches = self._plan.batches()
        return super().__len__() if batches is None else batches

    def __iter__(self):
        if self._completed_epoch and not self._epoch_set:
            self._epoch += 1
        self._completed_epoch = False
        self._epoch_set = False
        resume = self._resume if (self._resume and self._resume["epoch"] == self._epoch) else None
        self._resume = None
        self._yielded = set()
        self._plan.begin(self._epoch, self._seed, resume)
        self._iterating = True
        if self._plan.reads_in_main_process(self.worker_type, self.num_workers):
            inner = _thread_batches(self)
        else:
            inner = super().__iter__()
        self._plan.iteration_started()
        return _Iterator(self, inner)
