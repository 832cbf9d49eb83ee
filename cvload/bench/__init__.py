"""``cvload bench``: RGB against compressed on your videos, side by side.

``run_bench(videos, options=BenchOptions.quick())`` times the pipelines of
:mod:`cvload.bench._pipelines` (the same clips, the same batch size and workers, every
one a ``cvload.DataLoader``) in interleaved rounds and returns a :class:`BenchReport`;
:func:`format_report` prints it and :func:`plot_report` draws it. The fuller suites
(peers, device stage, model steps, pack) live in the repository's ``benchmarks/``.
"""

from cvload.bench._report import format_report, plot_report
from cvload.bench._run import BenchOptions, BenchReport, BenchRow, run_bench
from cvload.bench._timing import Timing, interleave, paired_ratio
from cvload.bench._workload import generated_videos

__all__ = ["BenchOptions", "BenchReport", "BenchRow", "Timing", "format_report", "generated_videos",
           "interleave",
           "paired_ratio", "plot_report", "run_bench"]
