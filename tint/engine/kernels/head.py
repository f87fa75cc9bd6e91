"""Head stages: upsample + BN(tap) (c), the out conv and its readout (d), and the narrow
full-resolution tail: the last merge as two GEMMs and a tap sum, refine as FMAs (g)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...core.model import LEAKY_SLOPE
from .common import ACTS, HAVE_TRITON, _act, _nhwc, _tile, nhwc_contiguous, tl, triton, triton_enabled
if HAVE_TRITON:                          # defined only where Triton is
    from .common import _act_jit


# =========================================================================== (c) head step
def head_step_reference(x: torch.Tensor, tap: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """up2(x) + tap * scale + shift: x (B, C, h, w), tap (B, C, 2h, 2w), scale/shift (C,).

    The eval-mode BN of a tap is the affine ``tap * scale + shift``; this is the input of
    every merge conv of ``ResidualHead``.
    """
    up = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return up + tap * scale.view(1, -1, 1, 1).to(tap.dtype) + shift.view(1, -1, 1, 1).to(tap.dtype)


if HAVE_TRITON:
    @triton.jit
    def _head_step_kernel(x_ptr, t_ptr, s_ptr, sh_ptr, o_ptr, h, w, H, W, C: tl.constexpr,
                          BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        # One program = BLOCK_P pixels x BLOCK_C channels of one fine row, NHWC: the tap is
        # one contiguous read, the output one contiguous write (vector loads/stores, C a
        # constexpr); the coarse map's 4 gathers per pixel hit L1/L2 (it is 1/4 the size).
        row = tl.program_id(0)                                   # b * H + Y
        b = row // H
        Y = row % H
        X = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
        c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        mc = c < C
        m = (X < W)[:, None] & mc[None, :]
        # F.interpolate(scale 2, bilinear, align_corners=False): half-pixel centres, clamped
        sy = tl.maximum(0.5 * (Y.to(tl.float32) + 0.5) - 0.5, 0.0)
        y0 = tl.minimum(sy.to(tl.int32), h - 1)
        y1 = tl.minimum(y0 + 1, h - 1)
        ly1 = sy - y0.to(tl.float32)
        sx = tl.maximum(0.5 * (X.to(tl.float32) + 0.5) - 0.5, 0.0)
        x0 = tl.minimum(sx.to(tl.int32), w - 1)
        x1 = tl.minimum(x0 + 1, w - 1)
        lx1 = (sx - x0.to(tl.float32))[:, None]
        lx0 = 1.0 - lx1
        cb = c[None, :]
        r0 = x_ptr + (b.to(tl.int64) * h + y0) * w * C                # scalar row bases
        r1 = x_ptr + (b.to(tl.int64) * h + y1) * w * C
        v00 = tl.load(r0 + x0[:, None] * C + cb, m, other=0.0).to(tl.float32)
        v01 = tl.load(r0 + x1[:, None] * C + cb, m, other=0.0).to(tl.float32)
        v10 = tl.load(r1 + x0[:, None] * C + cb, m, other=0.0).to(tl.float32)
        v11 = tl.load(r1 + x1[:, None] * C + cb, m, other=0.0).to(tl.float32)
        up = (1.0 - ly1) * (lx0 * v00 + lx1 * v01) + ly1 * (lx0 * v10 + lx1 * v11)
        fine = row.to(tl.int64) * W * C
        off = X[:, None] * C + cb
        t = tl.load(t_ptr + fine + off, m, other=0.0).to(tl.float32)
        s = tl.load(s_ptr + c, mc, other=0.0)
        sh = tl.load(sh_ptr + c, mc, other=0.0)
        r = up + t * s[None, :] + sh[None, :]
        tl.store(o_ptr + fine + off, r.to(o_ptr.dtype.element_ty), m)


def head_step(x: torch.Tensor, tap: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Fused ``head_step_reference`` -> (B, C, 2h, 2w) in tap's dtype.

    Fast path: x and tap dense channels_last (as the engine keeps them); output channels_last.
    Other layouts take the reference (the engine's NCHW comparison candidate)."""
    B, C, h, w = x.shape
    if tap.shape != (B, C, 2 * h, 2 * w):
        raise ValueError(f"tap {tuple(tap.shape)} is not 2x of x {tuple(x.shape)}")
    if (not triton_enabled(x, tap, scale, shift) or not nhwc_contiguous(tap) or x.dtype != tap.dtype
            or tap.numel() == 0):
        return head_step_reference(x, tap, scale, shift)
    x = _nhwc(x)
    H, W = 2 * h, 2 * w
    out = torch.empty(B, C, H, W, dtype=tap.dtype, device=tap.device, memory_format=torch.channels_last)
    BLOCK_P, BLOCK_C = _tile(C, 2048)
    BLOCK_P = min(BLOCK_P, triton.next_power_of_2(W))
    grid = (B * H, triton.cdiv(W, BLOCK_P), triton.cdiv(C, BLOCK_C))
    _head_step_kernel[grid](x, tap, scale.float().contiguous(), shift.float().contiguous(), out,
                            h, w, H, W, C=C, BLOCK_P=BLOCK_P, BLOCK_C=BLOCK_C, num_warps=4)
    return out


