"""Time the head's full-resolution tail, old (cuDNN) vs new (kernels section (g)), by part.

    python3 scripts/tail_sweep.py [--batch 32] [--size 512]

vgg16 "ab" at --size: head step + last merge (64 -> 3) + gray add + refine + head out, as
cuDNN convs (final width padded to 8) and as merge_gemm (two GEMMs + Triton tap sum) +
narrow_conv; the GEMMs as cuBLAS mm and as a cuDNN 1x1 conv; tap-sum and narrow-conv
block sizes; relative error of each tail against the float32 math.  Then tiny-darknet's
tail at 256 (narrow merge 16 -> 3).
"""
import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tint import kernels as K                                   # noqa: E402
from tint.bench import random_model                             # noqa: E402
from tint.engine import FastColorizer                           # noqa: E402


DEV = "cuda"


def timed(fn, n=20):
    if DEV == "cpu":                       # smoke test (TRITON_INTERPRET=1, tiny sizes)
        fn()
        return 0.0
    for _ in range(3):
        fn()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    s.record()
    for _ in range(n):
        fn()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / n


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def tails(backbone, size, B):
    torch.backends.cudnn.benchmark = True
    m = random_model(backbone, "ab").to(DEV)
    old = FastColorizer(m, torch.float16, gpu_layout=True, triton_convs=False)
    new = FastColorizer(m, torch.float16, gpu_layout=True, triton_convs=True)
    L = torch.rand(B, 1, size, size, device=DEV) * 100
    with torch.no_grad():
        taps = old.encode(K.stem_conv(L, K.StemParams(*old.convs[0][:2], old.plan[0][2])), start=1)
        x = old.conv(taps[-1], old.reduce)
        for i, mp in enumerate(old.merges[:-1]):
            t = len(taps) - 2 - i
            x = old.conv(K.head_step(x, taps[t], *old.tap_affine[t]), mp, "relu")
        tap, aff = taps[0], old.tap_affine[0]
        gray = (L / 100).half()
        # float32 reference of the tail
        mw, mb = m.head.merges[-1].weight, m.head.merges[-1].bias
        ref = K.merge_gemm_reference(x.float(), tap.float(), *aff, mw, mb, L)
        ref = F.relu(F.conv2d(ref, m.head.refine.weight, m.head.refine.bias, padding=1))

        def f_old():
            y = old.conv(K.head_step(x, tap, *aff), old.merges[-1], "relu")
            return old.conv(y + gray, old.refine, "relu")

        last = new.merges[-1]

        def f_new():
            y = (K.merge_gemm(x, tap, last, L) if isinstance(last, K.MergeParams)
                 else K.narrow_conv(K.head_step(x, tap, *aff), last, L))
            return K.narrow_conv(y, new.refine)

        rows = [("old tail (cuDNN, pad 8): step + merge + add + refine", timed(f_old), rel(f_old()[:, :3], ref)),
                ("new tail: " + type(last).__name__ + " + narrow refine", timed(f_new), rel(f_new()[:, :3], ref))]
        rows.append(("  head_step alone", timed(lambda: K.head_step(x, tap, *aff)), None))
        ym = (K.merge_gemm(x, tap, last, L) if isinstance(last, K.MergeParams)
              else K.narrow_conv(K.head_step(x, tap, *aff), last, L))
        y = K.narrow_conv(ym, new.refine)
        for bp in (128, 256, 512):
            def nr(bp=bp):
                out = torch.empty_like(ym)
                K._narrow_conv_kernel[(B * size, -(-size // bp))](
                    ym, new.refine.w_packed, new.refine.bias, ym, out, size, size, 0.1, F_=4, FP=4, ACT=0,
                    GRAY=False, BLOCK_P=bp, num_warps=4)
                return out
            rows.append((f"  narrow refine BLOCK_P={bp}", timed(nr), rel(nr()[:, :3], y[:, :3])))
        rows.append(("  head out (ab)", timed(lambda: K.head_out(y, new.out)), None))
        if isinstance(last, K.MergeParams):
            C = tap.shape[1]
            t2, x2 = tap.permute(0, 2, 3, 1).reshape(-1, C), x.permute(0, 2, 3, 1).reshape(-1, C)
            rows.append(("  GEMM tap (cuBLAS mm)", timed(lambda: t2 @ last.w_tap), None))
            w1x1 = last.w_tap.t().contiguous()[:, :, None, None].contiguous(memory_format=torch.channels_last)
            rows.append(("  GEMM tap (cuDNN 1x1 conv)", timed(lambda: F.conv2d(tap, w1x1)), None))
            rows.append(("  GEMM x (addmm)", timed(lambda: torch.addmm(last.b_x, x2, last.w_x)), None))
            g = (t2 @ last.w_tap).view(B, size, size, last.GC)
            u = torch.addmm(last.b_x, x2, last.w_x).view(B, size // 2, size // 2, last.GC)
            Lc = L.contiguous()
            for bp, nw in ((64, 2), (128, 4), (256, 4), (256, 8)):
                def ts(bp=bp, nw=nw):
                    out = torch.empty_like(y)
                    K._merge_taps_kernel[(B * size, -(-size // bp))](g, u, last.b_out, Lc, out, size, size,
                                                                    size // 2, size // 2, GC=last.GC,
                                                                    BLOCK_P=bp, num_warps=nw)
                    return out
                rows.append((f"  tap sum BLOCK_P={bp} warps={nw}", timed(ts), None))
    print(f"{backbone} tail at {size}x{size}, B={B} (ms per batch, rel. error vs float32):")
    for name, ms, err in rows:
        print(f"  {ms:7.3f} ms  {name}" + (f"   rel {err:.2e}" if err is not None else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    global DEV
    DEV = a.device
    tails("vgg16", a.size, a.batch)
    tails("tiny-darknet", 256 if DEV == "cuda" else 32, a.batch)


if __name__ == "__main__":
    main()
