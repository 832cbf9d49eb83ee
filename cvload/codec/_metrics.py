"""Reconstruction metrics: PSNR, SSIM (Wang et al., 2004), MAE, code-usage perplexity."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "mae", "perplexity"]


def _as_float(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def psnr(a, b, *, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all elements (uint8 is scaled to [0, 1]).
    Identical inputs give ``inf``."""
    mse = float(torch.mean((_as_float(a) - _as_float(b)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(max_value ** 2 / mse)


def mae(a, b) -> float:
    """Mean absolute error on the [0, 1] scale."""
    return float(torch.mean(torch.abs(_as_float(a) - _as_float(b))))


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(a, b, *, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> float:
    """Mean structural similarity of two image stacks ``(..., H, W, C)`` in [0, 1] (uint8
    is scaled), with an 11x11 Gaussian window (sigma 1.5), computed per channel over the
    'valid' region, as in Wang et al. (2004)."""
    x, y = _as_float(a), _as_float(b)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    h, w, c = x.shape[-3:]
    x = x.reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    y = y.reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    size = min(window, h, w)
    g = _gaussian(size, sigma)
    kernel = (g[:, None] * g[None, :])[None, None]

    def blur(t):
        return F.conv2d(t, kernel)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x ** 2
    syy = blur(y * y) - mu_y ** 2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = k1 ** 2, k2 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def perplexity(codes, codebook_size: int) -> float:
    """``exp(entropy)`` of the code histogram per group, averaged over groups: the
    effective number of codes in use (``codebook_size`` when all are used equally)."""
    codes = np.asarray(codes)
    values = []
    for g in range(codes.shape[-1]):
        counts = np.bincount(codes[..., g].reshape(-1).astype(np.int64), minlength=codebook_size)
        p = counts[counts > 0] / counts.sum()
        values.append(float(np.exp(-(p * np.log(p)).sum())))
    return float(np.mean(values))
