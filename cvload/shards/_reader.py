"""``ShardDataset``: random access into shards written by ``cvload pack``.

The index records every member's byte range, so a sample is read straight out of a
memory-mapped tar without scanning it, and a whole batch of same-shaped code arrays is
copied into one preallocated array (the per-sample cost is a few microseconds, which is
what makes codes shards thousands of times faster than decoding video).

Nothing is ever unpickled: ``.npy`` members are parsed from their header (object dtypes
refused), ``.pyd``/``.pickle`` members make their sample an :class:`UnsafeShardError`.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
import time
from typing import Callable, Literal

import numpy as np
import torch

from cvload.batching import BatchRequest, BatchStats, Fetched, collate_samples
from cvload.errors import (
    CvloadError,
    InvalidArgumentError,
    ShardError,
    SkipCounter,
    UnsafeShardError,
)
from cvload.shards._codes_path import codes_assemble, codes_rows
from cvload.shards._members import MemberDecoding
from cvload.shards._sources import expand_sources, resolve_sources, unsafe_member

__all__ = ["ShardDataset", "expand_sources"]

# -- the dataset ---------------------------------------------------------------------------


class ShardDataset(torch.utils.data.Dataset):
    """Samples of shards written by ``cvload pack``, by random access.

    Args:
        source: a directory holding ``index.json``, a shard path, a brace pattern such as
            ``"out/shard-{000000..000009}.tar"``, a glob, or a list of these. Shards listed
            in an ``index.json`` beside them use its member offsets; others are scanned
            (headers only).
        shuffle: default order of :meth:`order` (the loader may override it).
        seed: seeds the shuffle and the clip positions of ``video`` shards.
        handler: ``"raise"`` | ``"warn"`` | ``"skip"`` for bad samples (corrupt member,
            truncated or missing shard, unsafe member). Skips are counted in
            :attr:`skipped` (per process; :class:`cvload.DataLoader` gathers them).
        decode: how member bytes become a sample (resolved once into
            :attr:`decoding`, a :class:`MemberDecoding`): ``None`` by format (``codes``
            -> ``codes`` ``(t, h, w, groups)`` uint8/uint16; ``rgb`` -> ``rgb``
            ``(T, 3, H, W)`` uint8; ``video`` -> the ``rgb`` layout of every packed clip,
            ``num_frames`` = the packed clip length, centred); a layout name
            (``"rgb"``, ``"mvcgc"``, ``"imrnet"``, ``"coviar"``) or a
            :class:`cvload.video.ClipDecoder`: video members decoded on the fly into
            that layout; ``"raw"``: member bytes (``.npy`` still parsed safely); a
            callable: gets ``{suffix: bytes}`` and returns the sample dict.
        metadata: also return each sample's ``json`` member (a dict) under ``"json"``.
        shuffle_block: with shuffling, samples are mixed within groups of this many
            shards (after the shard order is shuffled); ``None`` mixes all of them.

    Every sample also has ``"__key__"`` (str), ``"__index__"`` (its global id) and
    ``"label"`` (int64) when the shard holds ``KEY.cls``.
    """

    def __init__(
        self,
        source,
        *,
        shuffle: bool = False,
        seed: int = 0,
        handler: str = "raise",
        decode: str | Callable | None = None,
        metadata: bool = False,
        shuffle_block: int | None = None,
    ) -> None:
        self.skipped = SkipCounter(handler)
        self.paths, self.entries, meta = resolve_sources(source, self.skipped)
        self.format: Literal["codes", "video", "rgb", "unknown"] = meta["format"]
        self.codec_id: str | None = meta["codec_id"]
        self.extra: dict = meta["extra"] or {}
        self.shuffle, self.seed = bool(shuffle), int(seed)
        self.metadata = bool(metadata)
        if shuffle_block is not None and int(shuffle_block) < 1:
            raise InvalidArgumentError(f"Invalid shuffle_block={shuffle_block!r}: must be >= 1.")
        self.shuffle_block = None if shuffle_block is None else int(shuffle_block)
        self.decode = decode
        self.decoding = MemberDecoding.resolve(
            decode, format=self.format, clip_frames=int(self.extra.get("clip_frames", 16)),
            metadata=metadata)
        counts = np.array([e.samples for e in self.entries], dtype=np.int64)
        self.shard_counts = counts
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.epoch = 0
        self._maps: dict[int, object] = {}  # mmap, or the error the shard raised
        self._tables: dict[str, tuple] = {}
        self._lock = threading.Lock()

    # -- description ---------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __repr__(self) -> str:
        return (f"ShardDataset(format={self.format!r}, shards={len(self.paths)}, "
                f"samples={len(self)}, shuffle={self.shuffle}, handler={self.skipped.handler!r})")

    @property
    def fingerprint(self) -> str:
        """Identifies the sample set (shard names and counts) for resumable state."""
        digest = hashlib.sha256()
        for path, count in zip(self.paths, self.shard_counts):
            digest.update(f"{os.path.basename(path)}:{int(count)};".encode())
        return digest.hexdigest()[:16]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def locate(self, index: int) -> tuple[int, int]:
        """Global sample id -> (shard number, sample number inside the shard)."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        return shard, index - int(self._starts[shard])

    def order(self, epoch: int | None = None, *, shuffle: bool | None = None,
              seed: int | None = None) -> np.ndarray:
        """Global sample ids of an epoch: shard order shuffled, then samples mixed within
        blocks of ``shuffle_block`` shards (all of them by default); deterministic per
        ``(seed, epoch)``. In index order when not shuffling."""
        epoch = self.epoch if epoch is None else int(epoch)
        shuffle = self.shuffle if shuffle is None else shuffle
        seed = self.seed if seed is None else int(seed)
        if not shuffle:
            return np.arange(len(self), dtype=np.int64)
        rng = np.random.default_rng([seed, epoch, 0x5EED])
        shards = rng.permutation(len(self.paths))
        block = self.shuffle_block or max(1, len(shards))
        parts = []
        for b in range(0, len(shards), block):
            ids = np.concatenate([np.arange(self._starts[s], self._starts[s + 1])
                                  for s in shards[b:b + block]] or [np.zeros(0, np.int64)])
            parts.append(rng.permutation(ids))
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    # -- reading -------------------------------------------------------------------------

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_maps"] = {}  # every process maps the shards itself
        state["_tables"] = {}  # tables, mapped buffers and the codes template
        del state["_lock"]
        return state

    def _map(self, shard: int):
        """The shard memory-mapped (once per process). A shard that cannot be used keeps
        raising the error it first raised."""
        mapped = self._maps.get(shard)
        if mapped is not None:
            if isinstance(mapped, CvloadError):
                raise type(mapped)(mapped.message, source=mapped.source, hint=mapped.hint)
            return mapped
        path = self.paths[shard]
        try:
            try:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            except FileNotFoundError as err:
                raise ShardError("shard is missing", source=path,
                                 hint="re-run `cvload pack` (it rewrites only missing shards), "
                                      "or pass handler='skip'") from err
            except OSError as err:
                raise ShardError(f"shard cannot be read: {err}", source=path) from err
            expected = self.entries[shard].bytes
            if size != expected:
                what = ("truncated" if size < int(expected)
                        else "changed since index.json was written")
                raise ShardError(f"shard is {what}: {size} bytes, index.json says {expected}",
                                 source=path)
        except ShardError as err:
            self._maps[shard] = err
            raise
        self._maps[shard] = mapped
        return mapped

    def _members(self, shard: int, local: int) -> tuple[str, dict]:
        return self.entries[shard].member(local)

    def _where(self, shard: int, key: str, suffix: str | None = None) -> str:
        name = os.path.basename(self.paths[shard])
        return f"{name}:{key}" + (f".{suffix}" if suffix else "")

    def _bytes(self, buffer, shard: int, key: str, suffix: str, span, stats: BatchStats) -> memoryview:
        offset, size = int(span[0]), int(span[1])
        if offset + size > len(buffer):
            raise ShardError(f"shard is truncated: member ends at byte {offset + size}, the "
                             f"file has {len(buffer)}", source=self._where(shard, key, suffix))
        stats.bytes += size
        return memoryview(buffer)[offset:offset + size]

    def _check_safe(self, shard: int, key: str, members: dict) -> None:
        suffix = unsafe_member(members)
        if suffix is not None:
            raise UnsafeShardError(f"member .{suffix} would need unpickling; the sample "
                                   "is refused", source=self._where(shard, key))

    def _read_sample(self, index: int, epoch: int, stats: BatchStats | None = None) -> dict:
        """One sample as a dict of tensors (raises CvloadError subclasses)."""
        stats = BatchStats() if stats is None else stats
        shard, local = self.locate(index)
        key, members = self._members(shard, local)
        self._check_safe(shard, key, members)
        buffer = self._map(shard)
        started = time.perf_counter()
        sample: dict = {"__key__": key, "__index__": index}
        raw: dict[str, object] = {}
        for suffix, span in members.items():
            if self.decoding.wants(suffix):
                raw[suffix] = self._bytes(buffer, shard, key, suffix, span, stats)
        stats.read += time.perf_counter() - started
        started = time.perf_counter()
        try:
            sample.update(self.decoding.decode(
                raw, self._where(shard, key),
                lambda: np.random.default_rng([self.seed, epoch, index])))
        except CvloadError:
            raise
        except (ValueError, KeyError, OSError, TypeError) as err:
            raise ShardError(f"sample cannot be decoded: {type(err).__name__}: {err}",
                             source=self._where(shard, key)) from err
        stats.decode += time.perf_counter() - started
        return sample

    # -- the torch protocol ----------------------------------------------------------------

    def __getitem__(self, index: int) -> dict | None:
        """One sample; ``None`` when it failed under ``warn``/``skip``."""
        index = int(index)
        if index < 0:
            index += len(self)
        try:
            return self._read_sample(index, self.epoch)
        except CvloadError as err:
            self.skipped.handle(err)
            return None

    def __getitems__(self, indices):
        """A batch: with a :class:`BatchRequest` (from :class:`cvload.DataLoader`) a
        :class:`Fetched`; with a plain list of ids, the list of samples (failed samples
        left out under ``warn``/``skip``)."""
        if isinstance(indices, BatchRequest):
            return self.fetch(indices)
        samples = [self[i] for i in indices]
        return [s for s in samples if s is not None]

    # -- batches -------------------------------------------------------------------------


    def _fast_codes(self, request: BatchRequest) -> bool:
        return request.stacked and self.format == "codes" and self.decoding.copy_only

    @staticmethod
    def _counter(request: BatchRequest) -> SkipCounter:
        # "warn" is raised as a warning by the loader in the main process (a worker's
        # warnings would be lost); here failures are only counted
        return SkipCounter("skip" if request.handler == "warn" else request.handler)

    def fetch(self, request: BatchRequest) -> Fetched:
        """Read a batch. Failed samples follow ``request.handler``: they are counted and
        left out; when every sample of a batch failed, the next readable samples (in id
        order) stand in, so every rank still yields the same number of batches."""
        stats = BatchStats()
        counter = self._counter(request)
        if self._fast_codes(request):
            started = time.perf_counter()
            rows = codes_rows(self, np.asarray(request, np.int64))
            batch = codes_assemble(self, rows, 0, len(request), counter, stats)
            stats.read += time.perf_counter() - started
            return self._finish(request, batch, None, counter, stats)
        samples = self._samples(list(request), request.epoch, counter, stats)
        return self._finish(request, None, samples, counter, stats)

    def fetch_many(self, requests: list[BatchRequest]) -> list:
        """Read several batches with one pass of the codes fast path (the fixed cost of
        a call shared by all). Returns one :class:`Fetched` per request, or, in its
        place, the exception that request raised under ``handler="raise"`` (so earlier
        batches can still be yielded before it)."""
        if len(requests) == 1 or not all(self._fast_codes(r) for r in requests):
            return [self._fetch_or_error(r) for r in requests]
        started = time.perf_counter()
        rows = codes_rows(self, np.asarray([i for r in requests for i in r], np.int64))
        share = (time.perf_counter() - started) / len(requests)
        results, at = [], 0
        for request in requests:
            stats, counter = BatchStats(), self._counter(request)
            stats.read = share
            try:
                batch = codes_assemble(self, rows, at, at + len(request), counter, stats)
                results.append(self._finish(request, batch, None, counter, stats))
            except CvloadError as err:
                results.append(err)
            at += len(request)
        return results

    def _fetch_or_error(self, request: BatchRequest):
        try:
            return self.fetch(request)
        except CvloadError as err:
            return err

    def _finish(self, request: BatchRequest, batch, samples, counter: SkipCounter,
                stats: BatchStats) -> Fetched:
        got = len(batch["__key__"]) if batch is not None else len(samples)
        if got == 0 and len(request) and counter.total:
            samples = self._substitutes(request, stats)
            stats.substituted = len(samples)
            batch = None
        if batch is None and request.stacked:
            batch = collate_samples(samples)
        stats.skipped = counter.counts
        stats.skip_examples = counter.examples
        stats.samples = got or stats.substituted
        stats.cuda_in_worker = bool(torch.utils.data.get_worker_info() is not None
                                       and torch.cuda.is_initialized())
        return Fetched(request.seq, batch if request.stacked else samples, stats, request.stacked)

    def _samples(self, ids: list[int], epoch: int, counter: SkipCounter,
                 stats: BatchStats | None = None) -> list[dict]:
        samples = []
        for index in ids:
            try:
                samples.append(self._read_sample(int(index), epoch, stats))
            except CvloadError as err:
                counter.handle(err)
        return samples

    def _substitutes(self, request: BatchRequest, stats: BatchStats) -> list[dict]:
        total = len(self)
        start = max(request) + 1
        quiet = SkipCounter("skip")
        for step in range(min(total, 4 * len(request) + 64)):
            samples = self._samples([(start + step) % total], request.epoch, quiet, stats)
            if samples:
                return samples
        raise ShardError(f"every sample of batch {request.seq} failed and no readable sample "
                         "was found to stand in for them", source=self.paths[0] if self.paths
                         else None, hint="check the shards with `cvload inspect --verify`")
