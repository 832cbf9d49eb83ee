"""Work units: one planned shard written by :func:`write_shard` (any engine runs it: the
calling process, a process pool, Ray Data), and the sidecars that say a unit is done."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import av

from cvload._util import atomic_write
from cvload.errors import CvloadError, Handler, ShardError
from cvload.shards._samples import Clip, Format, PackedVideo, _load_codec, _make_sample
from cvload.shards._writer import ShardInfo, ShardWriter

__all__ = ["PackSpec", "PlannedShard", "Sidecar", "write_shard"]

@dataclass(frozen=True)
class PackSpec:
    """What every work unit of one pack run shares: the staging folder ``out``, the
    format, the codec file and device (``codes``), the frame size (``rgb``), the error
    policy and the probed videos."""

    out: str
    format: Format
    codec: str | None
    size: tuple[int, int] | None
    handler: Handler
    device: str
    videos: tuple[PackedVideo, ...]


@dataclass(frozen=True)
class PlannedShard:
    """One work unit: the staged tar ``name`` and the clips it holds, in plan order."""

    name: str
    clips: tuple[Clip, ...]

    def to_dict(self) -> dict:
        """The JSON form (what ``pack-plan.json``'s digest covers and Ray rows carry)."""
        return {"name": self.name, "clips": [asdict(c) for c in self.clips]}

    @classmethod
    def from_dict(cls, data: dict) -> "PlannedShard":
        return cls(data["name"], tuple(Clip(c["video"], c["start"], c["frames"])
                                       for c in data["clips"]))


@dataclass(frozen=True)
class Sidecar:
    """``NAME.json`` beside a finished tar: its :class:`ShardInfo` and the clips that
    failed (``{"source", "clip_start", "error", "reason"}`` records for
    ``failures.jsonl``)."""

    info: ShardInfo
    failures: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        return {**self.info.to_dict(), "failures": list(self.failures)}

    @classmethod
    def from_dict(cls, data: dict, *, source: str | None = None) -> "Sidecar":
        return cls(ShardInfo.from_dict(data, source=source), tuple(data.get("failures", [])))


def write_shard(spec: PackSpec, shard: PlannedShard) -> Sidecar:
    """Write one planned shard (a work unit any engine can run) and its sidecar. Under
    handler="raise" a failure raises and no part of the shard is published."""
    out_dir = spec.out
    path = os.path.join(out_dir, shard.name)
    codec = _load_codec(spec.codec, spec.device)
    failures = []
    writer = ShardWriter(path)
    try:
        for clip in shard.clips:
            video = spec.videos[clip.video]
            key = f"{video.id}_{clip.start:06d}"
            try:
                try:
                    sample = _make_sample(spec, clip, video, codec, spec.size)
                except (av.error.FFmpegError, ValueError, RuntimeError, OSError) as err:
                    if isinstance(err, CvloadError):
                        raise
                    # a library error on one sample is that sample's failure, never a crash
                    raise ShardError(f"clip at frame {clip.start}: {type(err).__name__}: {err}",
                                     source=video.path) from err
            except CvloadError as err:
                if spec.handler == "raise":
                    raise
                failures.append({"source": video.path, "clip_start": clip.start,
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
        raise ShardError(f"cannot write {shard.name}: {err.strerror or err}",
                         source=out_dir, hint=hint) from err
    except BaseException:
        writer.abort()
        raise
    sidecar = Sidecar(info, tuple(failures))
    _write_json(path + ".json", sidecar.to_dict())
    return sidecar

class _RayShardTask:
    """Ray Data callable: one row = one planned shard, written by :func:`write_shard`."""

    def __init__(self, spec: PackSpec) -> None:
        self.spec = spec

    def __call__(self, row: dict) -> dict:
        sidecar = write_shard(self.spec, PlannedShard.from_dict(json.loads(row["shard"])))
        return {"name": sidecar.info.name, "samples": sidecar.info.samples,
                "bytes": sidecar.info.bytes}

def _run_ray(spec: PackSpec, units: list[PlannedShard], workers: int) -> int:
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
    dataset = ray.data.from_items([{"shard": json.dumps(u.to_dict())} for u in units])
    rows = dataset.map(_RayShardTask, fn_constructor_kwargs={"spec": spec},
                       concurrency=max(1, workers), num_gpus=gpus).take_all()
    return len(rows)

def _worker_init(workers: int) -> None:
    """Share the cores between worker processes instead of oversubscribing them."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))

def _finished(out_dir: str, name: str) -> Sidecar | None:
    """The sidecar of a finished tar ``name``; ``None`` when either is missing, the
    sidecar is unreadable or the tar's size differs from what it records."""
    tar, side = os.path.join(out_dir, name), os.path.join(out_dir, name + ".json")
    if not (os.path.exists(tar) and os.path.exists(side)):
        return None
    try:
        with open(side) as f:
            sidecar = Sidecar.from_dict(json.load(f), source=side)
    except (OSError, json.JSONDecodeError, ShardError):
        return None
    return sidecar if sidecar.info.bytes == os.path.getsize(tar) else None


def _write_json(path: str, value) -> None:
    with atomic_write(path) as f:
        json.dump(value, f, sort_keys=True)
