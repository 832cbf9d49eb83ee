"""Small shared helpers: the cache directory and plain-text tables."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence


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


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``path`` (same suffix, unique to this process); on
    success it is renamed onto ``path`` in one step, on error removed. Readers never see a
    half-written file, and an interrupted write leaves only the old file (or none)."""
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.partial{Path(name).suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", *, durable: bool = False,
                 **open_kwargs) -> Iterator[IO]:
    """``open(path, mode)`` through :func:`atomic_path`; ``durable=True`` also fsyncs
    before the rename (index files, which name what is done)."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())


def resolve_device(device="auto"):
    """``"auto"``: CUDA when usable, else CPU; anything else as ``torch.device``."""
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pyplot(purpose: str):
    """matplotlib's pyplot on the file-only Agg backend; a clear error naming ``purpose``
    and the extra to install when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError as err:
        from cvload.errors import MissingDependencyError

        raise MissingDependencyError(f"{purpose} needs matplotlib",
                                     hint="pip install 'cvload[plot]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
