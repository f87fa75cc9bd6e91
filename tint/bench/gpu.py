"""``tint bench``: one network, one set of weights, four ways of running it, one table.

On a CPU (``--device cpu``, or no CUDA) it is tint.bench.cpu instead: eager fp32 vs
ONNX Runtime for the default model and the live path.  On a GPU:

    eager-fp32      the model as a user would port it: fp32, NCHW, PyTorch ops
    eager-fp16      the same in fp16 channels_last
    compiled        torch.compile(mode="max-autotune") of the fp16 channels_last path
    engine          tint.engine: folded BN, fused kernels, CUDA graphs, in the frame path that
                    tint camera runs (Pipeline.colorize_frames with the engine's fused stages)

Each variant runs the whole frame path on the device, ``tint.core.pipeline.Pipeline.colorize_frames``
around its network: uint8 (B, H, W, 3) -> lightness -> working-size L -> network -> upsample +
Lab -> sRGB -> uint8, so the full-resolution input and output stages are counted.  Square
inputs (224, 512) run the network at their own size; 1080p and 4K at the working size
(--size, default the model's).  Reported: batch-1 latency (median, p99; CUDA events, synchronized per call), best throughput over batches
1..--max-batch, achieved TFLOP/s of the network (FLOPs counted by torch.utils.flop_counter)
against an fp16/bf16 matmul peak measured in the same run, peak GPU memory, and the 4K
host-to-host time of the very step ``tint video`` runs (``media.video.step.FrameColorizer``
with its default filter, a Runner on the engine: pinned luma in, pinned Y'CbCr planes out)
and of ``tint camera``'s frame (``Runner.colorize_frames``, numpy in and out).  JSON to --json.

Without --weights a random-weight model of --backbone/--output is used: speed does not
depend on the weights' values.
"""
from __future__ import annotations

import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..core.errors import TintError
from ..core.pixels import check_size


INPUTS = {"224": (224, 224), "512": (512, 512), "1080p": (1080, 1920), "4k": (2160, 3840)}
VARIANTS = ("eager-fp32", "eager-fp16", "compiled", "engine")


def parse_inputs(spec: str) -> list[tuple[str, int, int]]:
    out = []
    for tok in (t.strip().lower() for t in spec.split(",") if t.strip()):
        if tok in INPUTS:
            out.append((tok, *INPUTS[tok]))
        elif "x" in tok:
            try:
                w, h = (int(v) for v in tok.split("x"))
            except ValueError:
                raise TintError(f"bad input size {tok!r} (use 224, 512, 1080p, 4k or WxH)") from None
            out.append((tok, h, w))
        elif tok.isdigit():
            out.append((tok, int(tok), int(tok)))
        else:
            raise TintError(f"bad input size {tok!r} (use 224, 512, 1080p, 4k or WxH)")
        if out[-1][1] < 1 or out[-1][2] < 1:
            raise TintError(f"bad input size {tok!r}")
    if not out:
        raise TintError("--inputs is empty")
    return out


def random_model(backbone: str, output: str):
    """He-initialised random weights (activations keep their scale through the encoder, so
    fp16 sees realistic magnitudes) and random BN statistics."""
    from ..core.model import Colorizer, ColorizerConfig
    torch.manual_seed(0)
    m = Colorizer(ColorizerConfig(backbone=backbone, output=output))
    for mod in m.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            if mod.bias is not None:
                torch.nn.init.uniform_(mod.bias, -0.1, 0.1)
        elif isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    return m.eval()


def git_commit() -> str:
    """The commit measured; TINT_COMMIT wins (a copied tree's .git may not be the one run)."""
    if os.environ.get("TINT_COMMIT"):
        return os.environ["TINT_COMMIT"]
    try:
        root = Path(__file__).resolve().parents[2]
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if r.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return r.stdout.strip() + ("-dirty" if dirty else "")
    except Exception:
        pass
    return "unknown"


