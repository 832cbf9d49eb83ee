"""The device stage's tensor moves: batches to the device (pinned, non-blocking on
CUDA), recording side-stream use."""

from __future__ import annotations


import torch


__all__: list[str] = []


def _has_device_tensor(batch) -> bool:
    """Whether anything in the batch lives off the CPU (cheap: no rebuilding)."""
    if isinstance(batch, torch.Tensor):
        return batch.device.type != "cpu"
    if isinstance(batch, dict):
        return any(_has_device_tensor(v) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return any(_has_device_tensor(v) for v in batch if not isinstance(v, (str, int)))
    return False

def _to_device(batch, device: torch.device, non_blocking: bool):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device, non_blocking) for v in batch)
    return batch

def _record_stream(batch, stream) -> None:
    if isinstance(batch, torch.Tensor):
        if batch.is_cuda:
            batch.record_stream(stream)
    elif isinstance(batch, dict):
        for v in batch.values():
            _record_stream(v, stream)
    elif isinstance(batch, (list, tuple)):
        for v in batch:
            _record_stream(v, stream)


# -- the loader ------------------------------------------------------------------------------
