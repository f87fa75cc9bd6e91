"""``tint bench --device cpu``: eager fp32 PyTorch vs ONNX Runtime, the default and the live path.

For each model (``default`` and the live path ``fast``, the default network at working size
128, or --weights) and input (256x256, 320x240, 1080p; working size --size, default the
name's or model's own, for every input), two latencies:

    path      Runner.colorize_array on a uint8 gray frame: lightness, resize, network,
              chroma upsample + Lab join at full resolution -> uint8 RGB (what a user runs)
    network   Runner.chroma on L at the working shape (the network alone)

The two backends are timed in pairs, call by call, alternating which goes first, so a
noisy shared machine slows both alike; reported: medians of N after warm-up and the median
of the per-pair ratios (eager / onnx).  frames/s is 1000 / the path's median (batch 1, one
frame after another).  Threads: torch's intra-op count, which ONNX Runtime is given too.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..core.weights import DEFAULT, LIVE

CPU_INPUTS = "256,320x240,1080p"
CPU_MODELS = (DEFAULT, LIVE)          # the quality model and the live path
BACKENDS = ("eager", "onnx")


def _pairs(fns: dict, n: int, warmup: int) -> dict:
    """{name: fn} -> {name: [ms] * n}, the fns called alternately (order flipped each round)."""
    names = list(fns)
    for _ in range(warmup):
        for k in names:
            fns[k]()
    ms = {k: [] for k in names}
    for i in range(n):
        for k in (names if i % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            fns[k]()
            ms[k].append((time.perf_counter() - t) * 1e3)
    return ms


def _stats(ms: list[float]) -> dict:
    s = sorted(ms)
    return {"median_ms": statistics.median(s), "min_ms": s[0], "max_ms": s[-1], "n": len(s)}


def run_cpu(args) -> int:
    from ..api import Runner
    from .gpu import git_commit, parse_inputs, versions
    from ..engine.onnx import ort_version

    log = (lambda *a: print(*a, file=sys.stderr, flush=True))
    t_start = time.perf_counter()
    inputs = parse_inputs(args.inputs or CPU_INPUTS)
    models = [args.weights] if args.weights else list(CPU_MODELS)
    n = 3 if args.quick else int(args.repeats)
    warmup = 1 if args.quick else 2
    info = versions(torch.device("cpu"))
    info.update(onnxruntime=ort_version(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                loadavg_start=os.getloadavg())
    log(f"tint bench (cpu): torch {info['torch']} ({info['torch_threads']} threads), "
        f"onnxruntime {info['onnxruntime']}, {info['cpu_count']} cores, load {info['loadavg_start']}")
    rng = np.random.default_rng(0)
    rows, setups = [], {}
    for weights in models:
        t = time.perf_counter()
        eager = Runner(weights, device="cpu", size=args.size, backend="eager")
        t_e = time.perf_counter() - t
        t = time.perf_counter()
        onnx = Runner(weights, device="cpu", size=args.size, backend="onnx")
        setups[str(weights)] = {"eager_load_s": round(t_e, 2), "onnx_load_s": round(time.perf_counter() - t, 2),
                                "onnx": onnx.network.describe(), "onnx_threads": onnx.network.threads}
        runners = {"eager": eager, "onnx": onnx}
        for name, H, W in inputs:
            frame = rng.integers(0, 256, (H, W), dtype=np.uint8)
            work = eager.working_shape(H, W)
            Lw = torch.rand(1, 1, *work, generator=torch.Generator().manual_seed(0)) * 100
            path = _pairs({k: (lambda r=r: r.colorize_array(frame)) for k, r in runners.items()}, n, warmup)
            net = _pairs({k: (lambda r=r: r.chroma(Lw)) for k, r in runners.items()}, n, warmup)
            row = {"model": str(weights), "input": name, "H": H, "W": W, "work": list(work),
                   "threads": {"torch": torch.get_num_threads(), "onnx": onnx.network.threads}}
            for k in BACKENDS:
                row[k] = {"path": _stats(path[k]), "network": _stats(net[k]),
                          "fps": 1e3 / statistics.median(path[k])}
            row["ratio_path"] = statistics.median(e / o for e, o in zip(path["eager"], path["onnx"]))
            row["ratio_network"] = statistics.median(e / o for e, o in zip(net["eager"], net["onnx"]))
            rows.append(row)
            log(f"  {weights:>10} {name:>8} path eager {row['eager']['path']['median_ms']:8.1f} ms, onnx "
                f"{row['onnx']['path']['median_ms']:8.1f} ms (x{row['ratio_path']:.2f}); network "
                f"x{row['ratio_network']:.2f}")
    info["loadavg_end"] = os.getloadavg()
    result = {"meta": {**info, "git": git_commit(), "repeats": n, "warmup": warmup, "size": args.size,
                       "setup": setups, "elapsed_s": round(time.perf_counter() - t_start, 1)}, "rows": rows}
    print(format_cpu_table(result))
    if args.json:
        from ..core.files import atomic_write
        p = Path(args.json)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1, default=str)))
        log(f"wrote {p}")
    return 0


def format_cpu_table(result) -> str:
    m = result["meta"]
    head = (f"{'model':<11} {'input':>8} {'work':>8} {'backend':<6} {'path ms':>9} {'net ms':>9} "
            f"{'frames/s':>8} {'x path':>7} {'x net':>6}")
    lines = [f"tint bench --device cpu  commit {m['git']}  {m['date']}",
             f"torch {m['torch']} ({m['torch_threads']} intra-op threads), onnxruntime {m['onnxruntime']} "
             f"(same thread count), {m['cpu_count']} cores, load average {m['loadavg_start']} -> "
             f"{m['loadavg_end']}; medians of {m['repeats']} pairs after {m['warmup']} warm-up",
             head, "-" * len(head)]
    for r in result["rows"]:
        for k in BACKENDS:
            x = r[k]
            ratio = (f"{r['ratio_path']:7.2f} {r['ratio_network']:6.2f}" if k == "onnx" else f"{'1.00':>7} {'1.00':>6}")
            lines.append(f"{r['model']:<11} {r['input']:>8} {'x'.join(map(str, r['work'])):>8} {k:<6} "
                         f"{x['path']['median_ms']:9.1f} {x['network']['median_ms']:9.1f} {x['fps']:8.2f} {ratio}")
    lines.append("x path / x net: median over pairs of eager ms / onnx ms (higher: onnx faster); "
                 "path = Runner.colorize_array uint8 gray -> uint8 RGB, net = Runner.chroma at the working shape")
    for w, s in m["setup"].items():
        lines.append(f"{w}: load eager {s['eager_load_s']} s, onnx {s['onnx_load_s']} s (export + check); {s['onnx']}")
    return "\n".join(lines)
