#!/usr/bin/env python3
"""Which engine configuration is fastest at 512x512 on this GPU?  One process, one table.

    python3 scripts/engine_sweep.py [--seconds 200] [--out DIR] [--quick]

For each candidate (precision x cuDNN fused conv+ReLU x cuDNN autotuning x layout) and
batch, the network ``L (B, 1, 512, 512) -> ab`` is captured as a CUDA graph exactly as
``tint.engine.Engine`` does, then replayed: CUDA events around each replay, median of
many, a fresh input copied into the static buffer before each (outside the timed span).
Each candidate's accuracy is checked against the float32 eager model the way users see
it: uint8 sRGB after joining with L, within 2 levels on 99.9% of pixels (smooth and
edgy synthetic lightness, random He-init vgg16 "ab" model, as ``tint bench``).

Also: a torch.profiler kernel table of the default engine at B=16 (flags layout
transposes and copies, which are waste), and the full frame path (uint8 -> uint8,
Pipeline.colorize_frames, as Runner.colorize_frames runs it) at the best batch, to see what the
stages around the network cost.

stdout: a short table and the recommended ``engine.DEFAULTS``; $OUT (or --out): JSON and
the full profile.  A watchdog thread prints what is running and exits (code 3) after
--seconds, so the call can never hang; candidates are skipped once the budget runs low.
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

STATE = {"stage": "start", "t0": time.perf_counter()}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def watchdog(seconds: float, out: Path):
    def run():
        time.sleep(seconds)
        msg = f"WATCHDOG: {seconds:.0f} s passed while running '{STATE['stage']}'; exiting"
        print(msg, flush=True)
        log(msg)
        try:
            with open(out / "watchdog_traceback.txt", "w") as f:
                faulthandler.dump_traceback(file=f, all_threads=True)
            if STATE.get("partial") is not None:
                (out / "engine_sweep_partial.json").write_text(json.dumps(STATE["partial"], indent=1, default=str))
        finally:
            os._exit(3)
    threading.Thread(target=run, daemon=True).start()


def elapsed():
    return time.perf_counter() - STATE["t0"]


def synthetic_L(B, h, w, device, seed=0):
    """Lightness in [0, 100] like photos: smooth shading plus a few hard edges."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    low = torch.rand(B, 1, h // 32, w // 32, generator=g)
    L = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    edges = ((xx // 61 + yy // 47) % 2).float()[None, None] * 0.3
    L = (0.6 * L + edges + 0.05 * torch.rand(B, 1, h, w, generator=g)).clamp(0, 1) * 100
    return L.to(device)


def to_u8(L, ab):
    from tint.core.pipeline import join_chroma
    return (join_chroma(L.float(), ab.float()) * 255).round().to(torch.uint8)


def time_graph(entry, inputs, reps, device):
    """Median ms of one replay; a different input is copied in before each (untimed)."""
    ms = []
    for i in range(reps + 3):
        entry.inp.copy_(inputs[i % len(inputs)])
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        entry.graph.replay()
        b.record()
        b.synchronize()
        if i >= 3:
            ms.append(a.elapsed_time(b))
    ms.sort()
    return {"median_ms": statistics.median(ms), "min_ms": ms[0], "max_ms": ms[-1], "n": len(ms)}


def accuracy(eng, model, device):
    """Fraction of uint8 pixels within 2 levels of the fp32 eager model, and the max."""
    L = synthetic_L(2, 512, 512, device, seed=1)
    with torch.no_grad():
        ref = model(L)
        got = eng(L)
    d = (to_u8(L, got).int() - to_u8(L, ref).int()).abs()
    rel = ((got.double() - ref.double()).norm() / ref.double().norm()).item()
    return {"within2": (d <= 2).float().mean().item(), "max_level": d.max().item(), "rel_ab": rel}


def profile_table(eng, device, B, out: Path, tag: str) -> list[str]:
    """torch.profiler over the eager network (the kernels the graph replays)."""
    from torch.profiler import ProfilerActivity, profile
    L = synthetic_L(B, 512, 512, device)
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = eng.cudnn_benchmark
    try:
        with torch.no_grad():
            for _ in range(3):
                eng.net(L)
            torch.cuda.synchronize(device)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    eng.net(L)
                torch.cuda.synchronize(device)
    finally:
        torch.backends.cudnn.benchmark = old
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None)
        if t is None:
            t = getattr(e, "self_cuda_time_total", 0)
        if t > 0:
            rows.append((t, e.count, e.key))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows) or 1.0
    lines = [f"{100 * t / total:5.1f}% {t / 5 / 1e3:7.3f} ms/call x{c // 5:<3d} {k}" for t, c, k in rows]
    (out / f"profile_{tag}.txt").write_text(
        f"== {tag}: eager engine net, B={B}, 512x512, 5 calls; total {total / 5 / 1e3:.3f} ms/call ==\n"
        + "\n".join(lines) + "\n")
    waste = [(t, k) for t, c, k in rows if any(s in k.lower() for s in
                                               ("nchwtonhwc", "nhwctonchw", "transpose", "copy", "convert"))]
    short = [ln[:150] for ln in lines[:14]]
    wt = sum(t for t, _ in waste)
    short.append(f"layout/copy kernels: {100 * wt / total:.1f}% of device time"
                 + (": " + ", ".join(k[:60] for _, k in waste[:4]) if waste else " (none)"))
    return short


