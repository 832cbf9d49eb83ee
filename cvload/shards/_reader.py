"""``ShardDataset``: random access into shards written by ``cvload pack``.

The index records every member's byte range, so a sample is read straight out of a
memory-mapped tar without scanning it, and a whole batch of same-shaped code arrays is
copied into one preallocated array (the per-sample cost is a few microseconds, which is
what makes codes shards thousands of times faster than decoding video).

Nothing is ever unpickled: ``.npy`` members are parsed from their header (object dtypes
refused), ``.pyd``/``.pickle`` members make their sample an :class:`UnsafeShardError`.
"""

from __future__ import annotations

import ast
import glob
import hashlib
import io
import json
import mmap
import os
import re
import tarfile
import threading
import time
from collections import Counter
from typing import Callable, Iterable, NamedTuple

import numpy as np
import torch

from cvload_ext import gather_spans
from cvload.errors import (
    CvloadError,
    InvalidArgumentError,
    ShardError,
    SkipCounter,
    UnsafeShardError,
)
from cvload.shards._index import read_index
from cvload.shards._inspect import UNSAFE_SUFFIXES

__all__ = ["ShardDataset", "BatchRequest", "Fetched", "collate_samples", "expand_sources"]

VIDEO_MEMBERS = ("mp4", "264", "h265", "mkv", "webm", "avi")
_JPG = re.compile(r"^(\d+)\.(jpg|jpeg|png)$")


# -- sources -------------------------------------------------------------------------------


def expand_sources(source) -> list[str]:
    """A directory, one path, a brace pattern (``train-{000000..000009}.tar``), a glob,
    or a list of any of these -> shard paths (order kept, duplicates removed)."""
    from braceexpand import braceexpand

    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    paths: list[str] = []
    for item in items:
        text = os.fspath(item)
        for expanded in braceexpand(text):
            if any(ch in expanded for ch in "*?[") and not os.path.exists(expanded):
                paths.extend(sorted(glob.glob(expanded)))
            else:
                paths.append(expanded)
    seen: set[str] = set()
    return [p for p in paths if not (p in seen or seen.add(p))]


def _unsafe_member(members) -> str | None:
    """The first member suffix that would need unpickling (``.pyd``, ``.pickle`` ...)."""
    for suffix in members:
        if ("." + suffix).endswith(UNSAFE_SUFFIXES):
            return suffix
    return None


