"""``cvload.pack``: videos -> WebDataset tar shards (formats ``codes``, ``video``, ``rgb``).

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

import csv
import hashlib
import io
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import av

from cvload._util import atomic_write, sha256_file
from cvload.errors import CvloadError, InvalidArgumentError, ShardError
from cvload.shards._index import ShardIndex, write_index
from cvload.shards._writer import ShardWriter

__all__ = ["pack", "PackResult", "gather_inputs", "VIDEO_SUFFIXES"]

Format = Literal["codes", "video", "rgb"]
FORMATS = ("codes", "video", "rgb")
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".webm", ".avi", ".264", ".h264", ".265", ".h265",
                  ".hevc", ".m4v", ".mpg", ".ts"}


@dataclass(frozen=True)
class Clip:
    """One planned sample: frames ``[start, start + frames)`` of video ``video``."""

    video: int
    start: int
    frames: int


@dataclass
class PackResult:
    """Summary of a pack run: ``clips`` samples in ``shards`` published shards (0 until
    every work unit is done), ``skipped_shards`` work units found finished."""

    out: str
    format: str
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


def gather_inputs(inputs: Sequence[str | os.PathLike[str]],
                  labels: str | os.PathLike[str] | None = None) -> list[tuple[str, int | None]]:
    """Files, directories (searched recursively), ``.txt`` lists (one path per line) and
    ``.csv`` lists (``path,label``), as ``(path, label)`` in a fixed (sorted) order.
    ``labels``: a CSV of ``path,label`` applied to whatever was gathered."""
    found: dict[str, int | None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
                    found.setdefault(str(p), None)
        elif path.suffix.lower() == ".txt":
            for line in path.read_text().splitlines():
                if line.strip():
                    found.setdefault(str(_resolve(line.strip(), path.parent)), None)
        elif path.suffix.lower() == ".csv":
            for p, label in _read_csv(path):
                found[str(p)] = label
        else:
            found.setdefault(str(path), None)
    if labels is not None:
        table = {str(p): label for p, label in _read_csv(Path(labels))}
        by_name = {Path(p).name: label for p, label in table.items()}
        for p in found:
            found[p] = table.get(p, by_name.get(Path(p).name, found[p]))
    return sorted(found.items())


def _resolve(text: str, base: Path) -> Path:
    p = Path(text)
    return p if p.is_absolute() else base / p


def _read_csv(path: Path) -> list[tuple[Path, int | None]]:
    rows = []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].strip().lower() == "path":
                continue
            label = int(row[1]) if len(row) > 1 and row[1].strip() else None
            rows.append((_resolve(row[0].strip(), path.parent), label))
    return rows


# -- planning ----------------------------------------------------------------------------


def _plan_video(path: str, fmt: str, clip_frames: int, clip_stride: int):
    """Clips of one video: ``(info, [Clip...])``. Raises CvloadError for bad videos."""
    from cvload.video import probe

    info = probe(path)
    if info.num_frames < clip_frames:
        raise InvalidArgumentError(
            f"{info.num_frames} frames, fewer than --clip-frames {clip_frames}", source=path)
    clips = []
    if fmt == "video":
        # GOP-aligned: start at a keyframe, end at the first keyframe that completes the clip
        keys = list(info.keyframes) + [info.num_frames]
        next_start = 0
        for k, key in enumerate(keys[:-1]):
            if key < next_start:
                continue
            end = next((e for e in keys[k + 1:] if e - key >= clip_frames), None)
            if end is None:
                break
            clips.append(Clip(-1, key, end - key))
            next_start = key + clip_stride
    else:
        for start in range(0, info.num_frames - clip_frames + 1, clip_stride):
            clips.append(Clip(-1, start, clip_frames))
    return info, clips


# -- samples -------------------------------------------------------------------------------


def _remux(path: str, info, start: int, frames: int) -> tuple[bytes, str, int]:
    """Packets of frames ``[start, start + frames)`` (a GOP-aligned span: ``start`` is a
    keyframe) copied into a new container without re-encoding. Returns the bytes, the
    member suffix and the number of frames the segment holds.

    Streams ordered by pts go to MP4 (Matroska for codecs MP4 cannot hold: VP8, ProRes,
    FLV1 ...) with their timestamps shifted to start at 0. Streams in decoding order (AVI,
    MP4s storing decode times) keep their packets in that order, numbered 0, 1, ... (AVI
    stays AVI; others go to MP4 or Matroska); raw streams stay raw.

    The cut is made at the next keyframe in decode order. In open-GOP streams the next
    GOP's leading pictures (presented before its keyframe, decoded after it) depend on that
    keyframe and stay out, so the segment may hold fewer frames than planned: the number
    kept is returned, always the first frames of the span, and recorded in the metadata."""
    by_pts = info.frame_order == "pts"
    raw = {"h264": "h264", "hevc": "hevc"}.get(info.codec)
    if not info.has_timestamps:
        if raw is None:
            raise InvalidArgumentError(f"cannot cut {info.codec} without timestamps", source=path)
        candidates = [(raw, {"h264": "264", "hevc": "h265"}[raw])]
    elif by_pts or info.container != "avi":
        # MP4 holds fewer codecs than Matroska, AVI (by FourCC) some neither does (FLV1)
        candidates = [("mp4", "mp4"), ("matroska", "mkv"), ("avi", "avi")]
    else:
        candidates = [("avi", "avi"), ("matroska", "mkv")]
    for fmt, suffix in candidates:
        try:
            data, kept = _copy_packets(path, info, start, frames, fmt)
        except _NoMuxer:
            continue
        if info.frame_order == "decode" and info.has_b_frames:
            # Packets are not frames here: the keyframe's packet comes before B-frames
            # shown ahead of it (which the decoder drops without their past reference),
            # and the B-frames shown before the next keyframe come after the cut.
            # Decoding the segment says how many of the span's frames it holds.
            from cvload.video import probe

            kept = probe(data, decode=True).num_frames
        return data, suffix, kept
    raise ShardError(f"no container here can hold {info.codec} without re-encoding",
                     source=path, hint="pack it as --format rgb or codes instead")


class _NoMuxer(Exception):
    """The container format cannot hold the codec."""


def _copy_packets(path: str, info, start: int, frames: int, fmt: str) -> tuple[bytes, int]:
    from cvload.video import open_video

    gop = info.keyframes.index(start)
    end_gop = info.keyframes.index(start + frames) if start + frames < info.num_frames else None
    target = info.keyframe_seek[gop]
    stop = info.keyframe_seek[end_gop] if end_gop is not None else None
    by_pts = info.frame_order == "pts"
    lo = info.frame_pts[start] if by_pts else None
    hi = info.frame_pts[start + frames] if by_pts and start + frames < info.num_frames else None
    buffer = io.BytesIO()
    with open_video(path, info.stream_index) as (container, vstream), \
            av.open(buffer, "w", format=fmt) as out:
        # opaque: copy the codec parameters without looking up an encoder (a decoder such
        # as libdav1d has no encoder of that name; nothing is re-encoded anyway)
        try:
            ostream = out.add_stream_from_template(vstream, opaque=True)
        except ValueError as err:  # "'mp4' format does not support 'vp8' codec"
            raise _NoMuxer(str(err)) from err
        if target is not None and start > 0:
            container.seek(target, stream=vstream, backward=True, any_frame=False)
        count, kept, shift, landed = 0, 0, None, target is None or start == 0
        for packet in container.demux(vstream):
            if packet.size == 0:
                continue
            at = packet.dts if packet.dts is not None else packet.pts
            if not landed:  # the seek must land on the keyframe (decode order counts from it)
                if at != target and not by_pts:
                    raise ShardError(f"seeking to frame {start} landed elsewhere", source=path)
                landed = True
            if packet.is_discard:
                continue  # an edit list hides it
            if by_pts:
                if packet.pts is None or packet.pts < lo:
                    continue
                if hi is not None and packet.pts >= hi and packet.is_keyframe:
                    break  # the next GOP: cut here (decode order)
                if hi is not None and packet.pts >= hi:
                    continue
                if shift is None:
                    shift = packet.dts if packet.dts is not None else packet.pts
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                if fmt == "avi":  # AVI keeps decode order only (read back in that order)
                    packet.pts = packet.dts = kept
                    packet.time_base = vstream.time_base
            elif not info.has_timestamps:
                if count < start:
                    count += 1
                    continue
                if count >= start + frames:
                    break
                count += 1
            else:
                if stop is not None and at == stop and packet.is_keyframe:
                    break
                packet.pts = packet.dts = kept
                packet.time_base = vstream.time_base
            kept += 1
            packet.stream = ostream
            out.mux(packet)
    if kept == 0:
        raise ShardError(f"no packets for frames {start}..{start + frames}", source=path)
    return buffer.getvalue(), kept


def _make_sample(spec, clip: Clip, video: dict, codec, size) -> dict:
    from cvload.video import read_clip

    path, info = video["path"], video["info"]
    fps = info.fps or 0.0
    meta = {
        "video_id": video["id"], "source": path, "source_sha256": video["sha256"],
        "frame_start": clip.start, "frame_end": clip.start + clip.frames,
        "frames": clip.frames, "fps": fps,
        "seconds": [clip.start / fps, (clip.start + clip.frames) / fps] if fps else None,
        "label": video["label"], "format": spec["format"],
    }
    sample: dict = {}
    if spec["format"] == "video":
        data, suffix, kept = _remux(path, info, clip.start, clip.frames)
        sample[suffix] = data
        meta.update(frames=kept, frame_end=clip.start + kept,
                    seconds=[clip.start / fps, (clip.start + kept) / fps] if fps else None)
        meta["shapes"] = {"video": [clip.frames, info.height, info.width, 3]}
        meta["codec"] = info.codec
    else:
        target = codec.config.size if codec is not None else size
        rgb = read_clip(path, start=clip.start, num_frames=clip.frames, streams=("rgb",),
                        size=target, info=info).rgb
        if spec["format"] == "rgb":
            sample["rgb.npy"] = rgb
            meta["shapes"] = {"rgb": list(rgb.shape)}
        else:
            import torch

            codes = codec.encode(torch.from_numpy(rgb)[None])[0].cpu().numpy()
            codes = codes.astype(codec.config.code_dtype)
            sample["codes.npy"] = codes
            ratio = codec.compression_ratio(rgb.shape)
            meta.update(codec_id=codec.codec_id, shapes={"codes": list(codes.shape),
                                                         "rgb": list(rgb.shape)},
                        compression_nominal=ratio.nominal, compression_stored=ratio.stored)
    sample["json"] = meta
    if video["label"] is not None:
        sample["cls"] = int(video["label"])
    return sample


# -- one shard -----------------------------------------------------------------------------

_WORKER_CODEC = None


def _load_codec(codec_path, device):
    global _WORKER_CODEC
    if codec_path is None:
        return None
    if _WORKER_CODEC is None or _WORKER_CODEC[0] != codec_path:
        from cvload.codec import VideoCodec

        _WORKER_CODEC = (codec_path, VideoCodec.load(codec_path, map_location=device).eval())
    return _WORKER_CODEC[1]


def write_shard(spec: dict, shard: dict) -> dict:
    """Write one planned shard (a work unit any engine can run). Returns its sidecar dict:
    the ShardInfo plus the failures met. Under on_error="fail" a failure raises and no
    part of the shard is published."""
    out_dir = spec["out"]
    path = os.path.join(out_dir, shard["name"])
    codec = _load_codec(spec.get("codec"), spec.get("device", "cpu"))
    failures = []
    writer = ShardWriter(path)
    try:
        for item in shard["clips"]:
            video = spec["videos"][item["video"]]
            clip = Clip(item["video"], item["start"], item["frames"])
            key = f"{video['id']}_{clip.start:06d}"
            try:
                try:
                    sample = _make_sample(spec, clip, video, codec, spec.get("size"))
                except (av.error.FFmpegError, ValueError, RuntimeError, OSError) as err:
                    if isinstance(err, CvloadError):
                        raise
                    # a library error on one sample is that sample's failure, never a crash
                    raise ShardError(f"clip at frame {clip.start}: {type(err).__name__}: {err}",
                                     source=video["path"]) from err
            except CvloadError as err:
                if spec["on_error"] == "fail":
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

    def __init__(self, spec: dict) -> None:
        self.spec = spec

    def __call__(self, row: dict) -> dict:
        sidecar = write_shard(self.spec, json.loads(row["shard"]))
        return {"name": sidecar["name"], "samples": sidecar["samples"], "bytes": sidecar["bytes"]}


def _run_ray(spec: dict, units: list[dict], workers: int) -> int:
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
    if spec["format"] == "codes" and spec.get("device", "cpu").startswith("cuda"):
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


def _claim_directory(out: str, spec: dict, shards: list[dict], codec, per_shard: int) -> None:
    """Record what this run will write; refuse a directory holding another run's shards
    (skipping "finished" shards of a different plan would mix datasets silently)."""
    plan = {"format": spec["format"], "size": spec["size"],
            "codec_id": codec.codec_id if codec is not None else None,
            "videos": [[v["id"], v["sha256"], v["label"]] for v in spec["videos"]],
            "shards": shards, "per_shard": per_shard}
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
    _write_json(path, {"digest": digest, "shards": len(shards), "format": spec["format"]})


def _estimate_clip_bytes(fmt, videos, clips, clip_frames, codec, size) -> int:
    """Bytes one sample takes, estimated before any work: exact for codes and rgb arrays
    (plus tar headers and metadata), the source's bytes per frame for video segments."""
    overhead = 3 * 512 + 1024  # tar headers and padding, json, cls
    if fmt == "codes":
        return codec.compression_ratio((clip_frames, *codec.config.size)).code_bytes + overhead
    if fmt == "rgb":
        return clip_frames * size[0] * size[1] * 3 + 128 + overhead
    frames = sum(c.frames for c in clips) or 1
    per_frame = sum(os.path.getsize(v["path"]) / max(1, v["info"].num_frames) for v in videos)
    return int(per_frame / max(1, len(videos)) * frames / max(1, len(clips))) + overhead


