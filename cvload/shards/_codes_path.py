"""The codes fast path of :class:`~cvload.shards.ShardDataset`: a whole batch of
same-shaped ``codes.npy`` members copied from the memory-mapped shards into one array by
one numba kernel call, with labels from per-process tables; anything unusual (another
shape, a broken member) falls back to the dataset's checked per-sample path, which names
the reason."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from cvload.batching import BatchStats
from cvload.errors import CvloadError, ShardError, SkipCounter
from cvload.shards._npy import npy_array
from cvload.shards._sources import raise_open_files_limit, unsafe_member
from cvload_ext import gather_spans

__all__ = ["CodesRows", "CodesTables", "codes_assemble", "codes_rows", "codes_tables"]


class CodesRows(NamedTuple):
    ids: np.ndarray
    shard_of: np.ndarray
    sizes: np.ndarray
    ok: np.ndarray
    out: np.ndarray | None
    tables: "CodesTables"


class CodesTables(NamedTuple):
    starts: np.ndarray
    sizes: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray
    bad: np.ndarray
    buffers: list  # the mapped shards: they stay alive while their addresses are used
    addresses: np.ndarray
    lengths: np.ndarray
    keys: list


def codes_tables(ds) -> CodesTables:
    """Where every sample's ``codes.npy`` starts and how long it is, its label (the
    ``cls`` members, read once) and whether it must take the checked path (unsafe
    members, no codes, past the end of the file), over all shards. Built once per
    process, under a lock, before the first batch is copied; read-only afterwards,
    so reader threads can copy without the GIL while others look things up. The
    mapped shards stay referenced here, so the addresses the kernel reads stay valid."""
    tables = ds._tables.get("codes")
    if tables is not None:
        return tables
    with ds._lock:
        tables = ds._tables.get("codes")
        if tables is None:
            tables = _build_codes_tables(ds)
            ds._tables["codes"] = tables
    return tables

def _build_codes_tables(ds) -> CodesTables:
    total = len(ds)
    starts = np.full(total, -1, np.int64)
    sizes = np.zeros(total, np.int64)
    labels = np.zeros(total, np.int64)
    labelled = np.zeros(total, bool)
    bad = np.ones(total, bool)
    empty = np.zeros(0, np.uint8)
    buffers = []
    raise_open_files_limit(len(ds.paths))
    for shard in range(len(ds.paths)):
        try:
            buffer = ds._map(shard)
        except CvloadError:  # missing: its samples stay "bad", the checked path raises
            buffers.append(empty)
            continue
        buffers.append(np.frombuffer(buffer, np.uint8) if len(buffer) else empty)
        first = int(ds._starts[shard])
        entry = ds.entries[shard]
        for local, key in enumerate(entry.keys):
            members = entry.members[key]
            span = members.get("codes.npy")
            g = first + local
            if span is None or unsafe_member(members) is not None:
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
    keys = [k for e in ds.entries for k in e.keys]
    return CodesTables(starts, sizes, labels, labelled, bad, buffers, addresses, lengths,
                        keys)

def _codes_template(ds, tables, ids_array, shard_of, eligible) -> tuple | None:
    """``(size, header, shape, dtype)`` of the batch's first eligible sample, its
    ``.npy`` header parsed without pickle; None when none parses."""
    for row in np.flatnonzero(eligible)[:4].tolist():
        g, shard = int(ids_array[row]), int(shard_of[row])
        where = ds._where(shard, tables.keys[g], "codes.npy")
        start, size = int(tables.starts[g]), int(tables.sizes[g])
        try:
            array = npy_array(tables.buffers[shard], start, size, where)
        except CvloadError:
            continue
        payload = array.size * array.dtype.itemsize
        header = np.array(tables.buffers[shard][start:start + size - payload])
        return size, header, array.shape, array.dtype
    return None

def codes_rows(ds, ids_array: np.ndarray) -> CodesRows:
    """Fast path: same-shaped code arrays copied straight from the memory-mapped
    shards into one preallocated array by one numba kernel call (no GIL held). The
    ``.npy`` header of one sample is parsed (never unpickled) and kept as the
    template while batches match it; every sample's header must equal it byte for
    byte. Rows that fail are left for the checked path (see _codes_assemble)."""
    total = len(ids_array)
    if total and (ids_array.min() < 0 or ids_array.max() >= len(ds)):
        raise IndexError(f"sample ids out of range for {len(ds)} samples")
    shard_of = np.searchsorted(ds._starts, ids_array, side="right") - 1
    tables = codes_tables(ds)
    eligible = ~tables.bad[ids_array]
    sizes = tables.sizes[ids_array]
    ok = np.zeros(total, bool)
    out = None
    template = ds._tables.get("template")
    for attempt in range(2):
        if template is None or attempt:
            template = _codes_template(ds, tables, ids_array, shard_of, eligible)
            if template is None:
                break
            ds._tables["template"] = template
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
    return CodesRows(ids_array, shard_of, sizes, ok, out, tables)

def codes_assemble(ds, rows: CodesRows, lo: int, hi: int, counter: SkipCounter,
                    stats: BatchStats) -> dict:
    """The batch of rows ``lo:hi``; failed rows go through the checked per-sample path,
    which raises (or counts) the precise reason."""
    ids_array, sizes, ok, out = (rows.ids[lo:hi], rows.sizes[lo:hi], rows.ok[lo:hi],
                                 None if rows.out is None else rows.out[lo:hi])
    if not ok.all():
        for row in np.flatnonzero(~ok).tolist():
            index = int(ids_array[row])
            try:
                sample = ds._read_sample(index, 0, BatchStats())
                raise ShardError(
                    f"codes {tuple(sample['codes'].shape) if 'codes' in sample else 'missing'}"
                    f" do not match the batch's {None if out is None else out.shape[1:]}",
                    source=ds._where(int(rows.shard_of[lo + row]), sample["__key__"]))
            except CvloadError as err:
                counter.handle(err)
        if out is None or not ok.any():
            return {"__key__": []}
        out, ids_array, sizes = out[ok], ids_array[ok], sizes[ok]
    stats.bytes += int(sizes.sum())
    tables = rows.tables
    keys = tables.keys
    batch = {"codes": torch.from_numpy(out), "__key__": [keys[i] for i in ids_array.tolist()],
             "__index__": torch.from_numpy(ids_array)}
    if tables.labelled[ids_array].any():
        batch["label"] = torch.from_numpy(tables.labels[ids_array])
    return batch
