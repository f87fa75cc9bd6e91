"""Colour conversions between sRGB and CIE Lab (D65), as pure tensor functions.

Every function takes and returns tensors shaped ``(*, C, H, W)`` and never
changes its input.  Ranges:

* sRGB: float in ``[0, 1]`` (values outside are clipped by ``lab_to_rgb``).
* L: ``[0, 100]``; a, b: roughly ``[-128, 127]`` (sRGB gamut is about ±110).

The constants are scikit-image's (``skimage.color.rgb2lab``), so the two agree
to float32 rounding; the tests check that.
"""
from __future__ import annotations

import torch

_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_EPS = 0.008856          # (6/29)^3: where the cube root turns linear
_KAPPA = 7.787           # slope of the linear part, in f() units


def _check(x: torch.Tensor, channels: int, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3 or x.shape[-3] != channels:
        raise ValueError(f"{name}: expected shape (*, {channels}, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating tensor, got {x.dtype}")


def _matrix(rows, x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(rows, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,...jhw->...ihw", m, x)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB companding undone: [0, 1] -> linear [0, 1]."""
    return torch.where(x > 0.04045, ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, x / 12.92)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear [0, 1] -> sRGB [0, 1] (not clipped)."""
    return torch.where(x > 0.0031308, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, 12.92 * x)


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _EPS, t.clamp(min=_EPS) ** (1 / 3), _KAPPA * t + 16 / 116)


def _f_inv(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > 0.2068966, t ** 3, (t - 16 / 116) / _KAPPA)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``(*, 3, H, W)`` in [0, 1] -> Lab ``(*, 3, H, W)``, L in [0, 100]."""
    _check(rgb, 3, "rgb_to_lab")
    xyz = _matrix(_RGB_TO_XYZ, srgb_to_linear(rgb))
    white = torch.tensor(_WHITE_D65, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    fx, fy, fz = _f(xyz / white).unbind(-3)
    return torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab ``(*, 3, H, W)`` -> sRGB ``(*, 3, H, W)`` clipped to [0, 1]."""
    _check(lab, 3, "lab_to_rgb")
    L, a, b = lab.unbind(-3)
    fy = (L + 16) / 116
    # z below zero is out of every gamut; skimage clips it the same way.
    f = torch.stack((fy + a / 500, fy, (fy - b / 200).clamp(min=0)), dim=-3)
    white = torch.tensor(_WHITE_D65, dtype=lab.dtype, device=lab.device).view(3, 1, 1)
    xyz = _f_inv(f) * white
    rgb_lin = _matrix(torch.linalg.inv(torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)).tolist(), xyz)
    return linear_to_srgb(rgb_lin).clamp(0, 1)


def rgb_to_lightness(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``(*, 3, H, W)`` in [0, 1] -> L ``(*, 1, H, W)`` in [0, 100].

    Cheaper than ``rgb_to_lab(rgb)[..., :1, :, :]``: only Y is needed.
    """
    _check(rgb, 3, "rgb_to_lightness")
    y = _matrix(_RGB_TO_XYZ[1:2], srgb_to_linear(rgb))
    return 116 * _f(y) - 16


def gray_to_lightness(gray: torch.Tensor) -> torch.Tensor:
    """A gray sRGB value ``(*, 1, H, W)`` in [0, 1] -> L in [0, 100] (a neutral pixel has Y = value)."""
    _check(gray, 1, "gray_to_lightness")
    return 116 * _f(srgb_to_linear(gray)) - 16


def lab_to_rgb_from_parts(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Join lightness ``(*, 1, H, W)`` and chroma ``(*, 2, H, W)`` into sRGB [0, 1]."""
    _check(L, 1, "lab_to_rgb_from_parts(L)")
    _check(ab, 2, "lab_to_rgb_from_parts(ab)")
    return lab_to_rgb(torch.cat((L, ab), dim=-3))