# =========================================================================== (d) head output
def head_out_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       bins: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    """The out conv (3x3, padding 1) and its readout, in float32 -> ab (B, 2, h, w).

    ``bins`` None: the conv output is ab itself (fold AB_SCALE into weight/bias first).
    ``bins`` (Q, 2): annealed mean, softmax(conv(x) / T) @ bins, as Colorizer.readout.
    """
    raw = F.conv2d(x.float(), weight.float(), bias.float(), padding=1)
    if bins is None:
        return raw
    p = torch.softmax(raw / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", p, bins.float())


if HAVE_TRITON:
    @triton.jit
    def _tap_tile(img, y, xs, h, w, k: tl.constexpr, c, F_: tl.constexpr, FP: tl.constexpr):
        # Tap k of a 3x3 conv with zero padding: the (BLOCK_P, FP) NHWC tile of the pixels
        # xs of row y shifted by k's offset, 0 outside the image.  Channels F_USED..FP-1 have
        # zero weights: read them unmasked when the pixel has them (FP <= F_), which keeps
        # the loads whole vectors.
        yy = y + (k // 3 - 1)
        xx = xs + (k % 3 - 1)
        wl = tl.where((yy >= 0) & (yy < h), w, 0)              # row outside: all masked
        mp = (xx >= 0) & (xx < wl)
        mk = mp[:, None] & (c < F_)[None, :] if FP > F_ else mp[:, None] & (c >= 0)[None, :]
        return tl.load(img + (yy * w + xx)[:, None] * F_ + c[None, :], mk, other=0.0)

    @triton.jit
    def _head_out_kernel(x_ptr, w_ptr, b_ptr, bins_ptr, o_ptr, h, w, Q, inv_t,
                         sob, soc, soy, sox,
                         F_: tl.constexpr, F_USED: tl.constexpr, FP: tl.constexpr, COLS: tl.constexpr,
                         QC: tl.constexpr, NQ: tl.constexpr, BINS: tl.constexpr, BLOCK_P: tl.constexpr,
                         PREC: tl.constexpr):
        # 3x3 conv as 9 taps, each a (BLOCK_P, FP) NHWC tile: a pixel's F_ channels are one
        # 16-byte vector (F_ a constexpr), the 9 shifted tiles overlap in L1, so device
        # memory sees x about once.  (The first version gathered a (BLOCK_P, 128) im2col
        # patch through 64-bit pointers and spilled: 1.5 ms instead of ~30 us at B=16, 512^2.)
        row = tl.program_id(0)                                   # b * h + y
        b = row // h
        y = row % h
        xs = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
        c = tl.arange(0, FP)
        mo = xs < w
        img = x_ptr + b.to(tl.int64) * h * w * F_
        o = o_ptr + b.to(tl.int64) * sob + y * soy + xs * sox
        if BINS:
            # online softmax over Q in chunks of QC (flash-attention style running max); the
            # Q logits per pixel never touch device memory.  Tap tiles are re-read per chunk
            # from L1.  fp16/bf16 dots with fp32 accumulation (exact fp32 when PREC="ieee").
            m_run = tl.full((BLOCK_P,), float("-inf"), tl.float32)
            s_run = tl.zeros((BLOCK_P,), tl.float32)
            a_run = tl.zeros((BLOCK_P,), tl.float32)
            b_run = tl.zeros((BLOCK_P,), tl.float32)
            for qi in tl.static_range(NQ):
                q = qi * QC + tl.arange(0, QC)
                z = tl.zeros((BLOCK_P, QC), tl.float32)
                for k in tl.static_range(9):
                    v = _tap_tile(img, y, xs, h, w, k, c, F_, FP)
                    wt = tl.load(w_ptr + (k * FP + c)[:, None] * COLS + q[None, :])
                    z = tl.dot(v, wt, z, input_precision=PREC)
                bias = tl.load(b_ptr + q)
                z = (z + bias[None, :]) * inv_t
                z = tl.where((q < Q)[None, :], z, float("-inf"))
                m_new = tl.maximum(m_run, tl.max(z, 1))
                alpha = tl.exp(m_run - m_new)
                p = tl.exp(z - m_new[:, None])
                ba = tl.load(bins_ptr + q * 2, q < Q, other=0.0)
                bb = tl.load(bins_ptr + q * 2 + 1, q < Q, other=0.0)
                s_run = s_run * alpha + tl.sum(p, 1)
                a_run = a_run * alpha + tl.sum(p * ba[None, :], 1)
                b_run = b_run * alpha + tl.sum(p * bb[None, :], 1)
                m_run = m_new
            tl.store(o, a_run / s_run, mo)
            tl.store(o + soc, b_run / s_run, mo)
        else:
            # two output channels: a dot would waste 14 of 16 columns; fp32 FMAs, and the
            # sum over channels stays inside a thread (a pixel's FP channels are one vector)
            acc0 = tl.zeros((BLOCK_P,), tl.float32)
            acc1 = tl.zeros((BLOCK_P,), tl.float32)
            for k in tl.static_range(9):
                v = _tap_tile(img, y, xs, h, w, k, c, F_, FP).to(tl.float32)
                w0 = tl.load(w_ptr + (k * 2) * FP + c)               # (9, 2, FP): vector loads
                w1 = tl.load(w_ptr + (k * 2 + 1) * FP + c)
                acc0 += tl.sum(v * w0[None, :], 1)
                acc1 += tl.sum(v * w1[None, :], 1)
            tl.store(o, acc0 + tl.load(b_ptr), mo)
            tl.store(o + soc, acc1 + tl.load(b_ptr + 1), mo)


HEAD_OUT_QC = 64
HEAD_OUT_AB_BLOCK = 256


class HeadOutParams:
    """The out conv's weights laid out once for ``_head_out_kernel``.

    "bins": weight (N, F, 3, 3) -> (9, FP, cols) [ky * 3 + kx, c, q] in dtype, FP = F rounded
    up to a power of two (at least 16, tl.dot's smallest K), cols = Q rounded up to QC.
    "ab" (bins None, N = 2): (9, 2, FP) [tap, out channel, c] float32, so a tap's weights are
    two vector loads for the FMAs.  Zero rows/columns as padding.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, bins: torch.Tensor | None,
                 temperature: float, dtype: torch.dtype):
        N, Fc = weight.shape[:2]
        self.weight, self.bias = weight, bias                 # for the reference path
        self.bins = None if bins is None else bins.float().contiguous()
        self.temperature = float(temperature)
        self.F = Fc
        self.Q = N
        if bins is None:
            # only the input channels with a nonzero weight are read (the engine pads the
            # final width 3 to 8 with zero weights): fewer registers, the same result
            used = torch.nonzero(weight.detach().abs().sum((0, 2, 3))).flatten()
            self.F_used = int(used.max()) + 1 if used.numel() else 1
            self.FP = 1 << (self.F_used - 1).bit_length()
            self.NQ, cols, wdtype = 1, 2, torch.float32
        else:
            self.F_used = Fc
            self.FP = max(16, 1 << (Fc - 1).bit_length())
            self.NQ = math.ceil(N / HEAD_OUT_QC)
            cols, wdtype = self.NQ * HEAD_OUT_QC, dtype
        self.cols = cols
        wk = weight.detach().float().permute(2, 3, 1, 0).reshape(9, Fc, N)
        wp = torch.zeros(9, max(self.FP, Fc), cols, dtype=torch.float32, device=weight.device)
        wp[:, :Fc, :N] = wk
        wp = wp[:, : self.FP]
        if bins is None:
            wp = wp.transpose(1, 2)                              # (9, 2, FP)
        self.w_packed = wp.to(wdtype).contiguous()
        bp = torch.zeros(cols, dtype=torch.float32, device=weight.device)
        bp[:N] = bias.detach().float()
        self.b_packed = bp
        self.prec = "ieee" if dtype == torch.float32 else None    # exact fp32 dots when asked

    def packed_weight(self) -> torch.Tensor:
        """(N, F, 3, 3) float32 as the kernel sees it (after the cast to its storage dtype)."""
        wp = self.w_packed.float()
        wp = wp.transpose(1, 2) if self.bins is None else wp     # (9, FP, cols)
        full = wp.new_zeros(9, self.F, self.Q)
        n = min(self.F, wp.shape[1])
        full[:, :n] = wp[:, :n, : self.Q]
        return full.reshape(3, 3, self.F, self.Q).permute(3, 2, 0, 1)


def head_out(x: torch.Tensor, p: HeadOutParams, out: torch.Tensor | None = None) -> torch.Tensor:
    """x (B, F, h, w) -> ab (B, 2, h, w) float32: fused out conv + readout."""
    B, Fc, h, w = x.shape
    if Fc != p.F:
        raise ValueError(f"head_out: x has {Fc} channels, weights expect {p.F}")
    if not triton_enabled(x, p.w_packed) or x.numel() == 0:
        r = head_out_reference(x, p.weight, p.bias, p.bins, p.temperature)
        return r if out is None else out.copy_(r)
    out = torch.empty(B, 2, h, w, dtype=torch.float32, device=x.device) if out is None else out
    bins = p.bins if p.bins is not None else p.b_packed        # unused when BINS is False
    if p.bins is not None and x.dtype != p.w_packed.dtype:
        x = x.to(p.w_packed.dtype)
    x = _nhwc(x)
    if p.bins is not None:
        BLOCK_P, warps = 64, 4
    else:
        # 4 pixels per thread: the 9 taps' weights (uniform, from L1) are loaded once per 4
        BLOCK_P, warps = min(HEAD_OUT_AB_BLOCK, max(16, triton.next_power_of_2(w))), 4
    _head_out_kernel[(B * h, triton.cdiv(w, BLOCK_P))](
        x, p.w_packed, p.b_packed, bins, out, h, w, p.Q, 1.0 / p.temperature, *out.stride(),
        F_=Fc, F_USED=p.F_used, FP=p.FP, COLS=p.cols, QC=HEAD_OUT_QC, NQ=p.NQ, BINS=p.bins is not None,
        BLOCK_P=BLOCK_P, PREC=p.prec, num_warps=warps)
    return out


# =========================================================================== (g) narrow head convs
# The head ends at full working resolution with convs that write only final_width (3)
# channels: the last merge (vgg16: 64 -> 3 after its head step) and refine (3 -> 3).
# cuDNN runs them with tensor-core tiles for wide outputs, padded to 8: 1.6 ms of a
# 12 ms batch at 512^2, B=32, ~4x what their bytes need.  Here:
#   * refine (and a narrow merge): fp32 FMAs per pixel, the 9 shifted input tiles read as
#     vectors from L1 (as the head-out kernel), the gray add fused -> ``narrow_conv``;
#   * a wide merge (C in >= MERGE_GEMM_MIN): the conv is linear in its input, so per tap k
#     its contribution is one 1x1 product, W_k . (up2(x) + s tap + t)
#         = (W_k s) . tap  +  up2(W_k . x + W_k . t)          (bilinear weights sum to 1)
#     i.e. two GEMMs with 9 x 4 output columns, tap (full res) and x (half res), and a
#     kernel that sums the 9 shifted column groups (zero padding = skipping taps outside),
#     upsampling the half-res one on the fly -> ``merge_gemm``.  The 64-channel head-step
#     tensor is never written: the full-res bytes are tap (read once) + 40 columns (write
#     + read), instead of tap + head step (read + write + read).
NARROW = 4              # the narrow convs' output channels (final_width <= 4, zero-padded)
MERGE_GEMM_MIN = 48     # below this many input channels the GEMM's 40 columns cost more than the input


def narrow_conv_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, act: str | None,
                          L: torch.Tensor | None = None) -> torch.Tensor:
    """act(conv3x3(x, weight) + bias), zero padding, plus L / 100 on every channel when L
    (B, 1, h, w) is given (the head's ``x + gray`` before refine).  float32 math, x's dtype out."""
    y = _act(F.conv2d(x.float(), weight.float(), bias.float(), padding=1), act)
    return (y if L is None else y + L.float() / 100.0).to(x.dtype)


class NarrowParams:
    """A 3x3 conv with at most NARROW outputs, laid out for ``_narrow_conv_kernel``:
    (9, NARROW, FP) [tap, out, in] float32, FP = the used input channels rounded up to a
    power of two (the engine pads widths with zero weights; those channels are not read)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, act: str | None):
        co, ci = weight.shape[:2]
        if co > NARROW or weight.shape[-2:] != (3, 3):
            raise ValueError(f"narrow conv: at most {NARROW} outputs of a 3x3 conv, got {tuple(weight.shape)}")
        if act not in ACTS:
            raise ValueError(f"activation must be one of {list(ACTS)}, got {act!r}")
        w = weight.detach().float()
        self.weight = w.new_zeros(NARROW, ci, 3, 3)
        self.weight[:co] = w
        self.bias = w.new_zeros(NARROW)
        self.bias[:co] = bias.detach().float()
        self.act, self.F = act, ci
        used = torch.nonzero(self.weight.abs().sum((0, 2, 3))).flatten()
        self.F_used = int(used.max()) + 1 if used.numel() else 1
        self.FP = 1 << (self.F_used - 1).bit_length()
        wp = w.new_zeros(9, NARROW, max(self.FP, ci))
        wp[:, :, :ci] = self.weight.permute(2, 3, 0, 1).reshape(9, NARROW, ci)
        self.w_packed = wp[:, :, : self.FP].contiguous()


if HAVE_TRITON:
    @triton.jit
    def _narrow_conv_kernel(x_ptr, w_ptr, b_ptr, L_ptr, o_ptr, h, w, slope,
                            F_: tl.constexpr, FP: tl.constexpr, ACT: tl.constexpr, GRAY: tl.constexpr,
                            BLOCK_P: tl.constexpr):
        # As the head-out kernel: 9 taps, each a (BLOCK_P, FP) NHWC tile whose FP channels
        # are one vector in one thread, so the channel sums need no shuffles; 4 outputs.
        row = tl.program_id(0)                                   # b * h + y
        b = row // h
        y = row % h
        xs = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
        c = tl.arange(0, FP)
        img = x_ptr + b.to(tl.int64) * h * w * F_
        a0 = tl.zeros((BLOCK_P,), tl.float32)
        a1 = tl.zeros((BLOCK_P,), tl.float32)
        a2 = tl.zeros((BLOCK_P,), tl.float32)
        a3 = tl.zeros((BLOCK_P,), tl.float32)
        for k in tl.static_range(9):
            v = _tap_tile(img, y, xs, h, w, k, c, F_, FP).to(tl.float32)
            wk = w_ptr + k * 4 * FP + c
            a0 += tl.sum(v * tl.load(wk)[None, :], 1)
            a1 += tl.sum(v * tl.load(wk + FP)[None, :], 1)
            a2 += tl.sum(v * tl.load(wk + 2 * FP)[None, :], 1)
            a3 += tl.sum(v * tl.load(wk + 3 * FP)[None, :], 1)
        a0 = _act_jit(a0 + tl.load(b_ptr), ACT, slope)
        a1 = _act_jit(a1 + tl.load(b_ptr + 1), ACT, slope)
        a2 = _act_jit(a2 + tl.load(b_ptr + 2), ACT, slope)
        a3 = _act_jit(a3 + tl.load(b_ptr + 3), ACT, slope)
        mo = xs < w
        if GRAY:
            g = tl.load(L_ptr + row.to(tl.int64) * w + xs, mo, other=0.0) * 0.01
            a0, a1, a2, a3 = a0 + g, a1 + g, a2 + g, a3 + g
        acc = tl.reshape(tl.join(tl.join(a0, a2), tl.join(a1, a3)), (BLOCK_P, 4))   # [a0 a1 a2 a3]
        n = tl.arange(0, 4)
        o = o_ptr + (row.to(tl.int64) * w + xs)[:, None] * 4 + n[None, :]
        tl.store(o, acc.to(o_ptr.dtype.element_ty), mo[:, None])


def _gray_arg(L: torch.Tensor | None, x: torch.Tensor, B: int, h: int, w: int) -> torch.Tensor:
    if L is None:
        return x
    if L.shape != (B, 1, h, w):
        raise ValueError(f"L {tuple(L.shape)} does not match the head's ({B}, 1, {h}, {w})")
    return L.float().contiguous()


def narrow_conv(x: torch.Tensor, p: NarrowParams, L: torch.Tensor | None = None) -> torch.Tensor:
    """``narrow_conv_reference`` -> (B, NARROW, h, w) in x's dtype, channels_last."""
    B, Fc, h, w = x.shape
    if Fc != p.F:
        raise ValueError(f"narrow_conv: x has {Fc} channels, weights expect {p.F}")
    if not triton_enabled(x, p.w_packed) or x.numel() == 0:
        y = narrow_conv_reference(x, p.weight, p.bias, p.act, L)
        return y.contiguous(memory_format=torch.channels_last)
    x = _nhwc(x)
    gray = _gray_arg(L, x, B, h, w)
    out = torch.empty(B, NARROW, h, w, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    # measured at 512^2, B=32 on an H200: FP=4 refine 0.113 ms at 512 px per program, 0.134 at 256
    BLOCK_P = min(512 if p.FP <= 4 else 256 if p.FP <= 8 else 128, max(16, triton.next_power_of_2(w)))
    _narrow_conv_kernel[(B * h, triton.cdiv(w, BLOCK_P))](
        x, p.w_packed, p.bias, gray, out, h, w, LEAKY_SLOPE, F_=Fc, FP=p.FP, ACT=ACTS[p.act],
        GRAY=L is not None, BLOCK_P=BLOCK_P, num_warps=4)
    return out


def merge_gemm_reference(x: torch.Tensor, tap: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                         weight: torch.Tensor, bias: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """The head's last merge as the model computes it, plus the gray add before refine:
    relu(conv3x3(up2(x) + tap * scale + shift, weight) + bias) + L / 100, float32."""
    step = head_step_reference(x.float(), tap.float(), scale.float(), shift.float())
    return narrow_conv_reference(step, weight, bias, "relu", L)


class MergeParams:
    """The last merge (weight (Co <= NARROW, C, 3, 3), bias, its tap's BN scale/shift) as
    the two GEMMs' matrices: (C, GC) each, column 4 k + j = tap k's weights of output j
    (GC = 36 rounded up to 40 for 16-byte rows); the tap's scaled by the BN scale, and the
    shift's contribution as a bias of the half-res GEMM."""

    GC = 40

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                 dtype: torch.dtype):
        co, C = weight.shape[:2]
        if co > NARROW or weight.shape[-2:] != (3, 3):
            raise ValueError(f"merge: at most {NARROW} outputs of a 3x3 conv, got {tuple(weight.shape)}")
        self.C = C
        wk = weight.detach().double().permute(1, 2, 3, 0).reshape(C, 9, co)      # [c, k, j]
        wx = wk.new_zeros(C, 9, NARROW)
        wx[:, :, :co] = wk
        wx = torch.cat((wx.reshape(C, 36), wx.new_zeros(C, self.GC - 36)), 1)   # (C, GC)
        self.w_tap = (wx * scale.double()[:, None]).to(dtype).contiguous()
        self.w_x = wx.to(dtype).contiguous()
        self.b_x = (shift.double() @ wx).to(dtype)                              # (GC,)
        self.b_out = torch.zeros(NARROW, dtype=torch.float32, device=weight.device)
        self.b_out[:co] = bias.detach().float()


def merge_taps_reference(g: torch.Tensor, u: torch.Tensor, bias: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """g (B, h, w, GC) and u (B, h/2, w/2, GC) the two GEMMs' columns -> (B, NARROW, h, w)
    float32: relu(sum over taps k of the (g + up2(u)) column group k shifted by k's offset,
    zero outside the image, + bias) + L / 100."""
    B, h, w, GC = g.shape
    up = F.interpolate(u.permute(0, 3, 1, 2).float(), size=(h, w), mode="bilinear", align_corners=False)
    t = g.float() + up.permute(0, 2, 3, 1)
    t = F.pad(t[..., :36].reshape(B, h, w, 9, NARROW), (0, 0, 0, 0, 1, 1, 1, 1))    # zero rows/cols around
    acc = sum(t[:, k // 3: k // 3 + h, k % 3: k % 3 + w, k] for k in range(9))       # (B, h, w, NARROW)
    y = F.relu(acc + bias.float()) + L.float().reshape(B, h, w, 1) / 100.0
    return y.permute(0, 3, 1, 2)


if HAVE_TRITON:
    @triton.jit
    def _merge_taps_kernel(g_ptr, u_ptr, b_ptr, L_ptr, o_ptr, h, w, hu, wu,
                           GC: tl.constexpr, BLOCK_P: tl.constexpr):
        # Per pixel and tap: one 8-byte vector of g (4 columns) and the 4 bilinear corners
        # of u's group (u is 1/4 the size: L1/L2 hits); fp32 sums, one 8-byte store.
        row = tl.program_id(0)                                   # b * h + y
        b = row // h
        y = row % h
        xs = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
        n = tl.arange(0, 4)[None, :]
        gi = g_ptr + b.to(tl.int64) * h * w * GC
        ui = u_ptr + b.to(tl.int64) * hu * wu * GC
        acc = tl.zeros((BLOCK_P, 4), tl.float32)
        for k in tl.static_range(9):
            yy = y + (k // 3 - 1)
            xx = xs + (k % 3 - 1)
            wl = tl.where((yy >= 0) & (yy < h), w, 0)              # row outside: all masked
            m = ((xx >= 0) & (xx < wl))[:, None] & (n >= 0)
            ch = k * 4 + n
            v = tl.load(gi + (yy * w + xx)[:, None] * GC + ch, m, other=0.0).to(tl.float32)
            # F.interpolate(scale 2, bilinear, align_corners=False) at (yy, xx), as head_step
            sy = tl.maximum(0.5 * (yy.to(tl.float32) + 0.5) - 0.5, 0.0)
            y0 = tl.minimum(sy.to(tl.int32), hu - 1)
            y1 = tl.minimum(y0 + 1, hu - 1)
            ly1 = sy - y0.to(tl.float32)
            sx = tl.maximum(0.5 * (xx.to(tl.float32) + 0.5) - 0.5, 0.0)
            x0 = tl.minimum(sx.to(tl.int32), wu - 1)
            x1 = tl.minimum(x0 + 1, wu - 1)
            lx1 = (sx - x0.to(tl.float32))[:, None]
            r0 = ui + y0 * wu * GC
            r1 = ui + y1 * wu * GC
            u00 = tl.load(r0 + x0[:, None] * GC + ch, m, other=0.0).to(tl.float32)
            u01 = tl.load(r0 + x1[:, None] * GC + ch, m, other=0.0).to(tl.float32)
            u10 = tl.load(r1 + x0[:, None] * GC + ch, m, other=0.0).to(tl.float32)
            u11 = tl.load(r1 + x1[:, None] * GC + ch, m, other=0.0).to(tl.float32)
            acc += v + (1.0 - ly1) * ((1.0 - lx1) * u00 + lx1 * u01) + ly1 * ((1.0 - lx1) * u10 + lx1 * u11)
        mo = xs < w
        g = tl.load(L_ptr + row.to(tl.int64) * w + xs, mo, other=0.0) * 0.01
        acc = tl.maximum(acc + tl.load(b_ptr + n), 0.0) + g[:, None]
        o = o_ptr + (row.to(tl.int64) * w + xs)[:, None] * 4 + n
        tl.store(o, acc.to(o_ptr.dtype.element_ty), mo[:, None])


def merge_gemm(x: torch.Tensor, tap: torch.Tensor, p: MergeParams, L: torch.Tensor) -> torch.Tensor:
    """``merge_gemm_reference`` -> (B, NARROW, h, w) in tap's dtype, channels_last:
    two GEMMs (cuBLAS) and the tap sum (Triton on CUDA, ``merge_taps_reference`` elsewhere)."""
    B, C, hu, wu = x.shape
    h, w = 2 * hu, 2 * wu
    if tap.shape != (B, C, h, w) or C != p.C:
        raise ValueError(f"merge: tap {tuple(tap.shape)} / x {tuple(x.shape)} do not fit weights for {p.C} channels")
    if L is None:
        raise ValueError("merge_gemm: L (the gray add) is required")
    gray = _gray_arg(L, tap, B, h, w)
    dt = p.w_tap.dtype
    g = tap.to(dt).permute(0, 2, 3, 1).reshape(-1, C) @ p.w_tap                 # (B h w, GC)
    u = torch.addmm(p.b_x, x.to(dt).permute(0, 2, 3, 1).reshape(-1, C), p.w_x)  # (B hu wu, GC)
    g, u = g.view(B, h, w, p.GC), u.view(B, hu, wu, p.GC)
    if not triton_enabled(g, u, gray) or tap.numel() == 0:
        y = merge_taps_reference(g, u, p.b_out, gray)
        return y.to(dt).contiguous(memory_format=torch.channels_last)
    out = torch.empty(B, NARROW, h, w, dtype=dt, device=tap.device, memory_format=torch.channels_last)
    BLOCK_P = min(128, max(16, triton.next_power_of_2(w)))
    _merge_taps_kernel[(B * h, triton.cdiv(w, BLOCK_P))](g, u, p.b_out, gray, out, h, w, hu, wu,
                                                        GC=p.GC, BLOCK_P=BLOCK_P, num_warps=4)
    return out
