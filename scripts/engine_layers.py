"""Per-op device time of the engine's network, eager (the kernels the graphs replay).

    python3 scripts/engine_layers.py [--backbone vgg16] [--output ab] [--size 512] [--batch 32]

Each op is bracketed by CUDA events after a warm-up with cuDNN autotuning on, so the
table shows where a batch's time goes (conv: TFLOP/s; memory-bound ops: GB/s moved).
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tint.engine import kernels as K
from tint.bench.gpu import random_model
from tint.engine.graphs import Engine


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="vgg16")
    ap.add_argument("--output", default="ab")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--triton-convs", type=int, default=1, help="1: stem and narrow head convs in Triton")
    a = ap.parse_args()
    dev = torch.device("cuda")
    net = Engine(random_model(a.backbone, a.output).to(dev), "fp16", triton_convs=bool(a.triton_convs)).net
    rows = {}
    order = []

    def timed(name, fn, flops=None):
        def wrap(*args, **kw):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            y = fn(*args, **kw)
            e.record()
            p = args[1] if name == "conv" else None
            wshape = tuple((net.convs[p] if isinstance(p, int) else p)[0].shape) if p is not None else ""
            key = f"{name} {tuple(y.shape)} {wshape}"
            if key not in rows:
                order.append(key)
                rows[key] = []
            rows[key].append((s, e, flops(args, y) if flops else None, y.numel() * y.element_size()))
            return y
        return wrap

    def conv_flops(args, y):
        p = args[1] if not isinstance(args[1], int) else net.convs[args[1]]
        w = p[0]
        return 2 * y.shape[0] * y.shape[2] * y.shape[3] * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]

    net.conv = timed("conv", net.conv, conv_flops)
    for name in ("max_pool2x2", "head_step", "head_out", "stem_conv", "merge_gemm", "narrow_conv"):
        setattr(K, name, timed(name, getattr(K, name)))
    L = torch.full((a.batch, 1, a.size, a.size), 50.0, device=dev)
    torch.backends.cudnn.benchmark = True
    with torch.no_grad():
        for _ in range(3):
            net(L)
        torch.cuda.synchronize()
        rows.clear(), order.clear()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(a.iters):
            net(L)
        e.record()
        torch.cuda.synchronize()
    total = s.elapsed_time(e) / a.iters
    print(f"{a.backbone} {a.output} {a.size}x{a.size} B={a.batch}: {total:.3f} ms/batch eager "
          f"({a.batch / total * 1e3:.0f} img/s); per op (median of {a.iters}):")
    acc = 0.0
    for key in order:
        ts = sorted(x[0].elapsed_time(x[1]) for x in rows[key])
        per = len(ts) // a.iters
        ms = ts[len(ts) // 2] * per
        acc += ms
        fl = rows[key][0][2]
        fl = sum(x[2] for x in rows[key][:per]) if fl else None
        extra = f"{fl / ms / 1e9:7.0f} TF/s" if fl else f"{rows[key][0][3] * per / ms / 1e6:7.0f} GB/s(out)"
        print(f"  {ms:7.3f} ms {100 * ms / total:5.1f}%  {extra}  {key}" + (f" x{per}" if per > 1 else ""))
    print(f"  sum {acc:.3f} ms; rest (stem, adds, launch gaps) {total - acc:.3f} ms")


if __name__ == "__main__":
    main()
