"""Work units: one planned shard written by :func:`write_shard` (any engine runs it: the
calling process, a process pool, Ray Data), and the sidecars that say a unit is done."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import av

from cvload._util import atomic_write
from cvload.errors import CvloadError, Handler, ShardError
from cvload.shards._samples import Clip, Format, _load_codec, _make_sample
from cvload.shards._writer import ShardWriter

__all__ = ["PackSpec", "write_shard"]

@dataclass(frozen=True)
class PackSpec:
    """What every work unit of one pack run shares: the staging folder ``out``, the
    format, the codec file and device (``codes``), the frame size (``rgb``), the error
    policy and the probed videos (``id``, ``path``, ``label``, ``info``, ``sha256``)."""

    out: str
    format: Format
    codec: str | None
    size: tuple[int, int] | None
    handler: Handler
    device: str
    videos: tuple


def write_shard(spec: PackSpec, shard: dict) -> dict:
    """Write one planned shard (a work unit any engine can run). Returns its sidecar dict:
    the ShardInfo plus the failures met. Under handler="raise" a failure raises and no
    part of the shard is published."""
    out_dir = spec.out
    path = os.path.join(out_dir, shard["name"])
    codec = _load_codec(spec.codec, spec.device)
    failures = []
    writer = ShardWriter(path)
    try:
        for item in shard["clips"]:
            video = spec.videos[item["video"]]
            clip = Clip(item["video"], item["start"], item["frames"])
            key = f"{video['id']}_{clip.start:06d}"
            try:
                try:
                    sample = _make_sample(spec, clip, video, codec, spec.size)
                except (av.error.FFmpegError, ValueError, RuntimeError, OSError) as err:
                    if isinstance(err, CvloadError):
                        raise
                    # a library error on one sample is that sample's failure, never a crash
                    raise ShardError(f"clip at frame {clip.start}: {type(err).__name__}: {err}",
                                     source=video["path"]) from err
            except CvloadError as err:
                if spec.handler == "raise":
                    raise
                failures.append({"source": video["path"], "clip_start": clip.start,
                                 "error": type(err).__name__, "reason": str(err)})
                continue
            writer.write(key, sample)
        info = writer.close()
    except OSError as err:
        writer.abort()
        if isinstance(err, CvloadError):
            raise
        import errno

        hint = ("free some space or choose another --out; finished shards are kept and a "
                "rerun resumes" if err.errno in (errno.ENOSPC, errno.EDQUOT) else
                "check that --out is writable; a rerun resumes from the finished shards")
        raise ShardError(f"cannot write {shard['name']}: {err.strerror or err}",
                         source=out_dir, hint=hint) from err
    except BaseException:
        writer.abort()
        raise
    sidecar = {**info.to_dict(), "failures": failures}
    _write_json(path + ".json", sidecar)
    return sidecar

class _RayShardTask:
    """Ray Data callable: one row = one planned shard, written by :func:`write_shard`."""

    def __init__(self, spec: PackSpec) -> None:
        self.spec = spec

    def __call__(self, row: dict) -> dict:
        sidecar = write_shard(self.spec, json.loads(row["shard"]))
        return {"name": sidecar["name"], "samples": sidecar["samples"], "bytes": sidecar["bytes"]}

def _run_ray(spec: PackSpec, units: list[dict], workers: int) -> int:
    """Run the shard units on Ray Data (local or a cluster already initialised)."""
    try:
        import ray
    except ImportError as err:
        from cvload.errors import MissingDependencyError

        raise MissingDependencyError(
            "engine 'ray' needs Ray Data", hint="pip install 'cvload[ray]'") from err
    if not ray.is_initialized():
        ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    gpus = 0
    if spec.format == "codes" and spec.device.startswith("cuda"):
        gpus = 1  # each shard task holds one GPU for the codec
    dataset = ray.data.from_items([{"shard": json.dumps(u)} for u in units])
    rows = dataset.map(_RayShardTask, fn_constructor_kwargs={"spec": spec},
                       concurrency=max(1, workers), num_gpus=gpus).take_all()
    return len(rows)

def _worker_init(workers: int) -> None:
    """Share the cores between worker processes instead of oversubscribing them."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))

def _finished(out_dir: str, name: str) -> dict | None:
    tar, side = os.path.join(out_dir, name), os.path.join(out_dir, name + ".json")
    if not (os.path.exists(tar) and os.path.exists(side)):
        return None
    try:
        with open(side) as f:
            sidecar = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return sidecar if sidecar.get("bytes") == os.path.getsize(tar) else None


def _write_json(path: str, value) -> None:
    with atomic_write(path) as f:
        json.dump(value, f, sort_keys=True)
