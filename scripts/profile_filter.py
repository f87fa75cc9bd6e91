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
import importlib.util
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


def with_stabilize(path):
    """Make ``tint.media.stabilize`` the module at ``path`` for the steps built after the
    call; returns the module."""
    import tint.media
    spec = importlib.util.spec_from_file_location("tint.media.stabilize", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["tint.media.stabilize"] = mod
    tint.media.stabilize = mod
    return mod


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
    ap.add_argument("--against", default=None, metavar="OLD_STABILIZE.py",
                    help="also time the step with this stabilize.py, alternating with this tree's")
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
    ab = None
    if a.against:
        import tint.media.stabilize as this
        times = {"this tree": [], a.against: []}
        with torch.inference_mode():
            for _ in range(3):                                   # alternating, same process
                for name, path in (("this tree", None), (a.against, a.against)):
                    if path is not None:
                        with_stabilize(path)
                    times[name] += per_frame_ms(FrameColorizer(runner, layout), layout, a.frames)
                    sys.modules["tint.media.stabilize"] = this
                    import tint.media
                    tint.media.stabilize = this
        ab = {k: statistics.median(v) for k, v in times.items()}
        print(f"step with the filter: this tree {ab['this tree']:.2f} ms, {a.against} "
              f"{ab[a.against]:.2f} ms: ratio {ab['this tree'] / ab[a.against]:.3f} "
              f"(medians of {3 * a.frames} frames each, alternating)")
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
