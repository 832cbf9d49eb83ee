"""``index.json``: the table of contents beside the shards."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Literal

from cvload._util import atomic_write
from cvload.errors import ShardError
from cvload.shards._writer import ShardInfo

__all__ = ["SCHEMA_VERSION", "ShardIndex", "write_index", "read_index"]

SCHEMA_VERSION = 1


@dataclass
class ShardIndex:
    """Schema version, format (``codes`` | ``video`` | ``rgb``), codec id (codes only) and
    per shard a :class:`ShardInfo` (name, sample count, bytes, sha256, keys and member
    byte ranges)."""

    format: Literal["codes", "video", "rgb"]
    shards: list[ShardInfo] = field(default_factory=list)
    codec_id: str | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def num_bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    def to_dict(self) -> dict:
        return {"schema_version": self.schema_version, "format": self.format,
                "codec_id": self.codec_id, "num_samples": self.num_samples,
                "num_bytes": self.num_bytes, "extra": self.extra, "shards": [s.to_dict() for s in self.shards]}


def write_index(directory: str | os.PathLike[str], index: ShardIndex) -> str:
    path = os.path.join(os.fspath(directory), "index.json")
    with atomic_write(path, durable=True) as f:
        json.dump(index.to_dict(), f, indent=1, sort_keys=True)
    return path


def read_index(directory: str | os.PathLike[str]) -> ShardIndex:
    path = os.path.join(os.fspath(directory), "index.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError as err:
        raise ShardError("no index.json", source=os.fspath(directory),
                         hint="point at a directory written by `cvload pack`") from err
    except json.JSONDecodeError as err:
        raise ShardError(f"index.json is not valid JSON: {err}", source=path) from err
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ShardError(f"index schema version {version!r} is not {SCHEMA_VERSION}",
                         source=path, hint="re-pack with this cvload version")
    shards = [ShardInfo.from_dict(s, source=path) for s in data.get("shards", [])]
    return ShardIndex(format=data["format"], shards=shards, codec_id=data.get("codec_id"),
                      schema_version=version, extra=data.get("extra", {}))