def frame_path(eng, device, B, reps):
    """uint8 (B, 512, 512, 3) -> uint8 through the frame path ``Runner.colorize_frames`` runs
    (``Pipeline.colorize_frames``, the engine's fused stages), device to device."""
    from tint.bench.gpu import frame_pipeline
    pipe = frame_pipeline(eng, eng.multiple, 512, fused=True)
    srcs = [torch.randint(0, 256, (B, 512, 512, 3), dtype=torch.uint8, device=device) for _ in range(3)]
    out = torch.empty(B, 512, 512, 3, dtype=torch.uint8, device=device)
    ms = []
    for i in range(reps + 3):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        pipe.colorize_frames(srcs[i % 3], out=out)
        b.record()
        b.synchronize()
        if i >= 3:
            ms.append(a.elapsed_time(b))
    eng.clear()
    return statistics.median(ms)


def time_fn(fn, reps=50):
    """Median µs of fn() by CUDA events (after 5 warm-up calls)."""
    for _ in range(5):
        fn()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e3)
    return statistics.median(ts)


def kernel_table(device, B=16, reps=50):
    """The three kernels the first H200 profile flagged, standalone at their shapes in the
    vgg16 "ab" engine at 512x512 (fp16, channels_last): tint's kernel vs PyTorch ("old": PyTorch's
    max-pool; "torch": the reference), µs and GB/s achieved
    (bytes = what a perfect kernel must move: inputs once, outputs once)."""
    import torch.nn.functional as F
    from tint.engine import kernels as K
    cl = torch.channels_last
    h16 = dict(device=device, dtype=torch.float16)
    rows = []

    def row(name, nbytes, variants, check, n=reps):
        r = {"kernel": name, "MB": nbytes / 1e6}
        for tag, fn in variants:
            us = time_fn(fn, n)
            r[tag] = {"us": us, "GBs": nbytes / us / 1e3}
        r["check"] = check
        rows.append(r)

    # max-pool: the three pools of vgg16 at B (64ch@512, 128ch@256, 256ch@128)
    for C, S in ((64, 512), (128, 256), (256, 128)):
        x = torch.randn(B, C, S, S, **h16).contiguous(memory_format=cl)
        exact = torch.equal(K.max_pool2x2(x), F.max_pool2d(x, 2))
        row(f"max_pool {C}x{S}^2", x.numel() * 2 * 1.25,
            [("old", lambda x=x: F.max_pool2d(x, 2)), ("new", lambda x=x: K.max_pool2x2(x))], {"exact": exact})
        del x
    # head step: tap 64ch @512 (the biggest), x 64ch @256
    for C, S in ((256, 128), (128, 256), (64, 512)):
        x = torch.randn(B, C, S // 2, S // 2, **h16).contiguous(memory_format=cl)
        tap = torch.randn(B, C, S, S, **h16).contiguous(memory_format=cl)
        s, t = torch.rand(C, device=device) + 0.5, torch.randn(C, device=device)
        ref = K.head_step_reference(x.float(), tap.float(), s, t)
        err = (K.head_step(x, tap, s, t).float() - ref).norm() / ref.norm()
        row(f"head_step {C}x{S}^2", (2 * tap.numel() + x.numel()) * 2,
            [("new", lambda x=x, tap=tap: K.head_step(x, tap, s, t)),
             ("torch", lambda x=x, tap=tap: K.head_step_reference(x, tap, s, t))], {"rel": err.item()})
        del x, tap, ref
    # head out: 8 channels (3 used) @512 -> 2 channels fp32
    x = torch.relu(torch.randn(B, 8, 512, 512, **h16))
    x[:, 3:] = 0
    x = x.contiguous(memory_format=cl)
    w, b = torch.randn(2, 8, 3, 3, device=device) * 30, torch.randn(2, device=device)
    w[:, 3:] = 0
    p = K.HeadOutParams(w, b, None, 1.0, torch.float16)
    ref = K.head_out_reference(x, w, b)
    err = ((K.head_out(x, p) - ref).norm() / ref.norm()).item()
    row("head_out ab 8(3)ch 512^2", x.numel() * 2 + B * 2 * 512 * 512 * 4,
        [("new", lambda x=x: K.head_out(x, p)), ("torch", lambda x=x: K.head_out_reference(x, w, b))], {"rel": err})
    del x, ref
    # head out, bins (final_width 32, 261 bins), smaller batch: speed second priority
    from tint.core.model import ab_bins
    bins = ab_bins(10.0).to(device)
    Bb = 4
    x = torch.relu(torch.randn(Bb, 32, 512, 512, **h16)).contiguous(memory_format=cl)
    w, b = torch.randn(bins.shape[0], 32, 3, 3, device=device) * 0.05, torch.randn(bins.shape[0], device=device)
    p = K.HeadOutParams(w, b, bins, 0.38, torch.float16)
    ref = K.head_out_reference(x, p.packed_weight(), b, bins, 0.38)
    err = ((K.head_out(x, p) - ref).norm() / ref.norm()).item()
    row(f"head_out bins 32ch 512^2 B={Bb}", x.numel() * 2 + Bb * 2 * 512 * 512 * 4,
        [("new", lambda x=x: K.head_out(x, p))], {"rel": err}, n=10)
    del x, ref
    torch.cuda.empty_cache()
    return rows


def print_kernel_table(rows):
    print("kernels standalone (B=16 vgg16 'ab' 512x512 shapes, fp16 NHWC; GB/s = ideal bytes / time; H200 ~4000):")
    for r in rows:
        if "error" in r:
            print(f"  kernel table failed: {r['error']}")
            continue
        cells = "  ".join(f"{t} {r[t]['us']:8.1f} us {r[t]['GBs']:6.0f} GB/s" for t in ("old", "new", "torch") if t in r)
        print(f"  {r['kernel']:<30} {r['MB']:7.1f} MB  {cells}  {r['check']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=200.0, help="watchdog: hard exit after this many seconds")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/tint-sweep"))
    ap.add_argument("--batches", default="8,16,32,64", help="batches for the main candidates")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="two candidates, B=8 only (smoke test)")
    ap.add_argument("--kernels-only", action="store_true", help="only the per-kernel table (old vs new)")
    ap.add_argument("--main-only", action="store_true",
                    help="kernel table + the default candidate (fp16 fused, autotuned) at every batch, "
                         "skip the other candidates (fits one call with the profile)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    watchdog(args.seconds, out)
    budget = args.seconds - 25                 # leave room for the report
    if not torch.cuda.is_available():
        print("engine_sweep: needs a CUDA GPU")
        return 2
    device = torch.device("cuda")
    from tint.engine.graphs import Engine
    from tint.bench.gpu import matmul_peak, network_flops, random_model, versions
    STATE["stage"] = "setup"
    model = random_model("vgg16", "ab").to(device)
    flops = network_flops(model, (512, 512), device)
    peak = matmul_peak(device, torch.float16)
    info = versions(device)
    log(f"sweep: {info.get('gpu')} torch {info['torch']} cudnn {info['cudnn']} triton {info['triton']}; "
        f"{flops / 1e9:.1f} GFLOP/img; fp16 matmul peak {peak:.0f} TFLOP/s")
    batches = [int(b) for b in args.batches.split(",")]
    STATE["stage"] = "kernel table"
    ktab = []
    try:
        ktab = kernel_table(device)
    except Exception as ex:
        ktab = [{"kernel": "ERROR", "error": f"{type(ex).__name__}: {ex}"[:300]}]
    log(f"kernel table done at {elapsed():.0f} s")
    print_kernel_table(ktab)
    if args.kernels_only:
        (out / "engine_sweep.json").write_text(json.dumps({"meta": info, "kernels": ktab}, indent=1, default=str))
        return 0
    # (name, Engine kwargs, batches): the default first; others at two batches unless they win
    main_b = batches
    two = [b for b in batches if b in (16, 32)] or batches[:2]
    cands = [
        ("fp16 fused bench", dict(precision="fp16", fuse_conv_relu=None, cudnn_benchmark=True), main_b),
        ("fp16 unfused bench", dict(precision="fp16", fuse_conv_relu=False, cudnn_benchmark=True), main_b),
        ("bf16 fused bench", dict(precision="bf16", fuse_conv_relu=None, cudnn_benchmark=True), two),
        ("bf16 unfused bench", dict(precision="bf16", fuse_conv_relu=False, cudnn_benchmark=True), two),
        ("fp16 fused heur", dict(precision="fp16", fuse_conv_relu=None, cudnn_benchmark=False), two),
        ("fp16 unfused heur", dict(precision="fp16", fuse_conv_relu=False, cudnn_benchmark=False), two),
        ("fp16 NCHW unfused", dict(precision="fp16", fuse_conv_relu=False, gpu_layout=False), [16]),
    ]
    if args.main_only:
        cands = cands[:1]
    if args.quick:
        cands, batches = cands[:2], [8]
        cands = [(n, kw, [8]) for n, kw, _ in cands]
    L_pool = [synthetic_L(max(batches), 512, 512, device, seed=s) for s in range(3)]
    result = {"meta": info, "flops_per_img": flops, "peak_fp16": peak, "cands": [], "args": vars(args),
              "kernels": ktab}
    STATE["partial"] = result
    for name, kw, bs in cands:
        row = {"name": name, "kw": kw, "per_batch": {}}
        result["cands"].append(row)
        if elapsed() > budget * 0.7:
            row["skipped"] = "time budget"
            continue
        STATE["stage"] = f"{name}: build"
        t0 = time.perf_counter()
        eng = None
        try:
            eng = Engine(model, **kw)
            row["describe"] = {k: v for k, v in eng.describe().items() if k != "graphs_cached"}
            STATE["stage"] = f"{name}: accuracy"
            row["acc"] = accuracy(eng, model, device)
            for B in bs:
                if elapsed() > budget * 0.75:
                    row["per_batch"][str(B)] = "skipped: time budget"
                    break
                STATE["stage"] = f"{name}: B={B} capture"
                e = eng.graph(B, 512, 512)
                STATE["stage"] = f"{name}: B={B} timing"
                t = time_graph(e, [x[:B] for x in L_pool], args.reps, device)
                t["img_s"] = B / (t["median_ms"] / 1e3)
                t["tflops"] = flops * t["img_s"] / 1e12
                row["per_batch"][str(B)] = t
                eng.clear()
                torch.cuda.empty_cache()
        except Exception as ex:            # one broken candidate must not end the sweep
            row["error"] = f"{type(ex).__name__}: {str(ex).splitlines()[0][:200]}"
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        good = [v for v in row["per_batch"].values() if isinstance(v, dict)]
        if good:
            best = max(good, key=lambda v: v["img_s"])
            row["best"] = {"img_s": best["img_s"],
                           "B": [b for b, v in row["per_batch"].items() if v is best][0]}
        log(f"  {name:<20} {row.get('best', {}).get('img_s', 0):8.1f} img/s @{row.get('best', {}).get('B', '-')} "
            f"acc {row.get('acc', {}).get('within2', float('nan')):.5f} ({row['wall_s']} s) {row.get('error', '')}")
        del eng
        torch.cuda.empty_cache()
        STATE["partial"] = result

    ok = [r for r in result["cands"] if r.get("best") and r.get("acc", {}).get("within2", 0) >= 0.999]
    win = max(ok, key=lambda r: r["best"]["img_s"]) if ok else None
    result["winner"] = win and {"name": win["name"], "kw": win["kw"], "best": win["best"]}

    prof_lines = []
    if elapsed() < budget - 30:
        STATE["stage"] = "profile"
        try:
            eng = Engine(model, **(win["kw"] if win else {}))
            prof_lines = profile_table(eng, device, 16, out, "winner" if win else "default")
            del eng
        except Exception as ex:
            prof_lines = [f"profile failed: {type(ex).__name__}: {ex}"[:200]]
    frame = None
    if win and elapsed() < budget - 15:
        STATE["stage"] = "frame path"
        try:
            eng = Engine(model, **win["kw"])
            B = int(win["best"]["B"])
            frame = {"B": B, "median_ms": frame_path(eng, device, B, max(5, args.reps // 2))}
            frame["img_s"] = B / (frame["median_ms"] / 1e3)
            del eng
        except Exception as ex:
            frame = {"error": f"{type(ex).__name__}: {ex}"[:200]}
    result["frame_path"] = frame
    result["elapsed_s"] = round(elapsed(), 1)
    (out / "engine_sweep.json").write_text(json.dumps(result, indent=1, default=str))

    # ---- the short report
    print(f"engine sweep 512x512: {info.get('gpu')}, torch {info['torch']}, cudnn {info['cudnn']}; "
          f"{flops / 1e9:.1f} GFLOP/img, fp16 matmul peak {peak:.0f} TFLOP/s; baseline bench: "
          f"engine 1795, compiled 1769, eager fp32 538 img/s")
    bcols = sorted({int(b) for r in result["cands"] for b in r["per_batch"]})
    print(f"{'candidate':<20} " + " ".join(f"{'B' + str(b):>7}" for b in bcols)
          + f" {'best':>7} {'TF/s':>5} {'%pk':>4} {'acc<=2':>7} {'maxlv':>5} {'relab':>7} {'fused':>5}")
    for r in result["cands"]:
        cells = []
        for b in bcols:
            v = r["per_batch"].get(str(b))
            cells.append(f"{v['img_s']:7.0f}" if isinstance(v, dict) else f"{'-':>7}")
        best = r.get("best", {}).get("img_s", 0)
        acc = r.get("acc", {})
        tf = flops * best / 1e12
        print(f"{r['name']:<20} " + " ".join(cells) + f" {best:7.0f} {tf:5.0f} {100 * tf / peak:4.0f} "
              f"{acc.get('within2', float('nan')):7.5f} {acc.get('max_level', -1):5} {acc.get('rel_ab', float('nan')):7.1e} "
              f"{str(r.get('describe', {}).get('fused_conv_relu', '-'))[:5]:>5}"
              + (f"  {r['skipped']}" if "skipped" in r else "") + (f"  ERROR {r['error']}" if "error" in r else ""))
    print_kernel_table(ktab)
    if frame:
        if "error" in frame:
            print(f"frame path: {frame['error']}")
        else:
            print(f"frame path uint8->uint8 (Pipeline.colorize_frames, winner, B={frame['B']}): "
                  f"{frame['img_s']:.0f} img/s ({frame['median_ms']:.2f} ms/batch)")
    if prof_lines:
        print("profile (winner, B=16, eager kernels, % of device time):")
        for ln in prof_lines:
            print("  " + ln)
    if win:
        kw = {k: v for k, v in win["kw"].items() if k != "precision"}
        print(f"WINNER: {win['name']} {win['best']['img_s']:.0f} img/s @B={win['best']['B']}; "
              f"set tint/engine.py DEFAULTS.update({kw}), precision {win['kw']['precision']}")
    else:
        print("WINNER: none passed the accuracy check")
    print(f"sweep took {result['elapsed_s']} s; details in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
