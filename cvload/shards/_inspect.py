"""``cvload inspect``: what a shard directory (or one shard) holds, and --verify."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np

from cvload._util import sha256_file
from cvload.errors import ShardError, UnsafeShardError
from cvload.shards._index import read_index

__all__ = ["inspect_shards", "decode_member", "UNSAFE_SUFFIXES"]

UNSAFE_SUFFIXES = (".pyd", ".pickle", ".pkl", ".pth", ".pt")


def decode_member(name: str, data: bytes, *, source: str = "") -> object:
    """Decode one member by suffix, never unpickling: .npy (allow_pickle=False), .json,
    .cls, video bytes (probed). Pickle-bearing suffixes raise UnsafeShardError."""
    where = f"{source}:{name}" if source else name
    if name.endswith(UNSAFE_SUFFIXES):
        raise UnsafeShardError(f"member {name} would need unpickling", source=source or None)
    try:
        if name.endswith(".npy"):
            return np.load(io.BytesIO(data), allow_pickle=False)
        if name.endswith(".json"):
            return json.loads(data)
        if name.endswith(".cls"):
            return int(data.decode().strip())
        if name.endswith((".mp4", ".264", ".h265", ".mkv", ".webm", ".avi")):
            from cvload.video import probe

            return probe(data)
    except ValueError as err:  # includes object arrays refused by allow_pickle=False
        raise ShardError(f"member {name} cannot be decoded: {err}", source=where) from err
    return data


def inspect_shards(target: str | os.PathLike[str], *, verify: bool = False,
                   print_fn=print) -> dict:
    """Print the index summary, sample keys, member shapes and dtypes; with ``verify``,
    check every shard's sha256 and decode every sample. Returns the counts."""
    target = os.fspath(target)
    problems: list[str] = []
    if os.path.isdir(target):
        index = read_index(target)
        print_fn(f"{target}: format {index.format}, {len(index.shards)} shards, "
                 f"{index.num_samples} samples, {index.num_bytes} bytes, codec "
                 f"{index.codec_id or '-'}, schema {index.schema_version}")
        shards = [(os.path.join(target, s.name), s) for s in index.shards]
    else:
        shards = [(target, None)]
    samples = 0
    for path, entry in shards:
        if not os.path.exists(path):
            problems.append(f"{path}: missing")
            continue
        if verify and entry is not None and sha256_file(path) != entry.sha256:
            problems.append(f"{path}: sha256 differs from index.json")
        try:
            with tarfile.open(path, "r:") as tar:
                members = tar.getmembers()
                keys = sorted({m.name.split(".", 1)[0] for m in members})
                samples += len(keys)
                print_fn(f"  {os.path.basename(path)}: {len(keys)} samples, "
                         f"{os.path.getsize(path)} bytes")
                for member in members[: 8 if not verify else len(members)]:
                    data = tar.extractfile(member).read()
                    try:
                        value = decode_member(member.name, data, source=path)
                    except ShardError as err:
                        problems.append(str(err).splitlines()[0])
                        continue
                    if isinstance(value, np.ndarray):
                        desc = f"{value.dtype} {tuple(value.shape)}"
                    elif hasattr(value, "num_frames"):
                        desc = f"{value.codec} {value.width}x{value.height} {value.num_frames} frames"
                    else:
                        desc = type(value).__name__
                    if member in members[:8]:
                        print_fn(f"    {member.name}: {desc}")
        except tarfile.TarError as err:
            problems.append(f"{path}: not a readable tar ({err})")
    for p in problems:
        print_fn(f"  PROBLEM {p}")
    if verify:
        print_fn("verify: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return {"shards": len(shards), "samples": samples, "problems": problems}
