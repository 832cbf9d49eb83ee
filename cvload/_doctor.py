"""``cvload doctor``: versions and capabilities of this installation, found by trying."""

from __future__ import annotations

import platform
import sys

from cvload._util import format_table

CODECS = ("h264", "mpeg4", "mpeg2video", "hevc", "vp9", "av1")


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except Exception as err:  # report, never crash
        return f"not importable ({type(err).__name__})"
    return str(getattr(mod, "__version__", "unknown"))


def cuda_status() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return f"yes: {', '.join(names)}"
        return "no (CPU only)"
    except Exception as err:
        return f"no ({type(err).__name__}: {err})"


def report() -> str:
    """The doctor's report as text."""
    import av

    import cvload
    import cvload_ext
    from cvload.video import codec_support

    lines = ["cvload doctor", ""]
    versions = [
        ("cvload", cvload.__version__),
        ("python", platform.python_version() + f" ({sys.executable})"),
        ("torch", _version("torch")),
        ("PyAV", av.__version__),
        ("numba", _version("numba") + ("" if cvload_ext.JIT_ENABLED else "  (JIT disabled)")),
        ("webdataset", _version("webdataset")),
        ("numpy", _version("numpy")),
    ]
    for lib, ver in sorted(av.library_versions.items()):
        versions.append((f"FFmpeg {lib}", ".".join(map(str, ver))))
    versions.append(("CUDA usable", cuda_status()))
    lines.append(format_table(["component", "version"], versions))
    lines += ["", "Codecs (each checked by encoding and decoding a tiny clip now):", ""]
    rows = []
    for codec in CODECS:
        s = codec_support(codec)
        mv = {True: "yes", False: "no", None: "unknown"}[s.exports_motion_vectors]
        rows.append((codec, s.decoder or "missing", s.encoder or "missing", mv, s.error or ""))
    lines.append(format_table(["codec", "decoder", "test encoder", "exports MVs", "note"], rows))
    return "\n".join(lines)
