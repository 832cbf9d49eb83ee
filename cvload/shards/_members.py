"""Turning one sample's member bytes into tensors: the ``decode=`` choice of
:class:`cvload.shards.ShardDataset`, resolved once into a :class:`MemberDecoding`."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch

from cvload.errors import InvalidArgumentError
from cvload.shards._npy import npy_array
from cvload.shards._sources import IMAGE_MEMBER, VIDEO_MEMBERS

__all__ = ["DecodeKind", "MemberDecoding"]

DecodeKind = Literal["auto", "raw", "clips", "custom"]


@dataclass(frozen=True)
class MemberDecoding:
    """What a :class:`ShardDataset` does with member bytes; one of four kinds:

    - ``auto`` (``decode=None``): by suffix. ``NAME.npy`` -> tensor ``NAME`` (``rgb``
      moved to ``(T, 3, H, W)``), ``N.jpg``/``N.png`` -> ``rgb`` ``(T, 3, H, W)`` uint8,
      ``cls`` -> ``label``; video members (``video`` shards) -> every packed clip in the
      ``rgb`` layout (``clip_frames`` of the index, centred).
    - ``clips`` (a layout name or a :class:`cvload.video.ClipDecoder`): video members
      decoded on the fly into that layout; other members as under ``auto``.
    - ``raw`` (``decode="raw"``): member bytes by suffix (``.npy`` still parsed safely,
      ``json`` parsed).
    - ``custom`` (a callable): gets ``{suffix: bytes}``, returns the sample dict.

    ``metadata`` adds each sample's ``json`` member (a dict) under ``"json"``.
    """

    kind: DecodeKind
    metadata: bool = False
    clip_decoder: object | None = None  # a cvload.video.ClipDecoder
    custom: Callable[[dict], dict] | None = None

    @classmethod
    def resolve(cls, decode, *, format: str, clip_frames: int,
                metadata: bool = False) -> "MemberDecoding":
        """The decoding a ``decode=`` argument asks for, checked once."""
        from cvload.video import LAYOUTS, ClipDecoder

        metadata = bool(metadata)
        if isinstance(decode, ClipDecoder):
            return cls("clips", metadata, clip_decoder=decode)
        if decode is None or decode == "auto":
            clips = (ClipDecoder("rgb", num_frames=clip_frames, sampling="center")
                     if format == "video" else None)
            return cls("auto", metadata, clip_decoder=clips)
        if isinstance(decode, str):
            if decode == "raw":
                return cls("raw", metadata)
            if decode in LAYOUTS:
                frames = clip_frames if decode in ("rgb", "mvcgc") else 2
                return cls("clips", metadata, clip_decoder=ClipDecoder(decode, num_frames=frames))
            raise InvalidArgumentError(
                f"Invalid decode {decode!r}. Supported values are None, 'raw', a layout "
                f"({', '.join(map(repr, LAYOUTS))}), a ClipDecoder or a callable.")
        if callable(decode):
            return cls("custom", metadata, custom=decode)
        raise InvalidArgumentError(f"decode must be None, a string, a ClipDecoder or a "
                                   f"callable, not {type(decode).__name__}")

    @property
    def copy_only(self) -> bool:
        """Samples are arrays copied out of the shard as stored (no per-sample decoding):
        the codes fast path and the loader's copy-only accounting rely on this."""
        return self.kind == "auto" and not self.metadata

    def wants(self, suffix: str) -> bool:
        """Whether the member ``suffix`` is read at all (``json`` only when asked for)."""
        return suffix != "json" or self.metadata or self.kind in ("raw", "custom")

    def decode(self, raw: dict, where: str, rng: Callable[[], np.random.Generator]) -> dict:
        """The sample's tensors from ``{suffix: bytes-like}``. ``where`` names the
        sample in errors; ``rng()`` makes the generator of a clip decoder's positions."""
        if self.kind == "custom":
            return self.custom({s: bytes(v) for s, v in raw.items()})
        keep_raw = self.kind == "raw"
        out: dict = {}
        frames: list[tuple[int, str]] = []
        for suffix, data in raw.items():
            if suffix == "cls":
                out["label"] = torch.tensor(int(bytes(data).decode().strip()), dtype=torch.int64)
            elif suffix == "json":
                if self.metadata or keep_raw:
                    out["json"] = json.loads(bytes(data))
            elif suffix.endswith("npy"):
                array = np.array(npy_array(data, 0, len(data), f"{where}.{suffix}"))  # own copy
                name = suffix[:-4] or "npy"
                if name == "rgb" and array.ndim == 4 and not keep_raw:
                    array = np.ascontiguousarray(np.moveaxis(array, -1, 1))
                out[name] = torch.from_numpy(array)
            elif suffix in VIDEO_MEMBERS and self.clip_decoder is not None:
                member = io.BytesIO(bytes(data))
                member.name = f"{where}.{suffix}"
                out.update(self.clip_decoder(member, rng=rng()))
            elif IMAGE_MEMBER.match(suffix) and not keep_raw:
                frames.append((int(IMAGE_MEMBER.match(suffix).group(1)), suffix))
            else:
                out[suffix] = bytes(data)
        if frames:
            from PIL import Image

            images = [np.asarray(Image.open(io.BytesIO(bytes(raw[s]))).convert("RGB"))
                      for _, s in sorted(frames)]
            out["rgb"] = torch.from_numpy(np.ascontiguousarray(
                np.moveaxis(np.stack(images), -1, 1)))
        return out
