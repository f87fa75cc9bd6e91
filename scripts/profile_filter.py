"""Where `tint video`'s step spends its time with the temporal filter on: the PyTorch
profiler over the same step `tint bench` times as "4K host -> host" (FrameColorizer,
batch 1, pinned luma in, pinned Y'CbCr planes out), with and without the filter.

    python3 scripts/profile_filter.py [--device cuda] [--input 4k|1080p|WxH] [--frames 30]
                                      [--weights W] [--rows 25] [--json OUT.json]
                                      [--against OLD_STABILIZE.py]

Prints the per-frame median of both steps (their difference is the filter's cost), then the
operators of the filtered step by device time and by count, so a slower filter can be traced
to the operators that grew (VIDEO.md, "A third run").  ``--against`` also times the step with
another version of ``tint/media/stabilize.py`` (e.g. ``git show ab27cd5:tint/media/stabilize.py
> old.py``; the module imports nothing from tint), alternating with this one in the same
process, and prints the ratio: the filter of two commits on one machine.  A measurement, not
a test."""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import sys

import torch


@contextlib.contextmanager
def stabilize_module(path):
    """``tint.media.stabilize`` is the module at ``path`` for the steps built inside (the
    step imports it when it is built); this tree's again afterwards."""
    import tint.media
    import tint.media.stabilize as this
    spec = importlib.util.spec_from_file_location("tint.media.stabilize", path)
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    sys.modules["tint.media.stabilize"] = tint.media.stabilize = other
    try:
        yield other
    finally:
        sys.modules["tint.media.stabilize"] = tint.media.stabilize = this


def main() -> int:
    from tint.api import Runner
    from tint.bench.gpu import time_video_step
    from tint.media.video.formats import FrameLayout
    from tint.media.video.step import FrameColorizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--input", default="4k", help="4k, 1080p or WxH")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--weights", default=None, help="default: the bundled model")
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--json", default=None)
    ap.add_argument("--against", default=None, metavar="OLD_STABILIZE.py",
                    help="also time the step with this stabilize.py, alternating with this tree's")
    a = ap.parse_args()
    W, H = {"4k": (3840, 2160), "1080p": (1920, 1080)}.get(a.input, None) or map(int, a.input.split("x"))
    cuda = a.device.startswith("cuda")
    runner = Runner(a.weights, device=a.device, backend="engine" if cuda else "eager")
    layout = FrameLayout(W, H, "yuv420p", "bt709", False)

    def median_ms(stabilize_py=None, **kw) -> float:
        with stabilize_module(stabilize_py) if stabilize_py else contextlib.nullcontext():
            step = FrameColorizer(runner, layout, **kw)
        return time_video_step(step, layout, a.frames)["median_ms"]

    with torch.inference_mode():
        med_f, med_b = median_ms(), median_ms(stabilize=False)
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=acts) as prof:
            time_video_step(FrameColorizer(runner, layout), layout, 10)
        ab = None
        if a.against:                                            # alternating, same process
            rounds = [(median_ms(), median_ms(a.against)) for _ in range(3)]
            ab = {"this tree": statistics.median(r[0] for r in rounds),
                  a.against: statistics.median(r[1] for r in rounds)}
    print(f"{W}x{H} on {a.device} ({runner.backend}): step with the filter {med_f:.2f} ms, without "
          f"{med_b:.2f} ms, the filter {med_f - med_b:.2f} ms per frame (median of {a.frames})")
    if ab:
        print(f"step with the filter: this tree {ab['this tree']:.2f} ms, {a.against} "
              f"{ab[a.against]:.2f} ms: ratio {ab['this tree'] / ab[a.against]:.3f} "
              f"(median of 3 alternating rounds of {a.frames} frames each)")
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages()
    print(table.table(sort_by=key, row_limit=a.rows))
    print(table.table(sort_by="count", row_limit=a.rows))
    if a.json:
        rows = [{"name": e.key, "count": e.count, "self_cpu_us": e.self_cpu_time_total,
                 "self_device_us": getattr(e, "self_device_time_total", 0.0)} for e in table]
        json.dump({"input": [W, H], "device": a.device, "filter_ms": med_f, "no_filter_ms": med_b,
                   "against": ab, "operators": rows}, open(a.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
