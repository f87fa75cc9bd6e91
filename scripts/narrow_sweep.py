"""Time the narrow full-resolution head convs (vgg16 at 512^2, B=32) every way we have:
cuDNN at final-width paddings 8/16/32, and the Triton kernel at each config."""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tint import kernels as K     # noqa: E402


def t(fn, n=20):
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


torch.backends.cudnn.benchmark = True
B, H, W = 32, 512, 512
cl = torch.channels_last
x64 = torch.randn(B, 64, H, W, device="cuda").half().contiguous(memory_format=cl)
L = torch.rand(B, 1, H, W, device="cuda") * 100
for pad in (8, 16, 32):
    w1 = (torch.randn(pad, 64, 3, 3, device="cuda") * 0.05).half().contiguous(memory_format=cl)
    w2 = (torch.randn(pad, pad, 3, 3, device="cuda") * 0.05).half().contiguous(memory_format=cl)
    b1, b2 = torch.zeros(pad, device="cuda").half(), torch.zeros(pad, device="cuda").half()
    y = torch.cudnn_convolution_relu(x64, w1, b1, (1, 1), (1, 1), (1, 1), 1)
    g = (L / 100).half()
    a = t(lambda: torch.cudnn_convolution_relu(x64, w1, b1, (1, 1), (1, 1), (1, 1), 1))
    c = t(lambda: torch.cudnn_convolution_relu(y + g, w2, b2, (1, 1), (1, 1), (1, 1), 1))
    print(f"cuDNN pad {pad:2d}: merge 64->{pad} {a:.3f} ms, add+refine {pad}->{pad} {c:.3f} ms, total {a + c:.3f}", flush=True)
for cin, cout, gray in ((64, 8, False), (8, 8, True)):
    x = x64 if cin == 64 else torch.randn(B, 8, H, W, device="cuda").half().contiguous(memory_format=cl)
    p = K.NarrowConvParams((torch.randn(cout, cin, 3, 3, device="cuda") * 0.05).half(), torch.zeros(cout, device="cuda").half())
    for bp, rows, warps in ((64, 1, 4), (128, 1, 4), (256, 1, 4), (256, 1, 8), (128, 4, 4), (256, 4, 8), (512, 2, 8), (64, 8, 2)):
        out = torch.empty(B, cout, H, W, device="cuda", dtype=torch.half, memory_format=cl)
        g = L if gray else p.b_packed
        fn = K._conv3x3_kernel.fn
        grid = (B * ((H + rows - 1) // rows), (W + bp - 1) // bp)
        ms = t(lambda: fn[grid](x, g, p.w_packed, p.b_packed, out, H, W, CIN=cin, CP=p.CP, COUT=cout, NP=p.NP,
                                GRAY=gray, RELU=True, BLOCK_P=bp, ROWS=rows, num_warps=warps))
        gb = (x.numel() * 2 + out.numel() * 2) / ms / 1e6
        print(f"triton {cin}->{cout} gray={gray} BLOCK_P={bp} ROWS={rows} warps={warps}: {ms:.3f} ms ({gb:.0f} GB/s)", flush=True)
