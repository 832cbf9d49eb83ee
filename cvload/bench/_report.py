"""The table and the chart of a :class:`BenchReport`."""

from __future__ import annotations

import os

from cvload.bench._run import BenchReport

__all__ = ["format_report", "plot_report"]


def format_report(report: BenchReport) -> str:
    """Pipeline, clips/s (median [quartiles]), MB/s, bytes per clip, ratio to RGB
    decoding: every length, the main one first."""
    from cvload._util import format_table

    main = report.options.main_length
    ordered = sorted(report.rows, key=lambda r: (r.frames != main, r.frames, -r.clips_per_s))
    rows = []
    for r in ordered:
        rows.append((r.pipeline, r.frames, f"{r.clips_per_s:.1f}",
                     f"{r.clips_per_s_q1:.1f}-{r.clips_per_s_q3:.1f}",
                     "-" if r.mb_per_s is None else f"{r.mb_per_s:.2f}",
                     "-" if r.bytes_per_clip is None else f"{r.bytes_per_clip:.0f}",
                     f"{r.vs_rgb:.2f}x", r.output))
    m = report.meta
    source = ("generated videos" if m.get("generated_videos")
              else f"{len(m.get('videos', []))} video(s)")
    head = (f"cvload bench, {m.get('date')}, commit {m.get('commit') or '-'}, "
            f"{m.get('machine')}, {report.options.workers} worker(s), batch "
            f"{report.options.batch_size}, {report.options.size[0]}x{report.options.size[1]}, "
            f"{report.options.rounds} rounds, {source}")
    table = format_table(["pipeline", "frames", "clips/s", "IQR", "MB/s", "bytes/clip",
                          "vs file:rgb", "sample"], rows)
    return head + "\n" + table


def plot_report(report: BenchReport, path: str | os.PathLike[str]) -> str:
    """Bars of clips/s per pipeline at the main length (ratio to ``file:rgb`` on each),
    and lines of clips/s against clip length; written as an image (PNG by suffix)."""
    from cvload._util import pyplot

    plt = pyplot("cvload bench --plot")

    main = sorted(report.main_rows(), key=lambda r: r.clips_per_s)
    fig, (bars, lines) = plt.subplots(1, 2, figsize=(13, 5.2),
                                      gridspec_kw={"width_ratios": [1.25, 1]})
    every = sorted({r.pipeline for r in report.rows})
    palette = plt.get_cmap("tab10" if len(every) <= 10 else "tab20").colors
    colours = {name: palette[i % len(palette)] for i, name in enumerate(every)}

    def colour(name: str):
        return colours[name]

    names = [r.pipeline for r in main]
    values = [r.clips_per_s for r in main]
    errors = [[r.clips_per_s - r.clips_per_s_q1 for r in main],
              [r.clips_per_s_q3 - r.clips_per_s for r in main]]
    bars.barh(names, values, xerr=errors, color=[colour(n) for n in names], capsize=3)
    bars.set_xscale("log")
    for i, r in enumerate(main):
        bars.text(r.clips_per_s_q3 * 1.1, i, f"{r.clips_per_s:.0f}/s  {r.vs_rgb:.2f}x",
                  va="center", fontsize=8)
    bars.set_xlabel("clips per second (log scale; bar: median, whisker: quartiles)")
    bars.set_title(f"{report.options.main_length}-frame clips, {report.options.size[0]}x"
                   f"{report.options.size[1]}, {report.options.workers} worker(s)")
    bars.set_xlim(min(values) / 2, max(values) * 4)
    lengths = sorted({r.frames for r in report.rows})
    for name in sorted({r.pipeline for r in report.rows}):
        points = sorted((r.frames, r.clips_per_s) for r in report.rows if r.pipeline == name)
        if len(points) > 1:
            xs, ys = zip(*points)
            lines.plot(xs, ys, marker="o", label=name, color=colour(name),
                       linestyle="-" if name.startswith("file:") else "--")
    if len(lengths) < 2:
        lines.text(0.5, 0.5, f"one clip length only ({lengths[0]} frames):\n"
                   "run with --lengths 8,16,32 for scaling", ha="center", va="center",
                   transform=lines.transAxes)
    lines.set_xscale("log", base=2)
    lines.set_yscale("log")
    lines.set_xticks(lengths, [str(x) for x in lengths])
    lines.set_xlabel("clip length (frames)")
    lines.set_ylabel("clips per second")
    lines.set_title("how each pipeline scales with clip length")
    if len(lengths) > 1:
        lines.legend(fontsize=7, loc="best")
    lines.grid(alpha=0.3, which="both")
    m = report.meta
    fig.suptitle(f"cvload bench {m.get('date', '')} ({m.get('machine', '')}, "
                 f"commit {m.get('commit') or '-'})", fontsize=10)
    fig.tight_layout()
    path = os.fspath(path)
    from cvload._util import atomic_path

    with atomic_path(path) as tmp:  # a chart is whole or absent
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
