"""``cvload.shards.pack`` (``cvload pack``): videos -> WebDataset tar shards (formats ``codes``, ``video``, ``rgb``).

The work is planned first (probe every video, cut clips, group the clips into work units
in a fixed order). Each unit is independent: its samples go to ``.staging/unit-N.tar``,
written to a temporary name, renamed when complete and described by a sidecar. A clip
that fails is left out of its unit (and listed in ``failures.jsonl``), so the final
shards are assembled only when every unit is there: the good samples, in plan order,
copied into ``shard-N.tar`` of exactly ``shard_samples`` each (the last may hold fewer;
none is empty). A rerun skips finished units and shards, so an interrupted run (even by
SIGKILL) finishes with the same bytes as an uninterrupted one. ``index.json`` is written
last, then the staging folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence


from cvload._util import atomic_write, sha256_file
from cvload.errors import CvloadError, Handler, InvalidArgumentError, ShardError, check_handler
from cvload.shards._index import ShardIndex, write_index
from cvload.shards._writer import ShardWriter
from cvload.shards._inputs import gather_inputs
from cvload.shards._samples import FORMATS, Clip, Format, PackedVideo, _plan_video
from cvload.shards._units import (
    PackSpec, PlannedShard, Sidecar, _finished, _run_ray, _worker_init, _write_json, write_shard)

__all__ = ["pack", "PackResult"]


@dataclass
class PackResult:
    """Summary of a pack run: ``clips`` samples in ``shards`` published shards (0 until
    every work unit is done), ``skipped_shards`` work units found finished."""

    out: str
    format: Format
    videos: int
    clips: int
    shards: int
    bytes: int
    source_bytes: int
    failures: int
    skipped_shards: int
    seconds: float
    index: str | None = None
    failure_log: str | None = None
    units: int = 0  # work units planned (``skipped_shards`` counts those already done)

    @property
    def compression(self) -> float:
        """Source file bytes over shard bytes."""
        return self.source_bytes / self.bytes if self.bytes else float("nan")

def _claim_directory(out: str, spec: PackSpec, shards: list[PlannedShard], codec,
                     per_shard: int) -> None:
    """Record what this run will write; refuse a directory holding another run's shards
    (skipping "finished" shards of a different plan would mix datasets silently)."""
    plan = {"format": spec.format, "size": spec.size,
            "codec_id": codec.codec_id if codec is not None else None,
            "videos": [[v.id, v.sha256, v.label] for v in spec.videos],
            "shards": [s.to_dict() for s in shards], "per_shard": per_shard}
    digest = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
    path = os.path.join(out, "pack-plan.json")
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f).get("digest")
        if previous != digest:
            raise ShardError(
                "this directory holds shards of a different pack run (other inputs, format, "
                "codec or options)", source=out,
                hint="use a new --out directory, or delete this one to start over")
        return
    _write_json(path, {"digest": digest, "shards": len(shards), "format": spec.format})

def _estimate_clip_bytes(fmt, videos, clips, clip_frames, codec, size) -> int:
    """Bytes one sample takes, estimated before any work: exact for codes and rgb arrays
    (plus tar headers and metadata), the source's bytes per frame for video segments."""
    overhead = 3 * 512 + 1024  # tar headers and padding, json, cls
    if fmt == "codes":
        return codec.compression_ratio((clip_frames, *codec.config.size)).code_bytes + overhead
    if fmt == "rgb":
        return clip_frames * size[0] * size[1] * 3 + 128 + overhead
    frames = sum(c.frames for c in clips) or 1
    per_frame = sum(os.path.getsize(v.path) / max(1, v.info.num_frames) for v in videos)
    return int(per_frame / max(1, len(videos)) * frames / max(1, len(clips))) + overhead

_STAGING = ".staging"

_ASSEMBLY = "pack-assembly.json"

def _read_assembly(out: str) -> dict | None:
    try:
        with open(os.path.join(out, _ASSEMBLY)) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None

