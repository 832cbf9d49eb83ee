"""Labels and samplers of the reference tasks: they are data, so they live with the
loader, not in the models.

``_pmsp``: IMRNet's pyramidal motion statistics labels (a numba kernel); ``_ctp``: its
correspondence types (``aligned``, ``random``, ``shuffle``, ``shift``); ``_chunks``:
long-video chunks for the past/future task of Compressed Vision.
"""

from cvload.tasks._chunks import PastFutureChunks
from cvload.tasks._ctp import CTP_KINDS, CtpKind, ctp_transform
from cvload.tasks._pmsp import pmsp_classes, pmsp_labels

__all__ = ["CTP_KINDS", "CtpKind", "PastFutureChunks", "ctp_transform", "pmsp_classes",
           "pmsp_labels"]
