"""Small shared helpers: the cache directory and plain-text tables."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence


def cache_dir(*parts: str) -> Path:
    """``$CVLOAD_CACHE`` (default ``~/.cache/cvload``) joined with ``parts``, created."""
    root = os.environ.get("CVLOAD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cvload")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A monospace table; numbers right-aligned, everything else left-aligned."""
    rows = [["" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v)) for v in r]
            for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def numeric(text: str) -> bool:
        return text.replace(".", "", 1).replace("-", "", 1).replace("x", "", 1).isdigit()

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if numeric(c) else c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(list(headers)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
