"""The steps of the pixel pipeline, on tensors: lightness to the working size, chroma
scaled, upsampled and joined with the full-resolution lightness, in bounded tiles.

Low in the stack so that ``tint.api``, the engine's kernels (their references), video
and training share them; ``tint.api`` composes them for one image."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .color import lab_to_rgb


STRIP_PIXELS = 1 << 22        # pixels joined per tile: ~4 Mpixel, ~100 MB of float temporaries


def resize_lightness(L: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, h, w), antialiased when shrinking.

    When one side shrinks and the other grows (a thin image), the shrinking side is
    resized first, so no intermediate is larger than the input or the result."""
    H, W = L.shape[-2:]
    h, w = shape
    if (H, W) == (h, w):
        return L
    if (h < H and w > W) or (h > H and w < W):
        L = F.interpolate(L, size=(min(h, H), min(w, W)), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(L, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def _taps(n_out: int, n_in: int, i0: int, i1: int, dtype, device):
    """Outputs i0:i1 of 1-D bilinear upsampling n_in -> n_out (half-pixel centres, edges
    clamped: F.interpolate(align_corners=False)) -> (low index, high index, high weight)."""
    x = ((torch.arange(i0, i1, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    lo = x.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    return lo.to(device), hi.to(device), (x - lo).to(dtype=dtype, device=device)


def upsample_chroma_rows(ab: torch.Tensor, H: int, W: int, r0: int, r1: int,
                         c0: int = 0, c1: int | None = None) -> torch.Tensor:
    """Block [r0:r1, c0:c1] of ab (B, 2, h, w) bilinearly upsampled to (H, W) -> (B, 2, r1-r0, c1-c0).

    Two taps gathered per axis, the axis with the smaller intermediate first: memory is
    about that of the block, whatever H and W are (no interpolation matrix)."""
    c1 = W if c1 is None else c1
    h, w = ab.shape[-2:]
    y0, y1, ty = _taps(H, h, r0, r1, ab.dtype, ab.device)
    x0, x1, tx = _taps(W, w, c0, c1, ab.dtype, ab.device)
    ty = ty[:, None]
    if (r1 - r0) * w <= h * (c1 - c0):                                  # rows first: (B, 2, r, w)
        a = torch.lerp(ab.index_select(2, y0), ab.index_select(2, y1), ty)
        return torch.lerp(a.index_select(3, x0), a.index_select(3, x1), tx)
    a = torch.lerp(ab.index_select(3, x0), ab.index_select(3, x1), tx)  # columns first: (B, 2, h, c)
    return torch.lerp(a.index_select(2, y0), a.index_select(2, y1), ty)


def tiles(H: int, W: int, pixels: int | None = None):
    """(r0, r1, c0, c1) blocks of at most ``pixels`` (default STRIP_PIXELS) covering
    H x W: whole rows when they fit, else pieces of one row."""
    pixels = pixels or STRIP_PIXELS
    cols = min(W, pixels)
    rows = max(1, pixels // cols)
    for r0 in range(0, H, rows):
        for c0 in range(0, W, cols):
            yield r0, min(H, r0 + rows), c0, min(W, c0 + cols)


def scale_chroma(ab: torch.Tensor, saturation: float) -> torch.Tensor:
    """ab times the saturation factor (0 gray, 1 unchanged, 2 twice the chroma)."""
    return ab if saturation == 1.0 else ab * saturation


def join_chroma(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Full-resolution L (B, 1, H, W) [0, 100] + working-size ab (B, 2, h, w) -> sRGB (B, 3, H, W) [0, 1]."""
    ab_full = F.interpolate(ab.to(L.dtype), size=L.shape[-2:], mode="bilinear", align_corners=False)
    return lab_to_rgb(torch.cat((L, ab_full), 1))
