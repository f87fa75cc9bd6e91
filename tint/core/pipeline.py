"""The pixel pipeline: lightness -> working size -> network -> chroma -> join with the
full-resolution lightness.  ``Pipeline`` composes it once; its steps are the functions
below, on tensors, with bounded tiles for big arrays.

Low in the stack so that everything runs it: ``tint.api.Runner`` (images, arrays,
tensors, frames), the engine's kernels (their references), video and the camera
(``Runner.pipeline``), the benchmark and training (``Pipeline`` around a bare model)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .color import gray_to_lightness, lab_to_rgb, rgb_to_lightness
from .errors import TintError
from .pixels import check_saturation, check_size, working_shape


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


# --------------------------------------------------------------------------- the full-resolution stages
def lightness(x: torch.Tensor) -> torch.Tensor:
    """(B, 1|3, H, W) float in [0, 1] (gray or sRGB) -> L (B, 1, H, W) in [0, 100]."""
    return gray_to_lightness(x) if x.shape[1] == 1 else rgb_to_lightness(x)


def lightness_u8(x: torch.Tensor) -> torch.Tensor:
    """uint8 frames (B, H, W, C), C in {1, 3} -> L (B, 1, H, W) float32 in [0, 100].
    (``tint.engine.kernels.lightness_u8`` is the fused kernel of this.)"""
    return lightness(x.permute(0, 3, 1, 2).float() / 255.0)


def to_u8(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (B, 3, H, W) float in [0, 1] -> uint8, same layout (round half up, as everywhere)."""
    return (rgb * 255.0).round_().to(torch.uint8)


def join_u8(L: torch.Tensor, ab: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Full-res L (B, 1, H, W) [0, 100] + working-size ab (B, 2, h, w) -> uint8 sRGB (B, H, W, 3):
    ``join_chroma`` then ``to_u8``.  (``tint.engine.kernels.join_u8`` is the fused kernel of this.)"""
    r = to_u8(join_chroma(L.float(), ab.float())).permute(0, 2, 3, 1)
    return r if out is None else out.copy_(r)


def to_float(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Array -> (float32 view-or-copy in [0, 1], the scale that maps back)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0, 255.0
    if x.dtype == np.uint16:
        return x.astype(np.float32) / 65535.0, 65535.0
    if x.dtype in (np.float32, np.float64, np.float16):
        return np.clip(x.astype(np.float32, copy=False), 0.0, 1.0), 1.0
    raise TintError(f"unsupported array dtype {x.dtype} (use uint8, uint16 or float in [0, 1])")


def from_float(x: np.ndarray, dtype: np.dtype, scale: float) -> np.ndarray:
    if scale == 1.0:
        return x.astype(dtype, copy=False)
    return np.rint(x * scale).astype(dtype)


# --------------------------------------------------------------------------- the pipeline
Network = Callable[[torch.Tensor], torch.Tensor]   # L_work (B, 1, h, w) float32 [0, 100] -> ab (B, 2, h, w)


@dataclass(frozen=True)
class Pipeline:
    """The one pixel path of tint, whatever the input and whoever calls:

        L (full resolution, [0, 100])
          -> L_work = L resized to the working shape (about size*size pixels, aspect kept)
          -> ab = network(L_work)                            (B, 2, h, w), Lab units
          -> temporal filter (video, camera), then ab * saturation
          -> ab upsampled bilinearly to full resolution, joined with L -> sRGB

    ``network`` is any callable L_work -> ab (``Runner.chroma``; the model itself in
    training).  ``lightness_u8`` / ``join_u8`` are the full-resolution stages of the uint8
    frame path; the engine passes its fused kernels (the same pixels, within one level).
    ``Runner.pipeline`` is the runner's; ``with_network`` swaps the network."""
    network: Network
    multiple: int
    size: int
    saturation: float = 1.0
    lightness_u8: Callable = lightness_u8
    join_u8: Callable = join_u8

    def with_network(self, network: Network) -> "Pipeline":
        return dataclasses.replace(self, network=network)

    def working_shape(self, H: int, W: int, size: int | None = None) -> tuple[int, int]:
        return working_shape(H, W, check_size(size, self.size), self.multiple)

    def _saturation(self, saturation: float | None) -> float:
        return self.saturation if saturation is None else check_saturation(saturation)

    # ---- the steps -----------------------------------------------------------------
    def to_work(self, L: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Full-res L (B, 1, H, W) -> L at the working shape (B, 1, h, w)."""
        return resize_lightness(L, self.working_shape(*L.shape[-2:], size))

    def scale(self, ab: torch.Tensor, saturation: float | None = None) -> torch.Tensor:
        """ab times the saturation (this pipeline's unless given)."""
        return scale_chroma(ab, self._saturation(saturation))

    def chroma(self, L_work: torch.Tensor, saturation: float | None = None, stabilizer=None) -> torch.Tensor:
        """L_work -> ab (B, 2, h, w) on the network's device: the network, then the
        temporal filter ``stabilizer(ab, L_work)`` if any, then the saturation."""
        ab = self.network(L_work)
        if stabilizer is not None:
            ab = stabilizer(ab, L_work.to(ab.device))
        return self.scale(ab, saturation)

    # ---- the paths -----------------------------------------------------------------
    def colorize_lightness(self, L: torch.Tensor, size: int | None = None,
                           saturation: float | None = None) -> torch.Tensor:
        """L (B, 1, H, W) in [0, 100] on any device -> sRGB (B, 3, H, W) float in [0, 1], same device."""
        L = L.float()
        return join_chroma(L, self.chroma(self.to_work(L, size), saturation).to(L.device))

    def colorize_frames(self, frames: torch.Tensor, size: int | None = None, saturation: float | None = None,
                        stabilizer=None, out: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 frames (B, H, W, 1|3) on a device -> uint8 sRGB (B, H, W, 3) there (into ``out``
        if given): the path of ``tint camera``, of ``tint video`` (which reads luma) and of
        the benchmark's frame rows."""
        L = self.lightness_u8(frames)                                    # (B, 1, H, W) float32
        ab = self.chroma(self.to_work(L, size), saturation, stabilizer)   # (B, 2, h, w)
        return self.join_u8(L, ab.to(L.device), out=out)

    def colorize_array(self, color: np.ndarray, size: int | None = None, saturation: float | None = None,
                       out: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 1|3) uint8 / uint16 / float [0, 1] on the host -> sRGB (H, W, 3) of the same
        dtype (written into ``out[..., :3]`` if given), in tiles of at most STRIP_PIXELS:
        memory is the input, the output, one float plane of L and one tile of temporaries."""
        H, W = color.shape[:2]
        L = np.empty((H, W), np.float32)
        for r0, r1, c0, c1 in tiles(H, W):                               # L tile by tile
            f, _ = to_float(color[r0:r1, c0:c1])
            L[r0:r1, c0:c1] = lightness(torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None])[0, 0].numpy()
        Lt = torch.from_numpy(L)[None, None]
        ab = self.chroma(self.to_work(Lt, size), saturation).cpu()
        out = np.empty((H, W, 3), dtype=color.dtype) if out is None else out
        _, scale = to_float(color[:1, :1])
        for r0, r1, c0, c1 in tiles(H, W):                               # join tile by tile
            ab_t = upsample_chroma_rows(ab, H, W, r0, r1, c0, c1)
            rgb = lab_to_rgb(torch.cat((Lt[:, :, r0:r1, c0:c1], ab_t), 1))[0].permute(1, 2, 0).numpy()
            out[r0:r1, c0:c1, :3] = from_float(rgb, color.dtype, scale)
        return out