def _assemble(out: str, staging: str, units: list[Sidecar], per_shard: int) -> dict:
    """Copy the staged samples, in plan order, into shards of exactly ``per_shard``
    samples (the last may hold fewer). Deterministic: the same units give the same
    bytes, so a run killed here and rerun ends identically."""
    good = [(u.info.name, key) for u in units for key in u.info.keys]
    failures = [f for u in units for f in u.failures]
    plan = [{"name": f"shard-{i:06d}.tar", "samples": len(good[s:s + per_shard])}
            for i, s in enumerate(range(0, len(good), per_shard))]
    assembly = {"shards": plan, "failures": failures}
    members = {u.info.name: u.info.members for u in units}
    for i, entry in enumerate(plan):
        if _finished(out, entry["name"]) is not None:
            continue
        chunk = good[i * per_shard:(i + 1) * per_shard]
        writer = ShardWriter(os.path.join(out, entry["name"]))
        opened: dict = {}  # each staged unit is opened once per shard
        try:
            for unit, key in chunk:
                f = opened.get(unit) or opened.setdefault(
                    unit, open(os.path.join(staging, unit), "rb"))
                sample = {}
                for suffix, (offset, length) in members[unit][key].items():
                    f.seek(offset)
                    sample[suffix] = f.read(length)
                writer.write(key, sample)
            info = writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            for f in opened.values():
                f.close()
        _write_json(os.path.join(out, entry["name"] + ".json"), Sidecar(info).to_dict())
    _write_json(os.path.join(out, _ASSEMBLY), assembly)
    return assembly

# -- the whole run -------------------------------------------------------------------------

