"""Where `tint video`'s step spends its time with the temporal filter on: the PyTorch
profiler over the same step `tint bench` times as "4K host -> host" (FrameColorizer,
batch 1, pinned luma in, pinned Y'CbCr planes out), with and without the filter.

    python3 scripts/profile_filter.py [--device cuda] [--input 4k|1080p|WxH] [--frames 30]
                                      [--weights W] [--rows 25] [--json OUT.json]

Prints the per-frame median of both steps (their difference is the filter's cost), then the
operators of the filtered step by device time and by count, so a slower filter can be traced
to the operators that grew (VIDEO.md, "A third run").  A measurement, not a test."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch


def frames(layout, k: int = 4):
    ys = [torch.randint(16, 236, (1, layout.height, layout.width), dtype=torch.uint8) for _ in range(k)]
    outs = [torch.empty(1, layout.frame_bytes, dtype=torch.uint8) for _ in range(k)]
    if torch.cuda.is_available():
        ys, outs = [y.pin_memory() for y in ys], [o.pin_memory() for o in outs]
    return ys, outs


def per_frame_ms(step, layout, n: int) -> list[float]:
    ys, outs = frames(layout)
    for i in range(step.lookahead + 3):              # graphs captured, the lookahead filled
        done = step.submit(ys[i % 4], outs[i % 4])[0]
        done is not None and done.synchronize()
    ms = []
    for i in range(n):
        t = time.perf_counter()
        done = step.submit(ys[i % 4], outs[i % 4])[0]
        done is not None and done.synchronize()
        ms.append((time.perf_counter() - t) * 1e3)
    return ms


def main() -> int:
    from tint.api import Runner
    from tint.media.video.formats import FrameLayout
    from tint.media.video.step import FrameColorizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--input", default="4k", help="4k, 1080p or WxH")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--weights", default=None, help="default: the bundled model")
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    W, H = {"4k": (3840, 2160), "1080p": (1920, 1080)}.get(a.input, None) or map(int, a.input.split("x"))
    cuda = a.device.startswith("cuda")
    runner = Runner(a.weights, device=a.device, backend="engine" if cuda else "eager")
    layout = FrameLayout(W, H, "yuv420p", "bt709", False)
    with torch.inference_mode():
        filt = FrameColorizer(runner, layout)
        bare = FrameColorizer(runner, layout, stabilize=False)
        t_filt, t_bare = per_frame_ms(filt, layout, a.frames), per_frame_ms(bare, layout, a.frames)
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=acts) as prof:
            per_frame_ms(filt, layout, 10)
    med_f, med_b = statistics.median(t_filt), statistics.median(t_bare)
    print(f"{W}x{H} on {a.device} ({runner.backend}): step with the filter {med_f:.2f} ms, without "
          f"{med_b:.2f} ms, the filter {med_f - med_b:.2f} ms per frame (median of {a.frames})")
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages()
    print(table.table(sort_by=key, row_limit=a.rows))
    print(table.table(sort_by="count", row_limit=a.rows))
    if a.json:
        rows = [{"name": e.key, "count": e.count, "self_cpu_us": e.self_cpu_time_total,
                 "self_device_us": getattr(e, "self_device_time_total", 0.0)} for e in table]
        json.dump({"input": [W, H], "device": a.device, "filter_ms": med_f, "no_filter_ms": med_b,
                   "operators": rows}, open(a.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