def _raise_open_files_limit(wanted: int) -> None:
    """Every mapped shard holds a file descriptor: lift the soft limit towards the hard
    one when a dataset has more shards than the soft limit allows (Unix only)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted + 256:
        target = hard if hard == resource.RLIM_INFINITY else min(hard, wanted + 1024)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
        except (ValueError, OSError):
            pass


def _scan_tar(path: str) -> dict:
    """Index entry for a shard without an index.json: keys and member ranges from the
    tar headers (no member data is read)."""
    members: dict[str, dict[str, list[int]]] = {}
    keys: list[str] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                base = os.path.basename(info.name)
                key, _, suffix = base.partition(".")
                prefix = os.path.dirname(info.name)
                key = f"{prefix}/{key}" if prefix else key
                if key not in members:
                    members[key] = {}
                    keys.append(key)
                members[key][suffix] = [info.offset_data, info.size]
    except (tarfile.TarError, OSError) as err:
        raise ShardError(f"not a readable tar: {err}", source=path) from err
    return {"name": os.path.basename(path), "samples": len(keys),
            "bytes": os.path.getsize(path), "sha256": None, "keys": keys, "members": members}


def _resolve(source, handler: SkipCounter) -> tuple[list[str], list[dict], dict]:
    """Shard paths, their index entries and the index fields (format, codec id...)."""
    meta: dict = {"format": None, "codec_id": None, "extra": {}}
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        index = read_index(source)
        meta.update(format=index.format, codec_id=index.codec_id, extra=index.extra)
        paths = [os.path.join(os.fspath(source), s["name"]) for s in index.shards]
        return paths, list(index.shards), meta
    paths = expand_sources(source)
    if not paths:
        raise InvalidArgumentError(f"no shards match {source!r}",
                                   hint="pass a directory with index.json, shard paths or a "
                                        "brace pattern such as 'train-{000000..000009}.tar'")
    entries, kept = [], []
    indexes: dict[str, dict] = {}
    for path in paths:
        directory = os.path.dirname(os.path.abspath(path))
        if directory not in indexes:
            try:
                index = read_index(directory)
                indexes[directory] = {"by_name": {s["name"]: s for s in index.shards},
                                      "format": index.format, "codec_id": index.codec_id,
                                      "extra": index.extra}
            except ShardError:
                indexes[directory] = {"by_name": {}}
        known = indexes[directory]["by_name"].get(os.path.basename(path))
        if known is not None:
            entry = known
            for field in ("format", "codec_id"):
                meta[field] = meta[field] or indexes[directory].get(field)
            meta["extra"] = meta["extra"] or indexes[directory].get("extra", {})
        elif not os.path.exists(path):
            handler.handle(ShardError("shard is missing (and no index.json lists it, so its "
                                      "samples cannot be counted)", source=path))
            continue
        else:
            entry = _scan_tar(path)
        entries.append(entry)
        kept.append(path)
    if meta["format"] is None:
        meta["format"] = _guess_format(entries)
    return kept, entries, meta


def _guess_format(entries: list[dict]) -> str:
    for entry in entries:
        for members in entry["members"].values():
            if "codes.npy" in members:
                return "codes"
            if any(s in members for s in VIDEO_MEMBERS):
                return "video"
            if "rgb.npy" in members or any(_JPG.match(s) for s in members):
                return "rgb"
    return "unknown"


# -- .npy without pickle ----------------------------------------------------------------------


_HEADERS: dict[bytes, tuple[np.dtype, tuple, bool, int]] = {}


def _npy_array(buffer, offset: int, size: int, where: str) -> np.ndarray:
    """A read-only view of the ``.npy`` member at ``buffer[offset:offset + size]``.
    Headers are parsed once per distinct header (``ast.literal_eval``, never pickle)."""
    if size < 10 or bytes(buffer[offset:offset + 6]) != b"\x93NUMPY":
        raise ShardError("member is not a .npy array", source=where)
    major = buffer[offset + 6]
    if major == 1:
        length, start = int.from_bytes(buffer[offset + 8:offset + 10], "little"), 10
    elif major in (2, 3):
        length, start = int.from_bytes(buffer[offset + 8:offset + 12], "little"), 12
    else:
        raise ShardError(f".npy format version {major} is not supported", source=where)
    header = bytes(buffer[offset:offset + start + length])
    parsed = _HEADERS.get(header)
    if parsed is None:
        try:
            fields = ast.literal_eval(header[start:].decode("latin1"))
            dtype = np.dtype(fields["descr"]) if not isinstance(fields["descr"], list) else None
            shape = tuple(int(x) for x in fields["shape"])
            fortran = bool(fields["fortran_order"])
        except (ValueError, SyntaxError, KeyError, TypeError) as err:
            raise ShardError(f"unreadable .npy header: {err}", source=where) from err
        if dtype is None or dtype.hasobject:
            raise UnsafeShardError("object or structured .npy array (would need unpickling)",
                                   source=where)
        parsed = (dtype, shape, fortran, start + length)
        if len(_HEADERS) < 4096:
            _HEADERS[header] = parsed
    dtype, shape, fortran, data_at = parsed
    count = int(np.prod(shape, dtype=np.int64))
    if data_at + count * dtype.itemsize != size:
        raise ShardError(f".npy member holds {size - data_at} data bytes, its header "
                         f"promises {count * dtype.itemsize}", source=where)
    array = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset + data_at)
    return array.reshape(shape, order="F" if fortran else "C")


# -- batches ---------------------------------------------------------------------------------


class BatchRequest(list):
    """The sample ids of one batch, as the loader's batch sampler hands them to a worker,
    with the batch's sequence number, epoch, error policy and whether to stack."""

    def __init__(self, ids: Iterable[int], *, seq: int = 0, epoch: int = 0,
                 handler: str = "raise", stacked: bool = True) -> None:
        super().__init__(ids)
        self.seq, self.epoch, self.handler, self.stacked = seq, epoch, handler, stacked


