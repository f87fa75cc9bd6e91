"""Encoder stages: the 2x2 max-pool (e) and the first conv built straight from L (f)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...core.model import LEAKY_SLOPE
from .common import ACTS, HAVE_TRITON, _act, _tile, nhwc_contiguous, tl, triton, triton_enabled
if HAVE_TRITON:                          # defined only where Triton is
    from .common import _act_jit


# =========================================================================== (e) 2x2 max-pool
def max_pool2x2_reference(x: torch.Tensor) -> torch.Tensor:
    """F.max_pool2d(x, 2): (B, C, H, W) -> (B, C, H // 2, W // 2); an odd last row/column is dropped."""
    return F.max_pool2d(x, 2)


if HAVE_TRITON:
    @triton.jit
    def _max_pool2x2_kernel(x_ptr, o_ptr, n_out, H, W, Ho, Wo, C: tl.constexpr,
                            BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        # NHWC: a pixel's C channels are contiguous, so each of the four taps is a
        # (BLOCK_P, BLOCK_C) tile of 16-byte vector loads; every input byte is read once.
        # (PyTorch's NHWC max-pool runs ~8x slower than this at 512x512x64 on an H200.)
        p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)          # output pixel
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        mp = p < n_out
        m = mp[:, None] & (c < C)[None, :]
        xo = p % Wo
        t = p // Wo
        yo = t % Ho
        b = t // Ho
        src = ((b.to(tl.int64) * H + 2 * yo) * W + 2 * xo) * C          # top-left input pixel
        ptr = x_ptr + src[:, None] + c[None, :]
        v = tl.maximum(tl.maximum(tl.load(ptr, m), tl.load(ptr + C, m)),
                       tl.maximum(tl.load(ptr + W * C, m), tl.load(ptr + W * C + C, m)))
        tl.store(o_ptr + p.to(tl.int64)[:, None] * C + c[None, :], v, m)


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` for channels_last (B, C, H, W); same values bit for bit
    (max is exact), NaNs aside (the inputs here are ReLU outputs).  Output channels_last."""
    if x.dim() != 4:
        raise ValueError(f"expected (B, C, H, W), got {tuple(x.shape)}")
    B, C, H, W = x.shape
    Ho, Wo = H // 2, W // 2
    if not triton_enabled(x) or not nhwc_contiguous(x) or x.numel() == 0 or Ho * Wo == 0:
        return max_pool2x2_reference(x)
    out = torch.empty(B, C, Ho, Wo, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    n = B * Ho * Wo
    BLOCK_P, BLOCK_C = _tile(C, 2048)
    _max_pool2x2_kernel[(triton.cdiv(n, BLOCK_P), triton.cdiv(C, BLOCK_C))](
        x, out, n, H, W, Ho, Wo, C=C, BLOCK_P=BLOCK_P, BLOCK_C=BLOCK_C, num_warps=4)
    return out


# =========================================================================== (f) stem conv
# The first conv sees [gray, ones] (two planes, see model.VGG16Encoder) padded to 8
# channels for cuDNN, which then runs a 128x32x16 "indexed" kernel at ~3 % of the tensor
# cores' rate: at 512^2 conv1_1 cost more than conv1_2.  Here its input is built in
# registers straight from L: a 16-wide patch (9 taps + zero rows) of gray and of the
# inside-the-image mask (the ones plane under zero padding), two small dots, bias,
# activation, one NHWC write.  No 8-channel input tensor exists at all.
def stem_conv_reference(L: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, act: str | None) -> torch.Tensor:
    """L (B, 1, h, w) in [0, 100] -> act(conv3x3([L / 100, 1, 0...], weight) + bias), zero
    padding; weight (Cout, Cin >= 2, 3, 3): plane 0 sees gray, plane 1 the ones plane, the
    rest zeros.  Computed in weight's dtype."""
    gray = (L / 100.0).to(weight.dtype)
    x = torch.zeros(L.shape[0], weight.shape[1], *L.shape[2:], dtype=weight.dtype, device=L.device)
    x[:, 0:1] = gray
    x[:, 1] = 1.0
    return _act(F.conv2d(x, weight, bias.to(weight.dtype), padding=1), act)


class StemParams:
    """The first conv laid out for ``_stem_kernel``: (2, 16, Cout) [plane, tap, out], taps
    9..15 zero; ``weight``/``bias`` kept for the reference."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, act: str | None):
        if act not in ACTS:
            raise ValueError(f"stem activation must be one of {list(ACTS)}, got {act!r}")
        co = weight.shape[0]
        self.weight, self.bias, self.act = weight, bias, act
        self.cout = co
        wk = weight.detach()[:, :2].float().reshape(co, 2, 9).permute(1, 2, 0)    # (2, 9, Cout)
        wp = torch.zeros(2, 16, co, dtype=torch.float32, device=weight.device)
        wp[:, :9] = wk
        self.w_packed = wp.to(weight.dtype).contiguous()
        self.b_packed = bias.detach().float().contiguous()


if HAVE_TRITON:
    @triton.jit
    def _stem_kernel(L_ptr, w_ptr, b_ptr, o_ptr, H, W, slope,
                     COUT: tl.constexpr, ACT: tl.constexpr, BLOCK_P: tl.constexpr):
        row = tl.program_id(0)                                   # b * H + y
        b = row // H
        y = row % H
        xs = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
        k = tl.arange(0, 16)
        yy = y + (k // 3 - 1)                                     # (16,)
        xx = xs[:, None] + (k % 3 - 1)[None, :]                    # (P, 16)
        ok = ((k < 9) & (yy >= 0) & (yy < H))[None, :] & (xx >= 0) & (xx < W)
        src = L_ptr + b.to(tl.int64) * H * W
        g = tl.load(src + yy[None, :] * W + xx, ok, other=0.0) * 0.01
        n = tl.arange(0, COUT)
        wg = tl.load(w_ptr + k[:, None] * COUT + n[None, :])
        w1 = tl.load(w_ptr + (16 + k[:, None]) * COUT + n[None, :])
        acc = tl.dot(g.to(wg.dtype), wg)
        acc = tl.dot(ok.to(wg.dtype), w1, acc)
        acc = _act_jit(acc + tl.load(b_ptr + n)[None, :], ACT, slope)
        o = o_ptr + (row.to(tl.int64) * W + xs[:, None]) * COUT + n[None, :]
        tl.store(o, acc.to(o_ptr.dtype.element_ty), (xs < W)[:, None])


def stem_fast_ok(p: StemParams) -> bool:
    """The kernel needs a power-of-two Cout of at least 16 (tl.dot) and a 16-bit dtype."""
    co = p.cout
    return co >= 16 and co & (co - 1) == 0 and p.w_packed.dtype in (torch.float16, torch.bfloat16)


def stem_conv(L: torch.Tensor, p: StemParams) -> torch.Tensor:
    """``stem_conv_reference`` -> (B, Cout, h, w); fast path output channels_last."""
    if L.dim() != 4 or L.shape[1] != 1:
        raise ValueError(f"stem_conv: expected L (B, 1, h, w), got {tuple(L.shape)}")
    if not triton_enabled(L, p.w_packed) or not stem_fast_ok(p) or L.numel() == 0:
        return stem_conv_reference(L, p.weight, p.bias, p.act)
    B, _, H, W = L.shape
    L = L.float().contiguous()
    out = torch.empty(B, p.cout, H, W, dtype=p.w_packed.dtype, device=L.device, memory_format=torch.channels_last)
    BLOCK_P = min(128, max(16, triton.next_power_of_2(W)))
    _stem_kernel[(B * H, triton.cdiv(W, BLOCK_P))](L, p.w_packed, p.b_packed, out, H, W, LEAKY_SLOPE,
                                                   COUT=p.cout, ACT=ACTS[p.act], BLOCK_P=BLOCK_P, num_warps=4)
    return out