def pack(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    out: str | os.PathLike[str],
    format: Format,
    codec: str | os.PathLike[str] | None = None,
    clip_frames: int = 16,
    clip_stride: int | None = None,
    size: tuple[int, int] | int | None = None,
    labels: str | os.PathLike[str] | None = None,
    shard_samples: int = 256,
    shard_bytes: int | None = None,
    workers: int = 1,
    engine: Literal["local", "ray"] = "local",
    handler: Handler = "skip",
    device: str = "auto",
    shard_range: tuple[int, int] | None = None,
    progress: bool = True,
    on_error: Literal["skip", "fail"] | None = None,
) -> PackResult:
    """Pack videos into WebDataset shards ``out/shard-NNNNNN.tar`` plus ``index.json``.

    See the module docstring for the guarantees (atomic shards, byte-identical reruns,
    resumption). ``shard_range=(a, b)`` runs only work units ``a <= i < b`` (for
    scheduler arrays; the run that completes the last missing unit assembles the shards
    and writes the index). Every shard but the last holds exactly ``shard_samples``
    samples (or the number ``shard_bytes`` plans), whatever clips fail.

    ``handler``: a video or clip that fails is left out and listed in ``failures.jsonl``
    (``"skip"``, the default), the same with a warning that counts them (``"warn"``), or
    the run stops with its error and publishes nothing of the unit (``"raise"``).
    ``on_error`` (``"skip"``/``"fail"``) is the deprecated name of the same choice.
    """
    from tqdm.auto import tqdm

    if format not in FORMATS:
        raise InvalidArgumentError(
            f"Invalid format {format!r}. Supported values are 'codes', 'video' and 'rgb'.")
    if on_error is not None:
        if on_error not in ("skip", "fail"):
            raise InvalidArgumentError(
                f"Invalid on_error {on_error!r}. Supported values are 'skip' and 'fail'.")
        warnings.warn("pack(on_error=...) is deprecated: use handler='skip' or "
                      "handler='raise'", DeprecationWarning, stacklevel=2)
        handler = "raise" if on_error == "fail" else "skip"
    handler = check_handler(handler)
    if engine not in ("local", "ray"):
        raise InvalidArgumentError(
            f"Invalid engine {engine!r}. Supported values are 'local' and 'ray'.")
    if format == "codes" and codec is None:
        raise InvalidArgumentError("format 'codes' needs --codec (a file from `cvload train-codec`)")
    if format == "rgb" and size is None:
        raise InvalidArgumentError("format 'rgb' needs --size, e.g. --size 128")
    if shard_samples < 1 or clip_frames < 1:
        raise InvalidArgumentError("shard_samples and clip_frames must be >= 1")
    started = time.perf_counter()
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    clip_stride = clip_stride or clip_frames
    codec_obj = None
    if codec is not None:
        from cvload.codec import VideoCodec
        from cvload._util import resolve_device

        device = str(resolve_device(device)) if device == "auto" else device
        codec_obj = VideoCodec.load(codec)
        codec_obj.config.check_clip(clip_frames, *codec_obj.config.size, source=codec)
    if isinstance(size, int):
        size = (size, size)

    # plan: probe every video, cut clips; failures are recorded, not fatal under "skip"
    gathered = gather_inputs(inputs, labels)
    if not gathered:
        raise InvalidArgumentError("no input videos found", hint="pass files, folders or lists")
    videos, clips, failures = [], [], []
    for path, label in tqdm(gathered, desc="probe", unit="video", disable=not progress):
        try:
            info, planned = _plan_video(path, format, clip_frames, clip_stride)
        except CvloadError as err:
            if handler == "raise":
                raise
            failures.append({"source": path, "error": type(err).__name__, "reason": str(err)})
            continue
        index = len(videos)
        stem = "".join(c if c.isalnum() else "_" for c in Path(path).stem)[:40]
        videos.append(PackedVideo(f"{index:06d}_{stem}", path, label, info, sha256_file(path)))
        clips += [Clip(index, c.start, c.frames) for c in planned]
    per_shard = shard_samples
    if shard_bytes is not None:
        # Planned, not measured: shard contents must not depend on timing or on what an
        # earlier, interrupted run wrote, so clip sizes are estimated up front.
        estimate = _estimate_clip_bytes(format, videos, clips, clip_frames, codec_obj, size)
        per_shard = max(1, min(shard_samples, int(shard_bytes // max(1, estimate))))
    units = [PlannedShard(f"unit-{i:06d}.tar", tuple(clips[s:s + per_shard]))
             for i, s in enumerate(range(0, len(clips), per_shard))]
    staging = os.path.join(out, _STAGING)
    spec = PackSpec(out=staging, format=format, codec=os.fspath(codec) if codec else None,
                    size=size, handler=handler, device=device, videos=tuple(videos))
    _claim_directory(out, spec, units, codec_obj, per_shard)
    assembled = _read_assembly(out)
    chosen = range(len(units)) if shard_range is None else range(*shard_range)
    if assembled is not None:  # a finished run: every unit went into the shards already
        todo = []
    else:
        os.makedirs(staging, exist_ok=True)
        todo = [i for i in chosen
                if 0 <= i < len(units) and _finished(staging, units[i].name) is None]
    skipped_units = sum(1 for i in chosen if 0 <= i < len(units)) - len(todo)
    bar = tqdm(total=sum(len(units[i].clips) for i in todo), desc=f"pack {format}",
               unit="clip", disable=not progress)
    try:
        if engine == "ray" and todo:
            _run_ray(spec, [units[i] for i in todo], workers)
            bar.update(bar.total)
        elif workers > 1 and len(todo) > 1:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # no decoder or CUDA state forked
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                     initializer=_worker_init, initargs=(workers,)) as pool:
                for sidecar in pool.map(write_shard, [spec] * len(todo),
                                        [units[i] for i in todo]):
                    bar.update(sidecar.info.samples + len(sidecar.failures))
        else:
            for i in todo:
                sidecar = write_shard(spec, units[i])
                bar.update(sidecar.info.samples + len(sidecar.failures))
    finally:
        bar.close()
    unit_sidecars = [] if assembled is not None else [_finished(staging, u.name)
                                                      for u in units]
    if assembled is None and all(unit_sidecars):
        assembled = _assemble(out, staging, unit_sidecars, per_shard)
    sidecars = []
    if assembled is not None:
        failures += assembled["failures"]
        sidecars = [_finished(out, s["name"]) for s in assembled["shards"]]
        if not all(sidecars):  # shards gone since the assembly: rebuild them from staging
            unit_sidecars = unit_sidecars or [_finished(staging, u.name) for u in units]
            assembled = _assemble(out, staging, unit_sidecars, per_shard)
            sidecars = [_finished(out, s["name"]) for s in assembled["shards"]]
    else:
        failures += [f for side in unit_sidecars if side for f in side.failures]
    failure_log = None
    if failures:
        failure_log = os.path.join(out, "failures.jsonl")
        if handler == "warn":
            warnings.warn(f"{len(failures)} video(s) or clip(s) failed and were left out; "
                          f"listed in {failure_log}", RuntimeWarning, stacklevel=2)
        with atomic_write(failure_log) as f:
            for failure in failures:
                f.write(json.dumps(failure, sort_keys=True) + "\n")
    index_path = None
    if assembled is not None:
        if not sidecars:
            raise ShardError(
                f"no clip of the {len(gathered)} inputs could be packed; nothing was published",
                source=out, hint=f"see {failure_log} for each video's reason")
        entries = [s.info for s in sidecars]
        extra = {"clip_frames": clip_frames, "clip_stride": clip_stride,
                 "size": list(codec_obj.config.size) if codec_obj else (list(size) if size else None),
                 "videos": len(videos)}
        if codec_obj is not None:
            extra["codec_config"] = codec_obj.config.to_dict()
        index_path = write_index(out, ShardIndex(format, entries,
                                                 codec_obj.codec_id if codec_obj else None,
                                                 extra=extra))
        import shutil

        shutil.rmtree(staging, ignore_errors=True)  # every sample is in the shards now
    total = sum(s.info.bytes for s in sidecars if s)
    return PackResult(out, format, len(videos), sum(s.info.samples for s in sidecars if s),
                      len(sidecars), total, sum(os.path.getsize(v.path) for v in videos),
                      len(failures), skipped_units, time.perf_counter() - started, index_path,
                      failure_log, units=len(units))
