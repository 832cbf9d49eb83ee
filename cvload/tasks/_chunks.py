"""Long-video chunks for the past/future task of Compressed Vision (appendix D): a
window of consecutive code chunks of one video as memory, and a query chunk of the same
video that either lies in that window (seen in the past) or after it (the future)."""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import torch

from cvload.batching import BatchRequest
from cvload.errors import InvalidArgumentError, ShardError

__all__ = ["PastFutureChunks"]


class PastFutureChunks(torch.utils.data.Dataset):
    """Items from a codes :class:`cvload.ShardDataset` packed from long videos.

    A video's chunks are its packed clips in frame order (``cvload pack`` names samples
    ``VIDEO_FRAMESTART``, so the index alone groups and orders them). An item is a
    position ``p`` in a video with at least ``context`` chunks before it and one from
    ``p`` on: ``chunks`` = codes of chunks ``p - context .. p - 1`` (``(context, t, h, w,
    G)``); ``query`` = one chunk's codes, drawn with probability 1/2 from that window
    (``label`` 1: seen in the past) or from ``p`` on (``label`` 0: the future), uniformly
    within the side; ``query_offset`` = its chunk index minus ``p``. Draws are seeded by
    ``(seed, epoch, index)`` (:meth:`set_epoch`), so any worker gives the same item.
    """

    def __init__(self, shards, *, context: int = 4, seed: int = 0) -> None:
        if context < 1:
            raise InvalidArgumentError(f"context must be >= 1, got {context}")
        if getattr(shards, "format", None) != "codes":
            raise InvalidArgumentError("PastFutureChunks reads a codes ShardDataset",
                                       hint="pack the long videos with --format codes")
        self.shards, self.context, self.seed, self.epoch = shards, int(context), int(seed), 0
        videos: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for index, key in enumerate(k for entry in shards.entries for k in entry.keys):
            video, _, start = key.rpartition("_")
            if not video or not start.isdigit():
                raise InvalidArgumentError(f"sample key {key!r} is not VIDEO_FRAMESTART",
                                           hint="use shards written by `cvload pack`")
            videos[video].append((int(start), index))
        self.videos = {v: [i for _, i in sorted(c)] for v, c in sorted(videos.items())}
        self.items = [(v, p) for v, chunks in self.videos.items()
                      for p in range(self.context, len(chunks))]
        if not self.items:
            longest = max((len(c) for c in self.videos.values()), default=0)
            raise InvalidArgumentError(
                f"no video has the {self.context + 1} chunks an item needs (the longest has "
                f"{longest})", hint="pack longer videos or choose a smaller context")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        video, p = self.items[index]
        chunks = self.videos[video]
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        past = bool(rng.integers(0, 2))
        q = int(rng.integers(p - self.context, p)) if past else int(rng.integers(p, len(chunks)))
        # the window and the query in one read (the codes fast path copies them together)
        ids = chunks[p - self.context:p] + [chunks[q]]
        codes = self.shards.fetch(BatchRequest(ids, epoch=self.epoch)).batch["codes"]
        if len(codes) != len(ids):
            raise ShardError(f"item {index} of {video!r}: {len(ids) - len(codes)} of its "
                             f"{len(ids)} chunks could not be read",
                             source=os.path.dirname(self.shards.paths[0]))
        return {"chunks": codes[:self.context], "query": codes[self.context],
                "label": torch.tensor(int(past), dtype=torch.int64),
                "query_offset": torch.tensor(q - p, dtype=torch.int64), "video": video}
