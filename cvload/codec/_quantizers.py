"""Quantisers: finite scalar quantisation (FSQ) and EMA vector quantisation (VQ).

Both take latents ``(B, G*d, t, h, w)`` and return the quantised latents (straight-through
gradients), integer codes ``(B, t, h, w, G)`` int64, and an auxiliary loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FSQ", "EMAVectorQuantizer"]


def _split_groups(z: torch.Tensor, groups: int) -> torch.Tensor:
    """``(B, G*d, t, h, w)`` -> ``(B, t, h, w, G, d)``."""
    b, c, t, h, w = z.shape
    return z.view(b, groups, c // groups, t, h, w).permute(0, 3, 4, 5, 1, 2)


def _merge_groups(z: torch.Tensor) -> torch.Tensor:
    """``(B, t, h, w, G, d)`` -> ``(B, G*d, t, h, w)``."""
    b, t, h, w, g, d = z.shape
    return z.permute(0, 4, 5, 1, 2, 3).reshape(b, g * d, t, h, w)


class FSQ(nn.Module):
    """Finite scalar quantisation (Mentzer et al., 2023): each latent dimension is scaled,
    clipped and rounded to one of ``levels[i]`` evenly spaced values; a group's code is the
    mixed-radix number of its digits. No codebook, so nothing can collapse."""

    def __init__(self, levels: tuple[int, ...], groups: int) -> None:
        super().__init__()
        self.groups = groups
        levels_t = torch.tensor(levels, dtype=torch.int64)
        self.register_buffer("levels", levels_t, persistent=False)
        basis = torch.cumprod(torch.tensor([1, *levels[:-1]], dtype=torch.int64), 0)
        self.register_buffer("basis", basis, persistent=False)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` -> ``z * (L // 2)`` clipped to ``[-(L // 2), (L - 1) // 2]``: evenly spaced
        levels that include zero (for even L the top level is one step short of +1), so a
        linear code quantises uniformly and a latent of 0 stays exactly 0. (A tanh bound
        crowds the levels at the centre and coarsens the tails.)"""
        half = (self.levels // 2).to(z.dtype)
        top = ((self.levels - 1) // 2).to(z.dtype)
        return torch.minimum(torch.maximum(z * half, -half), top)

    def forward(self, z: torch.Tensor):
        zg = _split_groups(z.float(), self.groups)
        bounded = self._bound(zg)
        rounded = bounded + (torch.round(bounded) - bounded).detach()  # straight-through
        half_width = (self.levels // 2).to(zg.dtype)
        digits = (torch.round(bounded) + half_width).long()
        codes = (digits * self.basis).sum(-1)
        quantised = _merge_groups(rounded / half_width)
        return quantised, codes, z.new_zeros(())

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, t, h, w, G)`` integer codes -> ``(B, G*d, t, h, w)`` latents in [-1, 1]."""
        digits = (codes.long().unsqueeze(-1) // self.basis) % self.levels
        half_width = (self.levels // 2).float()
        return _merge_groups((digits.float() - half_width) / half_width)


class EMAVectorQuantizer(nn.Module):
    """G codebooks of K vectors, updated by exponential moving averages (VQ-VAE-2 style).

    - data-dependent initialisation: the first training batch seeds every codebook with
      randomly chosen encoder outputs;
    - dead-code restart: entries whose EMA usage falls below ``dead_threshold`` (as a
      fraction of uniform usage) are moved onto random encoder outputs of the batch.
    """

    def __init__(self, groups: int, codebook_size: int, dim: int, *, decay: float = 0.99,
                 commitment: float = 0.25, dead_threshold: float = 0.03, eps: float = 1e-5):
        super().__init__()
        self.groups, self.size, self.dim = groups, codebook_size, dim
        self.decay, self.commitment, self.eps = decay, commitment, eps
        self.dead_threshold = dead_threshold
        self.register_buffer("embed", torch.randn(groups, codebook_size, dim))
        self.register_buffer("cluster_size", torch.zeros(groups, codebook_size))
        self.register_buffer("embed_avg", self.embed.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        # usage: a fast EMA of assignments per batch, only to find dead codes
        self.register_buffer("usage", torch.zeros(groups, codebook_size))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.int64))
        self.usage_decay = 0.8

    def _nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """flat ``(G, N, d)`` -> indices ``(G, N)``."""
        distances = (flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ self.embed.transpose(1, 2)
                     + self.embed.pow(2).sum(-1).unsqueeze(1))
        return distances.argmin(-1)

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:
        for g in range(self.groups):
            pick = torch.randint(0, flat.shape[1], (self.size,), device=flat.device)
            self.embed[g] = flat[g, pick]
        self.embed_avg.copy_(self.embed)
        self.cluster_size.fill_(1.0)
        self.usage.fill_(flat.shape[1] / self.size)  # as if used uniformly
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        onehot = F.one_hot(indices, self.size).type(flat.dtype)  # (G, N, K)
        counts = onehot.sum(1)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(onehot.transpose(1, 2) @ flat, alpha=1 - self.decay)
        total = self.cluster_size.sum(-1, keepdim=True)
        smoothed = (self.cluster_size + self.eps) / (total + self.size * self.eps) * total
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(-1))
        # dead-code restart: a code whose recent usage fell below dead_threshold of uniform
        # (about a dozen batches without assignments) jumps onto a random encoder output
        self.usage.mul_(self.usage_decay).add_(counts, alpha=1 - self.usage_decay)
        uniform_usage = flat.shape[1] / self.size
        dead = self.usage < self.dead_threshold * uniform_usage
        if dead.any():
            uniform = total / self.size
            for g in range(self.groups):
                idx = dead[g].nonzero().flatten()
                if len(idx):
                    pick = torch.randint(0, flat.shape[1], (len(idx),), device=flat.device)
                    self.embed[g, idx] = flat[g, pick]
                    self.embed_avg[g, idx] = flat[g, pick] * uniform[g, 0]
                    self.cluster_size[g, idx] = uniform[g, 0]
                    self.usage[g, idx] = uniform_usage
                    self.restarts += len(idx)

    def forward(self, z: torch.Tensor):
        zg = _split_groups(z.float(), self.groups)  # (B, t, h, w, G, d)
        shape = zg.shape
        flat = zg.reshape(-1, self.groups, self.dim).transpose(0, 1).contiguous()  # (G, N, d)
        if self.training and not bool(self.initialized):
            self._initialise(flat.detach())
        indices = self._nearest(flat.detach())
        if self.training:
            self._update(flat.detach(), indices)
        quant = torch.stack([self.embed[g][indices[g]] for g in range(self.groups)])  # (G,N,d)
        quant = quant.transpose(0, 1).reshape(shape)
        loss = self.commitment * F.mse_loss(zg, quant.detach())
        quant = zg + (quant - zg).detach()
        codes = indices.transpose(0, 1).reshape(shape[:-1])
        return _merge_groups(quant), codes, loss

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        vectors = torch.stack([self.embed[g][codes[..., g].long()] for g in range(self.groups)],
                              dim=-2)  # (B, t, h, w, G, d)
        return _merge_groups(vectors)