def versions(device) -> dict:
    d = {"torch": torch.__version__, "python": platform.python_version(), "git": git_commit(),
         "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
         "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,      # eager fp32 convs use TF32 if True
         "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        import triton
        d["triton"] = triton.__version__
    except Exception:
        d["triton"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        d.update(gpu=p.name, sms=p.multi_processor_count, gpu_mem_gb=round(p.total_memory / 2**30, 1),
                 cuda=torch.version.cuda)
    else:
        d["gpu"] = None
    return d


class Timer:
    """Times ``fn()`` on one device: CUDA events on GPUs, the host clock on CPUs."""

    def __init__(self, device, quick=False):
        self.cuda = device.type == "cuda"
        self.device = device
        self.target = 0.08 if quick else 0.4         # seconds of timed calls per measurement

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def once(self, fn) -> float:
        self.sync()
        t = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t

    def latency(self, fn, warmup=3) -> dict:
        """Per-call ms, synchronized before each call so every call starts on an idle GPU."""
        for _ in range(warmup):
            fn()
        n = max(5, min(300, int(self.target / max(self.once(fn), 1e-6))))
        ms = []
        for _ in range(n):
            self.sync()
            if self.cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                ms.append(a.elapsed_time(b))
            else:
                t = time.perf_counter()
                fn()
                ms.append((time.perf_counter() - t) * 1e3)
        ms.sort()
        return {"median_ms": statistics.median(ms), "p99_ms": ms[min(len(ms) - 1, math.ceil(0.99 * len(ms)) - 1)],
                "n": len(ms)}

    def throughput(self, fn, batch, warmup=2) -> float:
        """Images per second with calls queued back to back."""
        for _ in range(warmup):
            fn()
        n = max(3, min(200, int(self.target / max(self.once(fn), 1e-6))))
        self.sync()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        self.sync()
        return batch * n / (time.perf_counter() - t)


def matmul_peak(device, dtype, n=8192) -> float:
    """Dense matmul TFLOP/s on random data (mean of 10 after 3 warm-ups)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(10):
        a @ b
    e.record()
    e.synchronize()
    return 2 * n**3 * 10 / (s.elapsed_time(e) / 1e3) / 1e12


def network_flops(model, work, device) -> int:
    """FLOPs of one image through the network at the working shape (convs, matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode
    L = torch.rand(1, 1, *work, device=device) * 100
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(L)
    return int(fc.get_total_flops())


# --------------------------------------------------------------------------- variants
def frame_pipeline(net_fn, multiple: int, size: int, fused: bool = False):
    """The frame path (``Pipeline.colorize_frames``) around ``net_fn`` (L_work fp32 -> ab):
    with the engine's fused full-resolution stages (``fused``, as ``Runner.pipeline``) or
    tint's own torch ops (the references)."""
    from ..core.pipeline import Pipeline
    if not fused:
        return Pipeline(net_fn, multiple, size)
    from ..engine import kernels as K
    return Pipeline(net_fn, multiple, size, lightness_u8=K.lightness_u8, join_u8=K.join_u8)


def make_stage_fn(net_fn, multiple: int, size: int):
    """The eager frame path around ``net_fn``: uint8 (B, H, W, 3) -> uint8, reference stages."""
    return frame_pipeline(net_fn, multiple, size).colorize_frames


def eager_fp16_net(model, device):
    m16 = copy.deepcopy(model).to(device).half().to(memory_format=torch.channels_last).eval()

    def net(Lw):
        return m16(Lw.half().contiguous(memory_format=torch.channels_last)).float()
    return net


def run_variants(args) -> int:
    """eager-fp32 / eager-fp16 / compiled / engine on args.device (a CPU runs the fp32 two)."""
    from ..api import pick_device
    from ..engine.graphs import Engine
    from ..core.model import working_shape
    from ..core.weights import load_weights, resolve

    device = pick_device(args.device)
    args.inputs = args.inputs or "224,512,1080p,4k"
    t_start = time.perf_counter()
    over = lambda: time.perf_counter() - t_start > args.budget   # noqa: E731
    inputs = parse_inputs(args.inputs)
    if args.max_batch < 1:
        raise TintError("--max-batch must be at least 1")
    if args.weights:
        model, _ = load_weights(resolve(args.weights), device=device)
        source = str(args.weights)
    else:
        model = random_model(args.backbone, args.head).to(device)
        source = f"random {args.backbone}/{args.head}"
    cfg = model.config
    cuda = device.type == "cuda"
    if args.compile_inputs.strip().lower() == "all":
        compile_set = {name for name, _, _ in inputs}
    elif args.compile_inputs.strip().lower() == "none" or not cuda:
        compile_set = set()
    else:
        compile_set = {t.strip().lower() for t in args.compile_inputs.split(",")}
    timer = Timer(device, args.quick)
    info = versions(device)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))
    log(f"tint bench: {source} on {info.get('gpu') or 'cpu'}, torch {info['torch']}, triton {info['triton']}")

    peak = {}
    if cuda:
        peak = {"fp16": matmul_peak(device, torch.float16), "bf16": matmul_peak(device, torch.bfloat16)}
        log(f"matmul peak: fp16 {peak['fp16']:.0f}, bf16 {peak['bf16']:.0f} TFLOP/s")
    engine = Engine(model, "fp16" if cuda else "fp32")
    log(f"engine: {engine.describe()}")
    batches = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) if b <= args.max_batch]
    if args.quick:
        batches = batches[:3]

    rows = []
    for name, H, W in inputs:
        size = H if (H == W and H <= 512 and not args.size) else check_size(args.size, cfg.size)
        work = working_shape(H, W, size, model.multiple)
        flops = network_flops(model, work, device)
        pipe = frame_pipeline(engine, model.multiple, size, fused=True)      # what Runner.pipeline runs

        def frames(B):
            return torch.randint(0, 256, (B, H, W, 3), dtype=torch.uint8, device=device)

        # engine first: its best batch is where the compiled variant is measured too
        def engine_factory(B):
            xB, yB = frames(B), torch.empty(B, H, W, 3, dtype=torch.uint8, device=device)
            return lambda: pipe.colorize_frames(xB, out=yB)

        def stage_factory(fn):
            def factory(B):
                xB = frames(B)
                return lambda: fn(xB)
            return factory

        def fp16_stages():
            return make_stage_fn(eager_fp16_net(model, device), model.multiple, size)

        variants = [("engine", lambda: engine_factory),
                    ("eager-fp32", lambda: stage_factory(make_stage_fn(model, model.multiple, size)))]
        if cuda:
            variants.append(("eager-fp16", lambda: stage_factory(fp16_stages())))
        if name in compile_set:     # the whole frame path compiled, stages included
            variants.append(("compiled", lambda: stage_factory(
                torch.compile(fp16_stages(), mode=args.compile_mode, dynamic=False))))
        for vname, make in variants:
            if vname == "compiled" and over():
                rows.append({"input": name, "variant": vname, "skipped": "time budget"})
                continue
            row = {"input": name, "H": H, "W": W, "work": list(work), "variant": vname, "flops": flops}
            t0 = time.perf_counter()
            with torch.inference_mode():
                factory = make()
                if cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                # compiled: the engine's batches too (a fair comparison), each a fresh compile;
                # --compile-batches narrows that when time is short
                sweep = batches if vname != "compiled" else _compile_batches(args, batches, rows, name)
                if vname != "compiled" or 1 in sweep:
                    t1 = time.perf_counter()
                    call = factory(1)
                    call()                              # graph capture / compile happens here
                    timer.sync()
                    row["setup_s"] = round(time.perf_counter() - t1, 2)
                    row["latency"] = timer.latency(call)
                    if cuda:
                        row["mem_gb_b1"] = torch.cuda.max_memory_allocated(device) / 2**30
                    del call
                row["throughput"] = _sweep(timer, factory, sweep, device, over, vname == "compiled")
            row["wall_s"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            del factory
            _free(device)
            log(_row_line(row))
        engine.clear()                         # this input's graphs
        _free(device)

    order = {v: i for i, v in enumerate(VARIANTS)}
    rows.sort(key=lambda r: ([n for n, _, _ in inputs].index(r["input"]), order.get(r["variant"], 9)))
    h2h = host_to_host(model, device, args) if cuda else None
    result = {"meta": {**info, "model": source, "config": cfg.to_dict(), "args": _args_dict(args),
                       "compile_mode": args.compile_mode, "elapsed_s": round(time.perf_counter() - t_start, 1)},
              "peak_tflops": peak, "engine": engine.describe(), "rows": rows, "host_to_host": h2h}
    result["targets"] = targets(rows, h2h)
    print(format_table(rows, peak, h2h, result["targets"]))
    if args.json:
        from ..core.files import atomic_write
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1, default=str)))
        log(f"wrote {path}")
    if args.profile and cuda:
        profile(engine, device, args.profile, check_size(args.size, cfg.size))
    return 0


