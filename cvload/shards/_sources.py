"""Finding shards: directories with ``index.json``, paths, brace patterns and globs; tars
without an index are scanned from their headers (no member data is read)."""

from __future__ import annotations

import glob
import os
import re
import tarfile

from cvload.errors import InvalidArgumentError, ShardError, SkipCounter
from cvload.shards._index import read_index
from cvload.shards._inspect import UNSAFE_SUFFIXES
from cvload.shards._writer import ShardInfo

__all__ = ["IMAGE_MEMBER", "VIDEO_MEMBERS", "expand_sources", "resolve_sources", "unsafe_member",
           "raise_open_files_limit"]

VIDEO_MEMBERS = ("mp4", "264", "h265", "mkv", "webm", "avi")
IMAGE_MEMBER = re.compile(r"^(\d+)\.(jpg|jpeg|png)$")


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


def unsafe_member(members) -> str | None:
    """The first member suffix that would need unpickling (``.pyd``, ``.pickle`` ...)."""
    for suffix in members:
        if ("." + suffix).endswith(UNSAFE_SUFFIXES):
            return suffix
    return None


def raise_open_files_limit(wanted: int) -> None:
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


def _scan_tar(path: str) -> ShardInfo:
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
    return ShardInfo(os.path.basename(path), len(keys), os.path.getsize(path), None,
                     tuple(keys), members)


def resolve_sources(source, handler: SkipCounter) -> tuple[list[str], list[ShardInfo], dict]:
    """Shard paths, their index entries and the index fields (format, codec id...)."""
    meta: dict = {"format": None, "codec_id": None, "extra": {}}
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        index = read_index(source)
        meta.update(format=index.format, codec_id=index.codec_id, extra=index.extra)
        paths = [os.path.join(os.fspath(source), s.name) for s in index.shards]
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
                indexes[directory] = {"by_name": {s.name: s for s in index.shards},
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


def _guess_format(entries: list[ShardInfo]) -> str:
    for entry in entries:
        for members in entry.members.values():
            if "codes.npy" in members:
                return "codes"
            if any(s in members for s in VIDEO_MEMBERS):
                return "video"
            if "rgb.npy" in members or any(IMAGE_MEMBER.match(s) for s in members):
                return "rgb"
    return "unknown"
