"""Interleaved timing: every method timed in the same rounds, each round in a rotated order.

The machines this runs on are shared and noisy. Timing a baseline and its candidates side
by side, round after round, keeps slow drift out of their ratios; the median of the
per-round ratios ("paired") cancels what drift is left. Warm-up calls are not timed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

__all__ = ["Timing", "interleave", "paired_ratio"]


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one method, one entry per round."""

    samples_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return float(np.median(self.samples_s))

    @property
    def quartiles_s(self) -> tuple[float, float]:
        q1, q3 = np.percentile(self.samples_s, [25, 75])
        return float(q1), float(q3)


def interleave(methods: Mapping[str, Callable[[], object]], *, rounds: int,
               warmup: int = 1, on_round: Callable[[int], None] | None = None,
               ) -> dict[str, Timing]:
    """Call each method ``warmup`` times untimed, then ``rounds`` timed rounds, each in a
    rotated order (the method timed first changes from round to round)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, not {rounds}")
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in methods}
    order = list(methods)
    for r in range(rounds):
        for name in order:
            start = time.perf_counter()
            methods[name]()
            samples[name].append(time.perf_counter() - start)
        order.append(order.pop(0))
        if on_round is not None:
            on_round(r)
    return {name: Timing(tuple(s)) for name, s in samples.items()}


def paired_ratio(candidate: Timing, baseline: Timing, *, candidate_units: float = 1.0,
                 baseline_units: float = 1.0) -> tuple[float, float, float]:
    """Median and quartiles of the per-round speed ratios (units per second of the
    candidate over the baseline's), from rounds timed together by :func:`interleave`."""
    if len(candidate.samples_s) != len(baseline.samples_s):
        raise ValueError("paired ratios need timings from the same rounds")
    ratios = (np.asarray(baseline.samples_s) / baseline_units) / (
        np.asarray(candidate.samples_s) / candidate_units)
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    return float(med), float(q1), float(q3)
