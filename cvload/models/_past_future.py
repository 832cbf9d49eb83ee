"""The long-video task of Compressed Vision (appendix D): given the code chunks seen so
far, was a query chunk seen in the past or does it come from the future?

A shallow 3D-CNN adapter turns every chunk's latents into one vector; a slot memory
(learned slots attending over the past chunks, with their order as a learned position)
summarises the past; a cross-attention core lets the query chunk read the slots; a
linear predictor gives the logit of "seen in the past". Items come from
:class:`cvload.tasks.PastFutureChunks`.
"""

from __future__ import annotations

import torch
from torch import nn

from cvload.errors import InvalidArgumentError

__all__ = ["PastFuture"]


class PastFuture(nn.Module):
    """``forward(chunks, query)``: past chunk latents ``(B, N, C, t, h, w)`` and query
    latents ``(B, C, t, h, w)`` (``codec.embed`` of the item's codes) -> logits ``(B,)``
    of "seen in the past" (train with ``binary_cross_entropy_with_logits``)."""

    def __init__(self, latent_channels: int, *, dim: int = 128, slots: int = 8,
                 max_chunks: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.adapter = nn.Sequential(
            nn.Conv3d(latent_channels, dim, 3, 1, 1), nn.GELU(),
            nn.Conv3d(dim, dim, 3, (1, 2, 2), 1), nn.GELU(),
            nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.position = nn.Parameter(torch.randn(max_chunks, dim) * 0.02)
        self.slots = nn.Parameter(torch.randn(slots, dim) * 0.02)
        self.write = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.read = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_memory, self.norm_query = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.core = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, dim),
                                  nn.GELU())
        self.predictor = nn.Linear(dim, 1)
        self.max_chunks, self.latent_channels = max_chunks, latent_channels

    def encode_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        """``(B, N, C, t, h, w)`` -> one vector per chunk ``(B, N, dim)``."""
        b, n = chunks.shape[:2]
        return self.adapter(chunks.flatten(0, 1).float()).view(b, n, -1)

    def forward(self, chunks: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        if chunks.ndim != 6 or chunks.shape[2] != self.latent_channels or query.ndim != 5:
            raise InvalidArgumentError(
                f"PastFuture takes chunks (B, N, {self.latent_channels}, t, h, w) and query "
                f"(B, {self.latent_channels}, t, h, w), got {tuple(chunks.shape)} and "
                f"{tuple(query.shape)}", hint="embed the codes first: codec.embed(codes)")
        if chunks.shape[1] > self.max_chunks:
            raise InvalidArgumentError(f"{chunks.shape[1]} chunks, more than max_chunks="
                                       f"{self.max_chunks}")
        past = self.encode_chunks(chunks) + self.position[:chunks.shape[1]]
        slots = self.slots.expand(len(chunks), -1, -1)
        memory, _ = self.write(slots, past, past)
        memory = self.norm_memory(memory + slots)
        q = self.encode_chunks(query[:, None])  # (B, 1, dim)
        read, _ = self.read(self.norm_query(q), memory, memory)
        return self.predictor(self.core(torch.cat([q, read], -1)))[:, 0, 0]