_STAGING = ".staging"
_ASSEMBLY = "pack-assembly.json"


def _read_assembly(out: str) -> dict | None:
    try:
        with open(os.path.join(out, _ASSEMBLY)) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _assemble(out: str, staging: str, units: list[dict], per_shard: int) -> dict:
    """Copy the staged samples, in plan order, into shards of exactly ``per_shard``
    samples (the last may hold fewer). Deterministic: the same units give the same
    bytes, so a run killed here and rerun ends identically."""
    good = [(u["name"], key) for u in units for key in u["keys"]]
    failures = [f for u in units for f in u.get("failures", [])]
    plan = [{"name": f"shard-{i:06d}.tar", "samples": len(good[s:s + per_shard])}
            for i, s in enumerate(range(0, len(good), per_shard))]
    assembly = {"shards": plan, "failures": failures}
    members = {u["name"]: u["members"] for u in units}
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
        _write_json(os.path.join(out, entry["name"] + ".json"),
                    {**info.to_dict(), "failures": []})
    _write_json(os.path.join(out, _ASSEMBLY), assembly)
    return assembly


def _write_json(path: str, value) -> None:
    with atomic_write(path) as f:
        json.dump(value, f, sort_keys=True)


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
    on_error: Literal["skip", "fail"] = "skip",
    device: str = "auto",
    shard_range: tuple[int, int] | None = None,
    progress: bool = True,
) -> PackResult:
    """Pack videos into WebDataset shards ``out/shard-NNNNNN.tar`` plus ``index.json``.

    See the module docstring for the guarantees (atomic shards, byte-identical reruns,
    resumption). ``shard_range=(a, b)`` runs only work units ``a <= i < b`` (for
    scheduler arrays; the run that completes the last missing unit assembles the shards
    and writes the index). Every shard but the last holds exactly ``shard_samples``
    samples (or the number ``shard_bytes`` plans), whatever clips fail.
    """
    from tqdm.auto import tqdm

    if format not in FORMATS:
        raise InvalidArgumentError(
            f"Invalid format {format!r}. Supported values are 'codes', 'video' and 'rgb'.")
    if on_error not in ("skip", "fail"):
        raise InvalidArgumentError(
            f"Invalid on_error {on_error!r}. Supported values are 'skip' and 'fail'.")
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
            if on_error == "fail":
                raise
            failures.append({"source": path, "error": type(err).__name__, "reason": str(err)})
            continue
        index = len(videos)
        stem = "".join(c if c.isalnum() else "_" for c in Path(path).stem)[:40]
        videos.append({"id": f"{index:06d}_{stem}", "path": path, "label": label, "info": info,
                       "sha256": sha256_file(path)})
        clips += [Clip(index, c.start, c.frames) for c in planned]
    per_shard = shard_samples
    if shard_bytes is not None:
        # Planned, not measured: shard contents must not depend on timing or on what an
        # earlier, interrupted run wrote, so clip sizes are estimated up front.
        estimate = _estimate_clip_bytes(format, videos, clips, clip_frames, codec_obj, size)
        per_shard = max(1, min(shard_samples, int(shard_bytes // max(1, estimate))))
    units = [{"name": f"unit-{i:06d}.tar",
              "clips": [asdict(c) for c in clips[s:s + per_shard]]}
             for i, s in enumerate(range(0, len(clips), per_shard))]
    staging = os.path.join(out, _STAGING)
    spec = {"out": staging, "format": format, "codec": os.fspath(codec) if codec else None,
            "size": size, "on_error": on_error, "device": device, "videos": videos}
    _claim_directory(out, spec, units, codec_obj, per_shard)
    assembled = _read_assembly(out)
    chosen = range(len(units)) if shard_range is None else range(*shard_range)
    if assembled is not None:  # a finished run: every unit went into the shards already
        todo = []
    else:
        os.makedirs(staging, exist_ok=True)
        todo = [i for i in chosen
                if 0 <= i < len(units) and _finished(staging, units[i]["name"]) is None]
    skipped_units = sum(1 for i in chosen if 0 <= i < len(units)) - len(todo)
    bar = tqdm(total=sum(len(units[i]["clips"]) for i in todo), desc=f"pack {format}",
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
                    bar.update(sidecar["samples"] + len(sidecar["failures"]))
        else:
            for i in todo:
                sidecar = write_shard(spec, units[i])
                bar.update(sidecar["samples"] + len(sidecar["failures"]))
    finally:
        bar.close()
    unit_sidecars = [] if assembled is not None else [_finished(staging, u["name"])
                                                      for u in units]
    if assembled is None and all(unit_sidecars):
        assembled = _assemble(out, staging, unit_sidecars, per_shard)
    sidecars = []
    if assembled is not None:
        failures += assembled["failures"]
        sidecars = [_finished(out, s["name"]) for s in assembled["shards"]]
        if not all(sidecars):  # shards gone since the assembly: rebuild them from staging
            unit_sidecars = unit_sidecars or [_finished(staging, u["name"]) for u in units]
            assembled = _assemble(out, staging, unit_sidecars, per_shard)
            sidecars = [_finished(out, s["name"]) for s in assembled["shards"]]
    else:
        failures += [f for side in unit_sidecars if side for f in side.get("failures", [])]
    failure_log = None
    if failures:
        failure_log = os.path.join(out, "failures.jsonl")
        with atomic_write(failure_log) as f:
            for failure in failures:
                f.write(json.dumps(failure, sort_keys=True) + "\n")
    index_path = None
    if assembled is not None:
        if not sidecars:
            raise ShardError(
                f"no clip of the {len(gathered)} inputs could be packed; nothing was published",
                source=out, hint=f"see {failure_log} for each video's reason")
        entries = [{k: v for k, v in s.items() if k != "failures"} for s in sidecars]
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
    total = sum(s["bytes"] for s in sidecars if s)
    return PackResult(out, format, len(videos), sum(s["samples"] for s in sidecars if s),
                      len(sidecars), total, sum(os.path.getsize(v["path"]) for v in videos),
                      len(failures), skipped_units, time.perf_counter() - started, index_path,
                      failure_log, units=len(units))