def _args_dict(args):
    return {k: v for k, v in vars(args).items() if not k.startswith("_") and isinstance(v, (str, int, float, bool, type(None)))}


def _free(device):
    import gc
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _compile_batches(args, batches, rows, name) -> list[int]:
    """The batches the compiled variant is measured at for input ``name``.

    ``--compile-batches`` is one spec for every input, or ';'-separated entries where
    ``input:spec`` sets one input and a bare spec the rest (e.g. ``512:1,32;top``).  A spec
    is 'same' (the engine's batches), 'best' (1 and the engine's best), 'top' (the engine's
    best only: no batch-1 latency) or a comma list.  Each batch is a fresh compile."""
    spec, default = None, "same"
    for entry in (getattr(args, "compile_batches", None) or "same").lower().split(";"):
        key, sep, val = entry.strip().rpartition(":")
        if not sep:
            default = val.strip() or default
        elif key.strip() == name:
            spec = val.strip()
    spec = spec or default
    if spec == "same":
        return batches
    if spec in ("best", "top"):
        top = _best(rows, name, "engine", batches[-1])
        return [top] if spec == "top" else sorted({1, top})
    try:
        return sorted({int(b) for b in spec.split(",") if b.strip()})
    except ValueError:
        raise TintError(f"--compile-batches: expected 'same', 'best', 'top' or a comma list of ints "
                        f"(optionally 'input:' before each, ';' between), got {spec!r}") from None