class Fetched(NamedTuple):
    """What a worker returns for a :class:`BatchRequest`: the batch (stacked dict or list
    of samples), its sequence number and the worker's stage statistics for it."""

    seq: int
    batch: object
    stats: dict
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
        decode: how samples are decoded. ``None`` chooses by format: ``codes`` ->
            ``codes`` ``(t, h, w, groups)`` uint8/uint16 tensor; ``rgb`` -> ``rgb``
            ``(T, 3, H, W)`` uint8; ``video`` -> the ``rgb`` layout of every packed clip
            (``num_frames`` = the packed clip length, centred). A layout name
            (``"rgb"``, ``"mvcgc"``, ``"imrnet"``, ``"coviar"``) or a
            :class:`cvload.video.ClipDecoder` decodes ``video`` members on the fly into
            that layout. ``"raw"`` returns member bytes (``.npy`` still parsed safely). A
            callable gets ``{suffix: bytes}`` and returns the sample dict.
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
        self.paths, self.entries, meta = _resolve(source, self.skipped)
        self.format: str = meta["format"]
        self.codec_id: str | None = meta["codec_id"]
        self.extra: dict = meta["extra"] or {}
        self.shuffle, self.seed = bool(shuffle), int(seed)
        self.metadata = bool(metadata)
        if shuffle_block is not None and int(shuffle_block) < 1:
            raise InvalidArgumentError(f"Invalid shuffle_block={shuffle_block!r}: must be >= 1.")
        self.shuffle_block = None if shuffle_block is None else int(shuffle_block)
        self.decode = decode
        self.clip_decoder = self._clip_decoder(decode)
        counts = np.array([int(e["samples"]) for e in self.entries], dtype=np.int64)
        self.shard_counts = counts
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.epoch = 0
        self._maps: dict[int, object] = {}  # mmap, or the error the shard raised
        self._tables: dict[str, tuple] = {}
        self._lock = threading.Lock()

    # -- description ---------------------------------------------------------------------

    def _clip_decoder(self, decode):
        from cvload.video import LAYOUTS, ClipDecoder

        if isinstance(decode, ClipDecoder):
            return decode
        if decode is None and self.format == "video":
            frames = int(self.extra.get("clip_frames", 16))
            return ClipDecoder("rgb", num_frames=frames, sampling="center")
        if isinstance(decode, str):
            if decode in LAYOUTS:
                frames = int(self.extra.get("clip_frames", 16))
                return ClipDecoder(decode, num_frames=frames if decode in ("rgb", "mvcgc") else 2)
            if decode != "raw":
                raise InvalidArgumentError(
                    f"Invalid decode {decode!r}. Supported values are None, 'raw', a layout "
                    f"({', '.join(map(repr, LAYOUTS))}), a ClipDecoder or a callable.")
        elif decode is not None and not callable(decode):
            raise InvalidArgumentError(f"decode must be a string, a ClipDecoder or a callable, "
                                       f"not {type(decode).__name__}")
        return None

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
            expected = self.entries[shard].get("bytes")
            if expected is not None and size != int(expected):
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
        entry = self.entries[shard]
        key = entry["keys"][local]
        return key, entry["members"][key]

    def _where(self, shard: int, key: str, suffix: str | None = None) -> str:
        name = os.path.basename(self.paths[shard])
        return f"{name}:{key}" + (f".{suffix}" if suffix else "")

    def _bytes(self, buffer, shard: int, key: str, suffix: str, span, stats: dict) -> memoryview:
        offset, size = int(span[0]), int(span[1])
        if offset + size > len(buffer):
            raise ShardError(f"shard is truncated: member ends at byte {offset + size}, the "
                             f"file has {len(buffer)}", source=self._where(shard, key, suffix))
        stats["bytes"] += size
        return memoryview(buffer)[offset:offset + size]

    def _check_safe(self, shard: int, key: str, members: dict) -> None:
        suffix = _unsafe_member(members)
        if suffix is not None:
            raise UnsafeShardError(f"member .{suffix} would need unpickling; the sample "
                                   "is refused", source=self._where(shard, key))

    def _read_sample(self, index: int, epoch: int, stats: dict | None = None) -> dict:
        """One sample as a dict of tensors (raises CvloadError subclasses)."""
        stats = self._new_stats() if stats is None else stats
        shard, local = self.locate(index)
        key, members = self._members(shard, local)
        self._check_safe(shard, key, members)
        buffer = self._map(shard)
        started = time.perf_counter()
        sample: dict = {"__key__": key, "__index__": index}
        raw: dict[str, object] = {}
        for suffix, span in members.items():
            if suffix == "json" and not self.metadata and self.decode is None:
                continue
            raw[suffix] = self._bytes(buffer, shard, key, suffix, span, stats)
        stats["read"] += time.perf_counter() - started
        started = time.perf_counter()
        try:
            sample.update(self._decode(raw, shard, key, index, epoch))
        except CvloadError:
            raise
        except (ValueError, KeyError, OSError, TypeError) as err:
            raise ShardError(f"sample cannot be decoded: {type(err).__name__}: {err}",
                             source=self._where(shard, key)) from err
        stats["decode"] += time.perf_counter() - started
        return sample

    def _decode(self, raw: dict, shard: int, key: str, index: int, epoch: int) -> dict:
        if callable(self.decode) and not isinstance(self.decode, str) and self.clip_decoder is None:
            return self.decode({s: bytes(v) for s, v in raw.items()})
        out: dict = {}
        frames: list[tuple[int, str]] = []
        for suffix, data in raw.items():
            where = self._where(shard, key, suffix)
            if suffix == "cls":
                out["label"] = torch.tensor(int(bytes(data).decode().strip()), dtype=torch.int64)
            elif suffix == "json":
                if self.metadata or self.decode == "raw":
                    out["json"] = json.loads(bytes(data))
            elif suffix.endswith("npy"):
                array = np.array(_npy_array(data, 0, len(data), where))  # own copy
                name = suffix[:-4] or "npy"
                if name == "rgb" and array.ndim == 4 and self.decode != "raw":
                    array = np.ascontiguousarray(np.moveaxis(array, -1, 1))
                out[name] = torch.from_numpy(array)
            elif suffix in VIDEO_MEMBERS and self.clip_decoder is not None:
                member = io.BytesIO(bytes(data))
                member.name = where
                rng = np.random.default_rng([self.seed, epoch, index])
                out.update(self.clip_decoder(member, rng=rng))
            elif _JPG.match(suffix) and self.decode != "raw":
                frames.append((int(_JPG.match(suffix).group(1)), suffix))
            else:
                out[suffix] = bytes(data)
        if frames:
            from PIL import Image

            images = [np.asarray(Image.open(io.BytesIO(bytes(raw[s]))).convert("RGB"))
                      for _, s in sorted(frames)]
            out["rgb"] = torch.from_numpy(np.ascontiguousarray(
                np.moveaxis(np.stack(images), -1, 1)))
        return out

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

    @staticmethod
    def _new_stats() -> dict:
        return {"read": 0.0, "decode": 0.0, "bytes": 0, "samples": 0, "skipped": Counter(),
                "substituted": 0, "cuda_in_worker": False}

    def _fast_codes(self, request: BatchRequest) -> bool:
        return (request.stacked and self.format == "codes" and self.decode is None
                and not self.metadata)

    @staticmethod
    def _counter(request: BatchRequest) -> SkipCounter:
        # "warn" is raised as a warning by the loader in the main process (a worker's
        # warnings would be lost); here failures are only counted
        return SkipCounter("skip" if request.handler == "warn" else request.handler)

    def fetch(self, request: BatchRequest) -> Fetched:
        """Read a batch. Failed samples follow ``request.handler``: they are counted and
        left out; when every sample of a batch failed, the next readable samples (in id
        order) stand in, so every rank still yields the same number of batches."""
        stats = self._new_stats()
        counter = self._counter(request)
        if self._fast_codes(request):
            started = time.perf_counter()
            rows = self._codes_rows(np.asarray(request, np.int64))
            batch = self._codes_assemble(rows, 0, len(request), counter, stats)
            stats["read"] += time.perf_counter() - started
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
        rows = self._codes_rows(np.asarray([i for r in requests for i in r], np.int64))
        share = (time.perf_counter() - started) / len(requests)
        results, at = [], 0
        for request in requests:
            stats, counter = self._new_stats(), self._counter(request)
            stats["read"] = share
            try:
                batch = self._codes_assemble(rows, at, at + len(request), counter, stats)
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
                stats: dict) -> Fetched:
        got = len(batch["__key__"]) if batch is not None else len(samples)
        if got == 0 and len(request) and counter.total:
            samples = self._substitutes(request, stats)
            stats["substituted"] = len(samples)
            batch = None
        if batch is None and request.stacked:
            batch = collate_samples(samples)
        stats["skipped"] = counter.counts
        stats["skip_examples"] = counter.examples
        stats["samples"] = got or stats["substituted"]
        stats["cuda_in_worker"] = bool(torch.utils.data.get_worker_info() is not None
                                       and torch.cuda.is_initialized())
        return Fetched(request.seq, batch if request.stacked else samples, stats, request.stacked)

    def _samples(self, ids: list[int], epoch: int, counter: SkipCounter,
                 stats: dict | None = None) -> list[dict]:
        samples = []
        for index in ids:
            try:
                samples.append(self._read_sample(int(index), epoch, stats))
            except CvloadError as err:
                counter.handle(err)
        return samples

    def _substitutes(self, request: BatchRequest, stats: dict) -> list[dict]:
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

    def _codes_tables(self) -> "_CodesTables":
        """Where every sample's ``codes.npy`` starts and how long it is, its label (the
        ``cls`` members, read once) and whether it must take the checked path (unsafe
        members, no codes, past the end of the file), over all shards. Built once per
        process, under a lock, before the first batch is copied; read-only afterwards,
        so reader threads can copy without the GIL while others look things up. The
        mapped shards stay referenced here, so the addresses the kernel reads stay valid."""
        tables = self._tables.get("codes")
        if tables is not None:
            return tables
        with self._lock:
            tables = self._tables.get("codes")
            if tables is None:
                tables = self._build_codes_tables()
                self._tables["codes"] = tables
        return tables

    def _build_codes_tables(self) -> "_CodesTables":
        total = len(self)
        starts = np.full(total, -1, np.int64)
        sizes = np.zeros(total, np.int64)
        labels = np.zeros(total, np.int64)
        labelled = np.zeros(total, bool)
        bad = np.ones(total, bool)
        empty = np.zeros(0, np.uint8)
        buffers = []
        _raise_open_files_limit(len(self.paths))
        for shard in range(len(self.paths)):
            try:
                buffer = self._map(shard)
            except CvloadError:  # missing: its samples stay "bad", the checked path raises
                buffers.append(empty)
                continue
            buffers.append(np.frombuffer(buffer, np.uint8) if len(buffer) else empty)
            first = int(self._starts[shard])
            entry = self.entries[shard]
            for local, key in enumerate(entry["keys"]):
                members = entry["members"][key]
                span = members.get("codes.npy")
                g = first + local
                if span is None or _unsafe_member(members) is not None:
                    continue
                starts[g], sizes[g] = int(span[0]), int(span[1])
                broken = int(span[0]) + int(span[1]) > len(buffer)
                cls = members.get("cls")
                if cls is not None:
                    lo, hi = int(cls[0]), int(cls[0]) + int(cls[1])
                    try:
                        labels[g] = int(bytes(buffer[lo:hi])) if hi <= len(buffer) else 0
                        labelled[g] = True
                        broken |= hi > len(buffer)
                    except ValueError:
                        broken = True
                bad[g] = broken
        addresses = np.array([b.ctypes.data for b in buffers], np.int64)
        lengths = np.array([len(b) for b in buffers], np.int64)
        keys = [k for e in self.entries for k in e["keys"]]
        return _CodesTables(starts, sizes, labels, labelled, bad, buffers, addresses, lengths,
                            keys)

    def _codes_template(self, tables, ids_array, shard_of, eligible) -> tuple | None:
        """``(size, header, shape, dtype)`` of the batch's first eligible sample, its
        ``.npy`` header parsed without pickle; None when none parses."""
        for row in np.flatnonzero(eligible)[:4].tolist():
            g, shard = int(ids_array[row]), int(shard_of[row])
            where = self._where(shard, tables.keys[g], "codes.npy")
            start, size = int(tables.starts[g]), int(tables.sizes[g])
            try:
                array = _npy_array(tables.buffers[shard], start, size, where)
            except CvloadError:
                continue
            payload = array.size * array.dtype.itemsize
            header = np.array(tables.buffers[shard][start:start + size - payload])
            return size, header, array.shape, array.dtype
        return None

    def _codes_rows(self, ids_array: np.ndarray) -> "_CodesRows":
        """Fast path: same-shaped code arrays copied straight from the memory-mapped
        shards into one preallocated array by one numba kernel call (no GIL held). The
        ``.npy`` header of one sample is parsed (never unpickled) and kept as the
        template while batches match it; every sample's header must equal it byte for
        byte. Rows that fail are left for the checked path (see _codes_assemble)."""
        total = len(ids_array)
        if total and (ids_array.min() < 0 or ids_array.max() >= len(self)):
            raise IndexError(f"sample ids out of range for {len(self)} samples")
        shard_of = np.searchsorted(self._starts, ids_array, side="right") - 1
        tables = self._codes_tables()
        eligible = ~tables.bad[ids_array]
        sizes = tables.sizes[ids_array]
        ok = np.zeros(total, bool)
        out = None
        template = self._tables.get("template")
        for attempt in range(2):
            if template is None or attempt:
                template = self._codes_template(tables, ids_array, shard_of, eligible)
                if template is None:
                    break
                self._tables["template"] = template
            size, header, shape, dtype = template
            fast = eligible & (sizes == size)
            out = np.empty((total,) + shape, dtype)
            flat = out.reshape(total, -1).view(np.uint8)
            rows = np.flatnonzero(fast)
            got = np.zeros(len(rows), bool)
            gather_spans(tables.addresses, tables.lengths, shard_of[rows],
                         tables.starts[ids_array[rows]], header, flat, rows, got)
            ok[rows[got]] = True
            if ok.any() or not eligible.any():
                break  # else the shape changed since the template: take this batch's
        return _CodesRows(ids_array, shard_of, sizes, ok, out, tables)

    def _codes_assemble(self, rows: "_CodesRows", lo: int, hi: int, counter: SkipCounter,
                        stats: dict) -> dict:
        """The batch of rows ``lo:hi``; failed rows go through the checked per-sample path,
        which raises (or counts) the precise reason."""
        ids_array, sizes, ok, out = (rows.ids[lo:hi], rows.sizes[lo:hi], rows.ok[lo:hi],
                                     None if rows.out is None else rows.out[lo:hi])
        if not ok.all():
            for row in np.flatnonzero(~ok).tolist():
                index = int(ids_array[row])
                try:
                    sample = self._read_sample(index, 0, self._new_stats())
                    raise ShardError(
                        f"codes {tuple(sample['codes'].shape) if 'codes' in sample else 'missing'}"
                        f" do not match the batch's {None if out is None else out.shape[1:]}",
                        source=self._where(int(rows.shard_of[lo + row]), sample["__key__"]))
                except CvloadError as err:
                    counter.handle(err)
            if out is None or not ok.any():
                return {"__key__": []}
            out, ids_array, sizes = out[ok], ids_array[ok], sizes[ok]
        stats["bytes"] += int(sizes.sum())
        tables = rows.tables
        keys = tables.keys
        batch = {"codes": torch.from_numpy(out), "__key__": [keys[i] for i in ids_array.tolist()],
                 "__index__": torch.from_numpy(ids_array)}
        if tables.labelled[ids_array].any():
            batch["label"] = torch.from_numpy(tables.labels[ids_array])
        return batch


class _CodesRows(NamedTuple):
    ids: np.ndarray
    shard_of: np.ndarray
    sizes: np.ndarray
    ok: np.ndarray
    out: np.ndarray | None
    tables: "_CodesTables"


class _CodesTables(NamedTuple):
    starts: np.ndarray
    sizes: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray
    bad: np.ndarray
    buffers: list  # the mapped shards: they stay alive while their addresses are used
    addresses: np.ndarray
    lengths: np.ndarray
    keys: list
