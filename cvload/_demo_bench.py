"""``cvload demo``, step 9: a contact sheet of one demo video (with the demo codec's
reconstructions) and ``cvload bench --quick`` on the demo's videos, ending the demo with
the table users adopt cvload for."""

from __future__ import annotations

import os


def bench_step(videos, workdir, codec_path, *, print_fn=print) -> dict:
    from cvload.bench import BenchOptions, format_report, plot_report, run_bench
    from cvload.viz import render_sheet

    print_fn("[9/9] a contact sheet, and RGB vs compressed on the demo videos "
             "(cvload viz, cvload bench --quick)")
    moving = next(v for v in videos if v.motion != (0, 0) and v.bframes)
    sheet = render_sheet(moving.path, os.path.join(workdir, "sheet.png"), codec=codec_path,
                         columns=6)
    print_fn(f"      {sheet.path}: frames {sheet.frames} ({sheet.frame_types}), motion in the "
             f"colour wheel, residuals, codec PSNR "
             f"{', '.join(f'{p:.1f}' for p in sheet.psnr)} dB")
    report = run_bench([v.path for v in videos], options=BenchOptions.quick(), codec=codec_path,
                       workdir=os.path.join(workdir, "bench"), print_fn=print_fn)
    chart = plot_report(report, os.path.join(workdir, "bench.png"))
    print_fn(format_report(report))
    codes, rgb = report.row("codes-shards"), report.row("file:rgb")
    print_fn(f"      codes shards deliver {codes.vs_rgb:.0f}x the clips/s of decoding RGB from the "
             f"video files, at {codes.bytes_per_clip:.0f} bytes per clip "
             f"({rgb.bytes_per_clip / codes.bytes_per_clip:.1f}x fewer than the files' own); "
             f"chart: {chart}")
    return {"sheet": sheet, "report": report, "chart": chart}
