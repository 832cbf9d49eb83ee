"""Writing WebDataset tar shards: deterministic bytes, atomic publication, member offsets."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field

import numpy as np

from cvload.errors import InvalidArgumentError, ShardError

__all__ = ["ShardWriter", "ShardInfo", "encode_member"]


@dataclass(frozen=True)
class ShardInfo:
    """What the index records of one shard (an ``index.json`` entry).

    ``keys``: sample keys in tar order. ``members``: ``{key: {suffix: [data offset,
    size]}}`` byte ranges inside the tar, so a reader can fetch one member (or a whole
    batch) without scanning the archive. ``sha256`` is ``None`` for a shard scanned
    without an index.
    """

    name: str
    samples: int
    bytes: int
    sha256: str | None
    keys: tuple[str, ...] = ()
    members: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        if len(self.keys) != int(self.samples):
            raise ShardError(f"index entry lists {len(self.keys)} keys for {self.samples} "
                             "samples", source=self.name, hint="re-pack this dataset")

    def member(self, local: int) -> tuple[str, dict]:
        """The key and ``{suffix: [offset, size]}`` of the shard's ``local``-th sample."""
        key = self.keys[local]
        return key, self.members[key]

    def to_dict(self) -> dict:
        return {"name": self.name, "samples": int(self.samples), "bytes": int(self.bytes),
                "sha256": self.sha256, "keys": list(self.keys), "members": self.members}

    @classmethod
    def from_dict(cls, data: dict, *, source: str | None = None) -> "ShardInfo":
        """An entry as read from JSON (unknown fields, such as a sidecar's ``failures``,
        are ignored); a missing field is a :class:`ShardError` naming ``source``."""
        try:
            return cls(str(data["name"]), int(data["samples"]), int(data["bytes"]),
                       data.get("sha256"), tuple(data["keys"]), dict(data["members"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ShardError(f"malformed shard entry ({type(err).__name__}: {err})",
                             source=source or str(data.get("name", "?")),
                             hint="re-pack this dataset") from err


def encode_member(value) -> bytes:
    """Serialise a member: ndarray -> .npy (never pickled), dict -> JSON, int -> text, bytes."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise InvalidArgumentError("object arrays cannot be stored: shards never hold pickles")
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return buffer.getvalue()
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value)).encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise InvalidArgumentError(f"cannot store a member of type {type(value).__name__}")


class ShardWriter:
    """Write one shard to ``NAME.partial`` and rename it to ``NAME`` on :meth:`close`.

    Tar headers are fixed (mtime 0, uid/gid 0, mode 0644, no user names), so the same
    samples always give the same bytes. A reader never sees a half-written shard: until
    the rename the file has another name, and :meth:`abort` removes it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.partial = self.path + ".partial"
        self._file = open(self.partial, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
        self.keys: list[str] = []
        self.members: dict[str, dict[str, list[int]]] = {}
        self._closed = False

    def write(self, key: str, sample: dict) -> None:
        """Add a sample: ``{suffix: value}`` with suffixes like ``codes.npy``, ``json``, ``cls``."""
        if not key or "." in key or "/" in key:
            raise InvalidArgumentError(f"Invalid sample key {key!r}: no dots or slashes.")
        if key in self.members:
            raise InvalidArgumentError(f"duplicate sample key {key!r} in {self.path}")
        ranges: dict[str, list[int]] = {}
        for suffix in sorted(sample):
            data = encode_member(sample[suffix])
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            header_at = self._file.tell()
            self._tar.addfile(info, io.BytesIO(data))
            ranges[suffix] = [header_at + tarfile.BLOCKSIZE, len(data)]
        self.keys.append(key)
        self.members[key] = ranges

    def close(self) -> ShardInfo:
        """Finish the tar, fsync, publish by rename; returns the shard's index entry."""
        if self._closed:
            raise ShardError("shard already closed", source=self.path)
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._closed = True
        digest = hashlib.sha256()
        with open(self.partial, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        size = os.path.getsize(self.partial)
        os.replace(self.partial, self.path)
        return ShardInfo(os.path.basename(self.path), len(self.keys), size, digest.hexdigest(),
                         list(self.keys), self.members)

    def abort(self) -> None:
        """Drop the partial file (after an error)."""
        if not self._closed:
            self._closed = True
            try:
                self._tar.close()
            finally:
                self._file.close()
        if os.path.exists(self.partial):
            os.remove(self.partial)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
