"""The frame's way in and out: uint8 RGB -> lightness at full resolution (a), and working-size
ab + full-resolution L -> uint8 sRGB (b)."""
from __future__ import annotations

import torch

from ...core import color
from ...core import pipeline
from .common import HAVE_TRITON, tl, triton, triton_enabled


# Constants exactly as tint.core.color uses them (rounded to float32 where a kernel sees them).
_Y_ROW = color._RGB_TO_XYZ[1]
_XYZ_TO_RGB = torch.linalg.inv(torch.tensor(color._RGB_TO_XYZ, dtype=torch.float64)).tolist()
_WX, _, _WZ = color._WHITE_D65

_LUTS: dict = {}


def srgb_lut(device) -> torch.Tensor:
    """(256,) float32: srgb_to_linear(v / 255) for every uint8 v, computed by the very ops
    the reference runs, so a kernel that looks values up matches it bit for bit."""
    key = str(device)
    if key not in _LUTS:
        v = torch.arange(256, dtype=torch.float32, device=device) / 255.0
        _LUTS[key] = color.srgb_to_linear(v).contiguous()
    return _LUTS[key]


# =========================================================================== (a) input stage
def lightness_u8_reference(x: torch.Tensor) -> torch.Tensor:
    """uint8 frames (B, H, W, C), C in {1, 3} -> L (B, 1, H, W) float32 in [0, 100]:
    the pixel pipeline's own step, ``tint.core.pipeline.lightness_u8``."""
    return pipeline.lightness_u8(x)


if HAVE_TRITON:
    @triton.jit
    def _lightness_u8_kernel(x_ptr, lut_ptr, out_ptr, n_pix, ry, gy, by, eps, kappa,
                             C: tl.constexpr, BLOCK: tl.constexpr):
        # One pass: 3 bytes in, 4 bytes out per pixel; the sRGB curve is a 256-entry
        # table (L1-resident), leaving one cube root per pixel.
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n_pix
        if C == 3:
            r = tl.load(x_ptr + offs * 3, m, other=0).to(tl.int32)
            g = tl.load(x_ptr + offs * 3 + 1, m, other=0).to(tl.int32)
            b = tl.load(x_ptr + offs * 3 + 2, m, other=0).to(tl.int32)
            y = ry * tl.load(lut_ptr + r) + gy * tl.load(lut_ptr + g) + by * tl.load(lut_ptr + b)
        else:
            y = tl.load(lut_ptr + tl.load(x_ptr + offs, m, other=0).to(tl.int32))
        cube = tl.exp2(tl.log2(tl.maximum(y, eps)) * (1.0 / 3.0))
        f = tl.where(y > eps, cube, kappa * y + 16.0 / 116.0)
        tl.store(out_ptr + offs, 116.0 * f - 16.0, m)


