"""How much work an image causes, decided in one place.

    check_size(size, default)         -> the working size (given, else the model's), or a TintError:
                                         the one place any interface resolves and validates it
    working_shape(h, w, size, m)      -> the (h, w) the network runs at
    check_saturation(s)               -> the colourfulness factor, or a TintError
    check_pixels(array)               -> an image array's dtype and value range, or a TintError
    has_colour(rgb)                   -> is a photo already in colour?  (a note, not an error)
    decode_pil(im)                    -> a Pillow image's pixels as an array, one rule for every interface
    icc_colorspace(icc)               -> the colour space an ICC profile describes

The working shape keeps the input's aspect ratio while it can: about ``size * size``
pixels, each side a multiple of ``m``.  A very thin image (1 x 1,000,000) cannot keep it
(its short side would round to nothing), so its long side is cut until the shape holds at
most ``(size + m) ** 2`` pixels: the network's work is bounded by ``size`` whatever the
input's shape.  Pure functions, no torch: the lowest layer of tint.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import TintError

MIN_SIZE, MAX_SIZE = 16, 2048          # working sizes any interface accepts
MIN_SATURATION, MAX_SATURATION = 0.0, 2.0
FLOAT_SLACK = 1e-4                     # float pixels this far outside [0, 1] are rounding: clipped


def _number(value, name: str, kind) -> float | int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TintError(f"{name} must be a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise TintError(f"{name} must be a whole number, got {value!r}")
    if not math.isfinite(float(value)):
        raise TintError(f"{name} must be finite, got {value!r}")
    return kind(value)


_REQUIRED = object()


def check_size(size, default=_REQUIRED) -> int | None:
    """The working size: ``size``, or ``default`` (the model's) when ``size`` is None, as an
    int in MIN_SIZE..MAX_SIZE, or a TintError naming the range.  Every interface (API, CLI,
    server, video, bench, training) resolves a size here and nowhere else.  ``default=None``:
    the model's size is not known yet (an option checked before the model loads), so None
    stays None; with no default at all, None is refused."""
    if size is None and default is not _REQUIRED:
        if default is None:
            return None
        size = default
    v = _number(size, "working size", int)
    if not MIN_SIZE <= v <= MAX_SIZE:
        raise TintError(f"working size must be in {MIN_SIZE}..{MAX_SIZE}, got {v}")
    return v


def check_saturation(saturation) -> float:
    """The colourfulness factor in 0..2 (0 gray, 1 as predicted, 2 twice as colourful)."""
    v = _number(saturation, "saturation", float)
    if not MIN_SATURATION <= v <= MAX_SATURATION:
        raise TintError(f"saturation must be in {MIN_SATURATION:g}..{MAX_SATURATION:g}, got {v:g}")
    return v


def working_shape(h: int, w: int, size: int, multiple: int) -> tuple[int, int]:
    """The (h, w) the network runs at for an h x w input.

    About size*size pixels with the input's aspect ratio, each side a multiple of
    ``multiple`` and at least ``multiple``; never more than (size + multiple)**2 pixels
    (extreme aspect ratios are squeezed: chroma is smooth, the full-resolution lightness
    keeps every detail)."""
    size = check_size(size)
    if multiple < 1:
        raise ValueError(f"multiple must be positive, got {multiple}")
    if h <= 0 or w <= 0:
        raise ValueError(f"image has no pixels ({w}x{h})")
    s = size / math.sqrt(h * w)
    wh = max(multiple, round(h * s / multiple) * multiple)
    ww = max(multiple, round(w * s / multiple) * multiple)
    cap = (size + multiple) ** 2
    if wh * ww > cap:                       # only for aspect ratios beyond about 14:1
        if wh >= ww:
            wh = max(multiple, cap // ww // multiple * multiple)
        else:
            ww = max(multiple, cap // wh // multiple * multiple)
    return wh, ww

def check_pixels(x: np.ndarray) -> np.ndarray:
    """An image array's dtype and values, checked once before any work: uint8, uint16
    (either byte order) or float holding finite values in [0, 1]; the array (native
    byte order) or a TintError that names what was found."""
    if x.dtype.kind in "uf" and not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if x.dtype in (np.uint8, np.uint16):
        return x
    if x.dtype in (np.float16, np.float32, np.float64):
        if x.size:
            lo, hi = float(np.min(x)), float(np.max(x))      # NaN propagates into both
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise TintError("image array holds NaN or infinite values")
            if lo < -FLOAT_SLACK or hi > 1 + FLOAT_SLACK:
                hint = (" (8-bit data? divide by 255, or pass uint8)" if hi <= 255 else
                        " (16-bit data? divide by 65535, or pass uint16)" if hi <= 65535 else "")
                raise TintError(f"float image values must be in [0, 1]; this array holds "
                                f"{lo:g}..{hi:g}{hint}")
        return x
    raise TintError(f"unsupported array dtype {x.dtype} (use uint8, uint16 or float in [0, 1])")


def has_colour(rgb: np.ndarray, samples: int = 128) -> bool:
    """True when an (H, W, 3) uint8/uint16 image is a colour photo, not a gray or toned one.

    Sepia, cyanotype and other toned prints have a tint that depends on lightness only,
    so chroma is measured around the median chroma of pixels of the same lightness (16
    bins) on an at most ``samples`` x ``samples`` grid; a colour photo has different
    colours at one lightness.  Threshold: 95th percentile of that spread above 4 (8-bit
    Cb/Cr units; gray and toned scans measure below 2, colour photos above 5)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        return False
    sy = max(1, rgb.shape[0] // samples)
    sx = max(1, rgb.shape[1] // samples)
    a = rgb[::sy, ::sx].astype(np.float32).reshape(-1, 3)
    if rgb.dtype == np.uint16:
        a /= 257.0
    y = a @ np.float32([0.299, 0.587, 0.114])
    cb = a @ np.float32([-0.168736, -0.331264, 0.5])
    cr = a @ np.float32([0.5, -0.418688, -0.081312])
    bins = np.minimum((y / 16).astype(np.int64), 15)
    spread = np.zeros_like(cb)
    for k in np.unique(bins):
        m = bins == k
        spread[m] = np.hypot(cb[m] - np.median(cb[m]), cr[m] - np.median(cr[m]))
    return float(np.percentile(spread, 95)) > 4.0


def decode_pil(im, name="image") -> np.ndarray:
    """Pillow image (any mode) -> (H, W, C) uint8/uint16 array, C in 1..4 (2 and 4 carry alpha).

    The one rule for every interface (files, uploads, ``tint.colorize`` on a PIL image):
    32-bit integer ("I") images hold 16-bit counts, float ("F") images hold values in
    [0, 1], as float arrays do; anything else is a TintError naming what was found.  Other
    modes (LAB, HSV, YCbCr, CMYK...) become RGB."""
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)[:, :, None]
    if mode == "I":
        a = np.asarray(im)
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise TintError(f"{name}: 32-bit integer pixels must be 16-bit counts (0..65535); "
                            f"this image holds {lo}..{hi}")
        return a.astype(np.uint16)[:, :, None]
    if mode == "F":
        try:
            a = check_pixels(np.asarray(im, np.float32))
        except TintError as e:
            raise TintError(f"{name}: {e}") from None
        return np.rint(np.clip(a, 0, 1) * 65535).astype(np.uint16)[:, :, None]
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if (mode == "PA" or "transparency" in im.info) else "RGB")
    elif mode == "La":
        im = im.convert("LA")
    elif mode in ("RGBa", "RGBX"):
        im = im.convert("RGBA" if mode == "RGBa" else "RGB")
    elif mode == "L" and "transparency" in im.info:
        im = im.convert("LA")
    elif mode == "RGB" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        try:
            im = im.convert("RGB")
        except ValueError:
            raise TintError(f"{name}: unsupported colour mode {mode}") from None
    a = np.asarray(im)
    return a[:, :, None] if a.ndim == 2 else a


def icc_colorspace(icc: bytes | None) -> str | None:
    """The data colour space an ICC profile describes ('RGB', 'GRAY', 'CMYK', ...), or None."""
    if not icc or len(icc) < 20:
        return None
    return icc[16:20].decode("latin-1").strip() or None
