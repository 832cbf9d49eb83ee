"""IMRNet's correspondence type prediction (CTP): an ``imrnet`` sample whose motion and
residual streams are made to correspond to its I-frames in one of four ways."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from cvload.errors import InvalidArgumentError

__all__ = ["CTP_KINDS", "CtpKind", "ctp_transform"]

CtpKind = Literal["aligned", "random", "shuffle", "shift"]
CTP_KINDS: tuple[str, ...] = ("aligned", "random", "shuffle", "shift")
P_STREAMS = ("mv", "residual")


def ctp_transform(sample: dict, kind: CtpKind, *, rng: np.random.Generator | None = None,
                  other: dict | None = None) -> dict:
    """A copy of ``sample`` (the ``imrnet`` layout: ``iframe`` ``(T, 3, H, W)``, ``mv``
    ``(T, K, 4, h, w)``, ``residual`` ``(T, K, 3, H, W)``) with ``ctp_label`` (the index
    of ``kind`` in :data:`CTP_KINDS`) and its P streams (``mv`` and ``residual``, moved
    together) changed:

    - ``aligned``: unchanged (each GOP's motion belongs to its I-frame);
    - ``random``: taken from ``other``, a sample of another video (required);
    - ``shuffle``: the GOPs permuted so that none stays in place (needs T >= 2);
    - ``shift``: rolled in time by 1 to T-1 GOPs (needs T >= 2).

    ``rng`` draws the permutation and the shift (default: seeded 0).
    """
    if kind not in CTP_KINDS:
        raise InvalidArgumentError(f"Invalid kind {kind!r}. Supported values are "
                                   f"{', '.join(map(repr, CTP_KINDS))}.")
    missing = [k for k in ("iframe", *P_STREAMS) if k not in sample]
    if missing:
        raise InvalidArgumentError(f"ctp_transform needs an imrnet sample; {missing} missing")
    rng = rng if rng is not None else np.random.default_rng(0)
    out = dict(sample)
    gops = int(sample["mv"].shape[0])
    if kind == "random":
        if other is None:
            raise InvalidArgumentError("kind='random' needs other=, a sample of another video")
        for key in P_STREAMS:
            if tuple(other[key].shape) != tuple(sample[key].shape):
                raise InvalidArgumentError(f"other[{key!r}] has shape {tuple(other[key].shape)}, "
                                           f"the sample {tuple(sample[key].shape)}")
            out[key] = other[key]
    elif kind in ("shuffle", "shift"):
        if gops < 2:
            raise InvalidArgumentError(f"kind={kind!r} needs at least 2 GOPs, the sample has "
                                       f"{gops}", hint="read more GOPs (num_frames >= 2)")
        if kind == "shift":
            order = np.roll(np.arange(gops), int(rng.integers(1, gops)))
        else:
            order = rng.permutation(gops)
            while np.any(order == np.arange(gops)):  # a derangement: no GOP stays
                order = rng.permutation(gops)
        index = torch.as_tensor(order)
        for key in P_STREAMS:
            out[key] = sample[key][index]
    out["ctp_label"] = torch.tensor(CTP_KINDS.index(kind), dtype=torch.int64)
    return out