def lightness_u8(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (B, H, W, C) contiguous, C in {1, 3} -> L (B, 1, H, W) float32 [0, 100]."""
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[3] not in (1, 3):
        raise ValueError(f"expected uint8 frames (B, H, W, 1|3), got {x.dtype} {tuple(x.shape)}")
    B, H, W, C = x.shape
    if not triton_enabled(x):
        L = lightness_u8_reference(x)
        return L if out is None else out.copy_(L)
    x = x.contiguous()
    out = torch.empty(B, 1, H, W, dtype=torch.float32, device=x.device) if out is None else out
    assert out.is_contiguous() and out.shape == (B, 1, H, W) and out.dtype == torch.float32
    n = B * H * W
    BLOCK = 1024
    _lightness_u8_kernel[(triton.cdiv(n, BLOCK),)](
        x, srgb_lut(x.device), out, n, _Y_ROW[0], _Y_ROW[1], _Y_ROW[2], color._EPS, color._KAPPA,
        C=C, BLOCK=BLOCK, num_warps=4)
    return out


# =========================================================================== (b) output stage
def join_u8_reference(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """L (B, 1, H, W) [0, 100] + working-size ab (B, 2, h, w) -> uint8 sRGB (B, H, W, 3).

    The pixel pipeline's own step, ``tint.core.pipeline.join_u8``: ``join_chroma`` then
    ``(rgb * 255).round()``, as Runner.colorize_tensor does.
    """
    return pipeline.join_u8(L, ab)


if HAVE_TRITON:
    @triton.jit
    def _join_u8_kernel(L_ptr, ab_ptr, out_ptr, H, W, h, w, scale_h, scale_w,
                        sLb, sLy, sLx, sab_b, sab_c, sab_y, sab_x, so_b, so_y, so_x, so_c,
                        m00, m01, m02, m10, m11, m12, m20, m21, m22, wx, wz, kappa,
                        BLOCK_W: tl.constexpr):
        # One program = BLOCK_W pixels of one output row: the full-res frame is read once
        # (L) and written once (uint8); ab at the working size stays in L1/L2.
        row = tl.program_id(0)
        b = (row // H).to(tl.int64)
        y = row % H
        xs = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
        m = xs < W
        # F.interpolate(bilinear, align_corners=False): half-pixel centres, clamped at 0.
        sy = tl.maximum(scale_h * (y.to(tl.float32) + 0.5) - 0.5, 0.0)
        y0 = tl.minimum(sy.to(tl.int32), h - 1)
        y1 = tl.minimum(y0 + 1, h - 1)
        ly1 = sy - y0.to(tl.float32)
        ly0 = 1.0 - ly1
        sx = tl.maximum(scale_w * (xs.to(tl.float32) + 0.5) - 0.5, 0.0)
        x0 = tl.minimum(sx.to(tl.int32), w - 1)
        x1 = tl.minimum(x0 + 1, w - 1)
        lx1 = sx - x0.to(tl.float32)
        lx0 = 1.0 - lx1
        pa = ab_ptr + b * sab_b
        pb = pa + sab_c
        r0 = y0 * sab_y
        r1 = y1 * sab_y
        c0 = x0 * sab_x
        c1 = x1 * sab_x
        a = ly0 * (lx0 * tl.load(pa + r0 + c0, m, other=0.0).to(tl.float32)
                   + lx1 * tl.load(pa + r0 + c1, m, other=0.0).to(tl.float32)) \
            + ly1 * (lx0 * tl.load(pa + r1 + c0, m, other=0.0).to(tl.float32)
                     + lx1 * tl.load(pa + r1 + c1, m, other=0.0).to(tl.float32))
        bb = ly0 * (lx0 * tl.load(pb + r0 + c0, m, other=0.0).to(tl.float32)
                    + lx1 * tl.load(pb + r0 + c1, m, other=0.0).to(tl.float32)) \
            + ly1 * (lx0 * tl.load(pb + r1 + c0, m, other=0.0).to(tl.float32)
                     + lx1 * tl.load(pb + r1 + c1, m, other=0.0).to(tl.float32))
        L = tl.load(L_ptr + b * sLb + y * sLy + xs * sLx, m, other=0.0).to(tl.float32)
        # Lab -> XYZ (tint.core.color.lab_to_rgb, same thresholds; z clipped at 0 like skimage)
        fy = (L + 16.0) / 116.0
        fx = fy + a / 500.0
        fz = tl.maximum(fy - bb / 200.0, 0.0)
        X = tl.where(fx > 0.2068966, fx * fx * fx, (fx - 16.0 / 116.0) / kappa) * wx
        Y = tl.where(fy > 0.2068966, fy * fy * fy, (fy - 16.0 / 116.0) / kappa)
        Z = tl.where(fz > 0.2068966, fz * fz * fz, (fz - 16.0 / 116.0) / kappa) * wz
        o = out_ptr + b * so_b + y * so_y + xs * so_x
        for c in tl.static_range(3):
            if c == 0:
                v = m00 * X + m01 * Y + m02 * Z
            elif c == 1:
                v = m10 * X + m11 * Y + m12 * Z
            else:
                v = m20 * X + m21 * Y + m22 * Z
            g = 1.055 * tl.exp2(tl.log2(tl.maximum(v, 0.0031308)) * (1.0 / 2.4)) - 0.055
            v = tl.where(v > 0.0031308, g, 12.92 * v)
            v = tl.minimum(tl.maximum(v, 0.0), 1.0)
            q = tl.floor(v * 255.0 + 0.5)
            tl.store(o + c * so_c, q.to(tl.uint8), m)


def join_u8(L: torch.Tensor, ab: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Full-res L (B, 1, H, W) float + working-size ab (B, 2, h, w) -> uint8 (B, H, W, 3).

    ``out`` may be any (B, H, W, 3) uint8 view (e.g. ``t.permute(0, 2, 3, 1)`` of a
    (B, 3, H, W) tensor).  Matches ``join_u8_reference`` within one level (rounding of the
    last float32 bit can flip a .5 tie).
    """
    if L.dim() != 4 or L.shape[1] != 1 or ab.dim() != 4 or ab.shape[:2] != (L.shape[0], 2):
        raise ValueError(f"expected L (B, 1, H, W) and ab (B, 2, h, w), got {tuple(L.shape)}, {tuple(ab.shape)}")
    B, _, H, W = L.shape
    if not triton_enabled(L, ab):
        r = join_u8_reference(L, ab)
        return r if out is None else out.copy_(r)
    out = torch.empty(B, H, W, 3, dtype=torch.uint8, device=L.device) if out is None else out
    assert out.shape == (B, H, W, 3) and out.dtype == torch.uint8
    h, w = ab.shape[-2:]
    m = _XYZ_TO_RGB
    BLOCK_W = 256
    _join_u8_kernel[(B * H, triton.cdiv(W, BLOCK_W))](
        L, ab, out, H, W, h, w, h / H, w / W,
        L.stride(0), L.stride(2), L.stride(3), *ab.stride(), *out.stride(),
        m[0][0], m[0][1], m[0][2], m[1][0], m[1][1], m[1][2], m[2][0], m[2][1], m[2][2],
        _WX, _WZ, color._KAPPA, BLOCK_W=BLOCK_W, num_warps=4)
    return out