def _best(rows, name, variant, default):
    for r in rows:
        if r["input"] == name and r["variant"] == variant and r.get("throughput", {}).get("best_batch"):
            return r["throughput"]["best_batch"]
    return default


def _sweep(timer, factory, batches, device, over, compiled) -> dict:
    """Throughput over batches; stops after two batches without a 3% gain, on OOM or budget.
    The best is the highest measured (the 3% rule only decides when to stop)."""
    per, best, worse, top = {}, (0.0, 0), 0, (0.0, 0)
    for B in batches:
        if B > 1 and over():
            per[str(B)] = "skipped: time budget"
            break
        try:
            call = factory(B)
            if compiled:
                timer.once(call)          # the compile for this shape, untimed
            ips = timer.throughput(call, B)
            del call
        except torch.OutOfMemoryError:
            per[str(B)] = "out of memory"
            _free(device)
            break
        per[str(B)] = ips
        top = max(top, (ips, B))
        if ips > best[0] * 1.03:
            best, worse = (ips, B), 0
        else:
            worse += 1
            if worse >= 2:
                break
    return {"best_ips": top[0], "best_batch": top[1], "per_batch": per}


def host_to_host(model, device, args) -> dict:
    """4K frames host -> host through what ``tint video`` and ``tint camera`` run: a Runner
    (backend engine) and its pipeline.  Video: ``FrameColorizer``, batch 1, pinned luma in,
    pinned Y'CbCr planes out, with its default filter (the headline) and without
    (``--no-stabilize``): per frame once the filter's lookahead is full, and streamed with
    batches in flight.  Camera: ``Runner.colorize_frames`` on a numpy RGB frame with the
    causal filter, synchronous."""
    import tempfile

    import numpy as np

    from ..api import Runner
    from ..core.weights import save_weights
    from ..media.stabilize import ChromaStabilizer
    from ..media.video.formats import FrameLayout
    from ..media.video.step import FrameColorizer
    size = check_size(args.size, model.config.size)
    H, W = INPUTS["4k"]
    with tempfile.TemporaryDirectory() as tmp:
        path = save_weights(model, Path(tmp) / "bench.safetensors", dtype=torch.float32)
        runner = Runner(path, device=device, size=size, backend="engine")
    layout = FrameLayout(W, H, "yuv420p", "bt709", False)
    n = 20 if args.quick else 100
    with torch.inference_mode():
        video = time_video_step(FrameColorizer(runner, layout, size=size), layout, n)
        bare = time_video_step(FrameColorizer(runner, layout, size=size, stabilize=False), layout, n)
        rgb = np.random.default_rng(0).integers(0, 256, (1, H, W, 3), dtype=np.uint8)
        cam = ChromaStabilizer()
        for _ in range(3):
            runner.colorize_frames(rgb, stabilizer=cam)
        cam_ms = []
        for _ in range(max(5, n // 2)):
            t = time.perf_counter()
            runner.colorize_frames(rgb, stabilizer=cam)
            cam_ms.append((time.perf_counter() - t) * 1e3)
    return {"input": "4k", "size": size, "backend": runner.backend,
            "path": "tint video's step (FrameColorizer, default filter), pinned luma in, pinned planes out",
            **video, "no_filter": bare, "camera_median_ms": statistics.median(cam_ms)}


def time_video_step(step, layout, n: int, slots: int = 4) -> dict:
    """Per-frame ms (median, p99) of ``step.submit`` (a ``FrameColorizer``) on random luma of
    ``layout``, synchronized per frame, and frames/s streamed with ``slots - 1`` batches in
    flight.  Buffers pinned when the step runs on CUDA, as ``tint video``'s are."""
    from collections import deque
    pin = (lambda t: t.pin_memory()) if step.cuda else (lambda t: t)
    ys = [pin(torch.randint(16, 236, (1, layout.height, layout.width), dtype=torch.uint8))
          for _ in range(slots)]
    outs = [pin(torch.empty(1, layout.frame_bytes, dtype=torch.uint8)) for _ in range(slots)]

    def submit(i):
        return step.submit(ys[i % slots], outs[i % slots])[0]

    def wait(done):
        if done is not None:
            done.synchronize()

    for i in range(step.lookahead + 3):               # graphs captured, the lookahead filled
        wait(submit(i))
    ms = []
    for i in range(n):
        t = time.perf_counter()
        wait(submit(i))
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    k = max(20, n // 2)
    pending = deque()
    t = time.perf_counter()
    for i in range(k):
        if len(pending) == slots - 1:                   # slot i % slots was last used by this one
            wait(pending.popleft())
        pending.append(submit(i))
    while pending:
        wait(pending.popleft())
    return {"median_ms": statistics.median(ms), "p99_ms": ms[math.ceil(0.99 * n) - 1],
            "stream_fps": k / (time.perf_counter() - t), "n": n}


def targets(rows, h2h) -> dict:
    def thr(name, variant):
        for r in rows:
            if r["input"] == name and r["variant"] == variant and "throughput" in r:
                return r["throughput"]["best_ips"]
        return None
    t = {}
    e, c, f = thr("512", "engine"), thr("512", "compiled"), thr("512", "eager-fp32")
    if e and c:
        t["512 engine >= 1.3x compiled"] = {"ratio": e / c, "met": e / c >= 1.3}
    if e and f:
        t["512 engine >= 5x eager fp32"] = {"ratio": e / f, "met": e / f >= 5}
    if h2h:
        t["4K host->host < 5 ms"] = {"median_ms": h2h["median_ms"], "met": h2h["median_ms"] < 5}
    return t


def _row_line(r) -> str:
    lat = r.get("latency") or {}
    thr = r.get("throughput", {})
    return (f"  {r['input']:>6} {r['variant']:<11} lat {lat.get('median_ms', float('nan')):8.3f} ms  "
            f"thr {thr.get('best_ips', 0):9.1f}/s @{thr.get('best_batch', 0)}  ({r.get('wall_s', 0)} s)")


def format_table(rows, peak, h2h, tg) -> str:
    pk = peak.get("fp16")
    base = {(r["input"], r["variant"]): r for r in rows if "throughput" in r}
    head = (f"{'input':>6} {'work':>9} {'variant':<11} {'lat ms':>8} {'p99':>8} {'img/s':>9} {'@B':>3} "
            f"{'TFLOP/s':>8} {'%peak':>6} {'mem GB':>7} {'x fp32':>7} {'x comp':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['input']:>6} {'':>9} {r['variant']:<11} skipped ({r['skipped']})")
            continue
        thr = r["throughput"]
        ips = thr["best_ips"]
        tf = r["flops"] * ips / 1e12
        f32 = base.get((r["input"], "eager-fp32"))
        cmp_ = base.get((r["input"], "compiled"))
        ratio = lambda o: f"{ips / o['throughput']['best_ips']:7.2f}" if o and o["throughput"]["best_ips"] else f"{'-':>7}"  # noqa: E731
        lat = lambda r, k: f"{r['latency'][k]:8.3f}" if r.get("latency") else f"{'-':>8}"  # noqa: E731
        lines.append(
            f"{r['input']:>6} {'x'.join(map(str, r['work'])):>9} {r['variant']:<11} "
            f"{lat(r, 'median_ms')} {lat(r, 'p99_ms')} {ips:9.1f} {thr['best_batch']:>3} "
            f"{tf:8.1f} {(100 * tf / pk if pk else float('nan')):6.1f} {r.get('mem_gb_b1', float('nan')):7.2f} "
            f"{ratio(f32)} {ratio(cmp_)}")
    if pk:
        lines.append(f"matmul peak measured: fp16 {peak['fp16']:.0f} TFLOP/s, bf16 {peak['bf16']:.0f} TFLOP/s "
                     f"(%peak: network FLOPs at best throughput vs fp16 peak)")
    if h2h:
        lines.append(f"4K host->host (tint video's step, pinned, size {h2h['size']}): median {h2h['median_ms']:.3f} ms, "
                     f"p99 {h2h['p99_ms']:.3f} ms; streamed {h2h['stream_fps']:.1f} frames/s; "
                     f"without the filter {h2h['no_filter']['median_ms']:.3f} ms, "
                     f"{h2h['no_filter']['stream_fps']:.1f} frames/s; "
                     f"tint camera's frame {h2h['camera_median_ms']:.3f} ms")
    for k, v in tg.items():
        val = v.get("ratio", v.get("median_ms"))
        lines.append(f"target {k}: {val:.2f} -> {'met' if v['met'] else 'NOT met'}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- profile
def profile(engine, device, out_dir, size) -> None:
    """torch.profiler table of the engine's kernels (eager, same kernels as the graphs) at 512 and 4K."""
    from torch.profiler import ProfilerActivity, profile as tprofile
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, (H, W), sz, B in (("512", INPUTS["512"], 512, 1), ("512-b32", INPUTS["512"], 512, 32),
                                ("4k", INPUTS["4k"], size, 1)):
        pipe = frame_pipeline(engine.net, engine.multiple, sz, fused=True)     # eager: no graphs
        x = torch.randint(0, 256, (B, H, W, 3), dtype=torch.uint8, device=device)
        y = torch.empty(B, H, W, 3, dtype=torch.uint8, device=device)
        with torch.inference_mode():
            old = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True
            for _ in range(3):
                pipe.colorize_frames(x, out=y)
            torch.cuda.synchronize(device)
            with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(10):
                    pipe.colorize_frames(x, out=y)
                torch.cuda.synchronize(device)
            torch.backends.cudnn.benchmark = old
        ka = prof.key_averages()
        table = None
        for key in ("self_device_time_total", "self_cuda_time_total"):
            try:
                table = ka.table(sort_by=key, row_limit=15, max_name_column_width=70)
                break
            except Exception:
                continue
        text = f"== engine {name}: {B}x{H}x{W}, working size {sz}, 10 calls (eager, graphs off) ==\n{table}\n"
        (out / f"profile_{name}.txt").write_text(text)
