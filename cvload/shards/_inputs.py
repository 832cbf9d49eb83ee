"""What to pack: files, folders (searched for video suffixes), .txt lists and .csv
(path,label) lists, resolved relative to the list's folder."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence



__all__ = ["VIDEO_SUFFIXES", "gather_inputs"]

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".webm", ".avi", ".264", ".h264", ".265", ".h265",
                  ".hevc", ".m4v", ".mpg", ".ts"}

def gather_inputs(inputs: Sequence[str | os.PathLike[str]],
                  labels: str | os.PathLike[str] | None = None) -> list[tuple[str, int | None]]:
    """Files, directories (searched recursively), ``.txt`` lists (one path per line) and
    ``.csv`` lists (``path,label``), as ``(path, label)`` in a fixed (sorted) order.
    ``labels``: a CSV of ``path,label`` applied to whatever was gathered."""
    found: dict[str, int | None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
                    found.setdefault(str(p), None)
        elif path.suffix.lower() == ".txt":
            for line in path.read_text().splitlines():
                if line.strip():
                    found.setdefault(str(_resolve(line.strip(), path.parent)), None)
        elif path.suffix.lower() == ".csv":
            for p, label in _read_csv(path):
                found[str(p)] = label
        else:
            found.setdefault(str(path), None)
    if labels is not None:
        table = {str(p): label for p, label in _read_csv(Path(labels))}
        by_name = {Path(p).name: label for p, label in table.items()}
        for p in found:
            found[p] = table.get(p, by_name.get(Path(p).name, found[p]))
    return sorted(found.items())

def _resolve(text: str, base: Path) -> Path:
    p = Path(text)
    return p if p.is_absolute() else base / p

def _read_csv(path: Path) -> list[tuple[Path, int | None]]:
    rows = []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].strip().lower() == "path":
                continue
            label = int(row[1]) if len(row) > 1 and row[1].strip() else None
            rows.append((_resolve(row[0].strip(), path.parent), label))
    return rows


# -- planning ----------------------------------------------------------------------------
