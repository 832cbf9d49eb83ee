"""Argument helpers shared by the ``cvload`` subcommands."""

from __future__ import annotations

import argparse
import json


def video_files(inputs) -> list[str]:
    """Files, directories (searched recursively for video suffixes), .txt and .csv lists."""
    from cvload.shards import gather_inputs

    return [path for path, _ in gather_inputs(inputs)]


def report(text: str, record: dict, json_path: str | None) -> None:
    """Print a report's table; with ``--json``, also write its record."""
    print(text)
    if json_path:
        from cvload._util import atomic_write

        with atomic_write(json_path) as f:
            json.dump(record, f, indent=1)


def fraction_range(text: str) -> tuple[float, float]:
    lo, hi = (float(x) if x else d for x, d in zip(text.split(":"), (0.0, 1.0)))
    if not 0.0 <= lo < hi <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= a < b <= 1, as in 0:0.8")
    return lo, hi


def size(text: str) -> list[int]:
    parts = [int(p) for p in text.lower().split("x")]
    return parts * 2 if len(parts) == 1 else parts
