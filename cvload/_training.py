"""What the codec and augmentation-network trainers share: checkpoint files, the
training clock across resumes and the learning-rate schedule."""

from __future__ import annotations

import math
import time

import torch

from cvload._util import atomic_write

__all__ = ["TrainClock", "load_checkpoint", "save_checkpoint", "warmup_cosine"]


def save_checkpoint(path: str, payload: dict) -> None:
    """``torch.save`` through a temporary file: an interrupted save never leaves a broken
    checkpoint."""
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(path: str, fmt: str, error: type, what: str) -> dict:
    """A checkpoint whose ``format`` is ``fmt`` (weights only: nothing unpickled); anything
    else raises ``error`` naming the file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise error(f"cannot read checkpoint: {err}", source=path) from err
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise error(f"not {what}", source=path)
    return payload


class TrainClock:
    """Training seconds across resumes: ``spent_before`` from the checkpoint plus this
    run's."""

    def __init__(self, spent_before: float = 0.0) -> None:
        self.spent_before = float(spent_before)
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return self.spent_before + time.perf_counter() - self.started

    def over(self, max_seconds: float | None) -> bool:
        return max_seconds is not None and self.elapsed() > max_seconds


def warmup_cosine(lr: float, step: int, steps: int, *, floor: float,
                  clock: TrainClock | None = None, max_seconds: float | None = None) -> float:
    """Warm-up over the first 5% (at most 100 steps), then cosine decay to ``floor * lr``,
    over the steps or, with ``max_seconds``, over the time budget, whichever runs out
    first: a timed run ends fully decayed."""
    done = step / max(1, steps)
    if max_seconds and clock is not None:
        done = max(done, clock.elapsed() / max_seconds)
    warm = min(0.05, 100 / max(1, steps))
    if done < warm:
        return lr * max(done / warm, 0.01)
    done = min(1.0, (done - warm) / (1 - warm))
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * done)))
