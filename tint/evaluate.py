"""``tint eval``: how close are colorized photos to the real colours?

Protocol (fixed, so numbers from different models and runs compare):

1. Each ground-truth photo is resized so its short side is 256 px (bicubic, antialiased,
   aspect kept) and taken as uint8 sRGB.
2. Its lightness (CIE Lab L) is colorized through the one path, ``Runner.colorize_array``,
   at the model's working size (``--size``, default 256).  The output keeps L exactly,
   so every difference from the truth is chroma.
3. Metrics, each on uint8 sRGB against the truth: PSNR (data range 255), SSIM (Gaussian
   window 11, sigma 1.5, per channel, averaged: skimage's ``structural_similarity(
   gaussian_weights=True, channel_axis=-1, data_range=255)``), mean absolute ab error in
   Lab units, and colorfulness (Hasler & Suesstrunk 2003) of output and truth and their
   ratio.  The same metrics are given for the gray baseline (L kept, a = b = 0).

The metric functions below are pure and importable (``tint train`` validates with them).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .color import lab_to_rgb, rgb_to_lab
from .errors import TintError

EVAL_SHORT_SIDE = 256
PROTOCOL = ("short side resized to 256 px (PIL bicubic, antialiased); colorized from its Lab L "
            "via Runner.colorize_array; metrics on uint8 sRGB vs truth: PSNR (data_range 255), "
            "SSIM (Gaussian 11x11 sigma 1.5, per channel mean, as skimage gaussian_weights=True), "
            "mean |ab| error (Lab units), colorfulness (Hasler & Suesstrunk 2003) of output and "
            "truth; baseline 'gray' = L with a=b=0")


# --------------------------------------------------------------------------- metrics
def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) images, got {a.shape}")


def psnr(out: np.ndarray, truth: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB, [0, inf) (inf when identical), of (H, W, C) arrays."""
    if out.shape != truth.shape:
        raise ValueError(f"images differ in shape: {out.shape} vs {truth.shape}")
    mse = np.mean((out.astype(np.float64) - truth.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else float(10 * np.log10(data_range ** 2 / mse))


def _gauss1d(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    r = int(truncate * sigma + 0.5)          # scipy's radius rule: 5 for sigma 1.5 (window 11)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim(out: np.ndarray, truth: np.ndarray, data_range: float = 255.0) -> float:
    """Mean structural similarity in [-1, 1] (1 when identical) of (H, W, 3) images.

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True,
    channel_axis=-1, data_range=data_range)``: K1 0.01, K2 0.03, sample-covariance
    correction N/(N-1), and the mean taken over pixels at least 5 from the border (so
    padding never matters and a valid convolution is exact).
    """
    _check_pair(out, truth)
    g = _gauss1d()
    k = g.numel()
    if min(out.shape[:2]) < k:
        raise ValueError(f"SSIM needs images of at least {k}x{k}, got {out.shape[:2]}")
    x = torch.from_numpy(out.astype(np.float64)).permute(2, 0, 1)[:, None]    # (3, 1, H, W)
    y = torch.from_numpy(truth.astype(np.float64)).permute(2, 0, 1)[:, None]

    def blur(t):                                                            # separable, valid
        t = F.conv2d(t, g.view(1, 1, k, 1))
        return F.conv2d(t, g.view(1, 1, 1, k))

    ux, uy = blur(x), blur(y)
    cov = k * k / (k * k - 1)
    vx = cov * (blur(x * x) - ux * ux)
    vy = cov * (blur(y * y) - uy * uy)
    vxy = cov * (blur(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return float(s.mean((1, 2, 3)).mean())


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colorfulness of an (H, W, 3) sRGB image in 0..255 units:
    0 for gray, about 15 "slightly", 33 "moderately", 59 "quite", 82 "highly" colorful."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {rgb.shape}")
    x = rgb.astype(np.float64)
    if rgb.dtype != np.uint8 and x.max(initial=0) <= 1.0:
        x = x * 255.0
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _to_lab(rgb: np.ndarray) -> torch.Tensor:
    return rgb_to_lab(torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1))


def ab_l1(out: np.ndarray, truth: np.ndarray) -> float:
    """Mean |a_out - a_truth| and |b| error over pixels and both channels, Lab units (>= 0)."""
    _check_pair(out, truth)
    return float((_to_lab(out)[1:] - _to_lab(truth)[1:]).abs().mean())


def gray_baseline(truth: np.ndarray) -> np.ndarray:
    """The truth's lightness alone (a = b = 0) as uint8 sRGB."""
    lab = _to_lab(truth)
    lab[1:] = 0
    return (lab_to_rgb(lab).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def measure(out: np.ndarray, truth: np.ndarray, with_ssim: bool = True) -> dict:
    """All metrics of one uint8 output against its uint8 truth."""
    m = {"psnr": psnr(out, truth), "l1_ab": ab_l1(out, truth), "colorfulness": colorfulness(out)}
    if with_ssim:
        m["ssim"] = ssim(out, truth)
    return m


# --------------------------------------------------------------------------- data
def load_truth(path, short_side: int = EVAL_SHORT_SIDE) -> np.ndarray:
    """A ground-truth photo as uint8 (H, W, 3), EXIF-rotated, short side ``short_side``."""
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            w, h = im.size
            s = short_side / min(w, h)
            size = (max(1, round(w * s)), max(1, round(h * s)))
            if size != (w, h):
                im = im.resize(size, Image.BICUBIC, reducing_gap=None)
            return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, ValueError) as e:
        raise TintError(f"cannot read image {path}: {e}") from None


def truth_files(folder, limit: int | None = None) -> list[Path]:
    from .data import find_images
    files = find_images([folder])
    if not files:
        raise TintError(f"no JPEG/PNG/WebP images in {folder}")
    return files[:limit] if limit else files


def _mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if key in r and math.isfinite(r[key])]
    return float(np.mean(vals)) if vals else float("nan")


def evaluate(colorize_fn, truths, names=None, with_ssim: bool = True, sheet_rows: int = 0):
    """Run ``colorize_fn`` (uint8 (H, W, 3) truth -> uint8 (H, W, 3) output; it must only
    use the lightness) over ``truths``; returns (report dict, sheet triples)."""
    per_image, sheet = [], []
    for i, truth in enumerate(truths):
        out = colorize_fn(truth)
        gray = gray_baseline(truth)
        m = measure(out, truth, with_ssim)
        g = measure(gray, truth, with_ssim)
        cf_t = colorfulness(truth)
        row = {"name": names[i] if names else str(i), **m,
               "colorfulness_truth": cf_t,
               "colorfulness_ratio": m["colorfulness"] / cf_t if cf_t > 0 else float("nan"),
               **{f"gray_{k}": v for k, v in g.items() if k != "colorfulness"}}
        per_image.append(row)
        if i < sheet_rows:
            sheet.append((gray, out, truth))
    keys = [k for k in per_image[0] if k != "name"] if per_image else []
    means = {k: _mean(per_image, k) for k in keys}
    # The ratio of means is steadier than the mean of ratios (near-gray truths blow up).
    if means.get("colorfulness_truth"):
        means["colorfulness_ratio_of_means"] = means["colorfulness"] / means["colorfulness_truth"]
    return {"count": len(per_image), "means": means, "images": per_image}, sheet


def contact_sheet(triples, path, height: int = 192) -> None:
    """JPEG with one row per image: gray | tint | truth, each scaled to ``height``."""
    from PIL import Image, ImageDraw
    from .weights import atomic_write
    if not triples:
        return
    rows = []
    for trip in triples:
        tiles = [Image.fromarray(t).resize((max(1, round(t.shape[1] * height / t.shape[0])), height),
                                          Image.BICUBIC) for t in trip]
        rows.append(tiles)
    width = max(sum(t.width for t in r) + 4 * (len(r) - 1) for r in rows)
    head = 18
    sheet = Image.new("RGB", (width, head + len(rows) * (height + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x = 0
    for label, tile in zip(("gray", "tint", "truth"), rows[0]):
        draw.text((x + 4, 3), label, fill=(0, 0, 0))
        x += tile.width + 4
    for r, tiles in enumerate(rows):
        x = 0
        for t in tiles:
            sheet.paste(t, (x, head + r * (height + 4)))
            x += t.width + 4
    atomic_write(Path(path), lambda p: sheet.save(p, "JPEG", quality=90))


def _finite(x):
    """JSON has no inf/nan: write null instead."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def format_means(means: dict) -> str:
    f = lambda k, fmt: (fmt % means[k]) if k in means and math.isfinite(means[k]) else "-"  # noqa: E731
    return (f"PSNR {f('psnr', '%.2f')} dB (gray {f('gray_psnr', '%.2f')})  "
            f"SSIM {f('ssim', '%.4f')} (gray {f('gray_ssim', '%.4f')})  "
            f"L1ab {f('l1_ab', '%.2f')} (gray {f('gray_l1_ab', '%.2f')})  "
            f"colorfulness {f('colorfulness', '%.1f')} / truth {f('colorfulness_truth', '%.1f')}")


# --------------------------------------------------------------------------- CLI
def add_eval_arguments(p) -> None:
    p.add_argument("folder", help="folder of color photos (ground truth)")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write the full report here")
    p.add_argument("--sheet", default=None, metavar="OUT.jpg",
                   help="contact sheet: gray | tint | truth rows for the first images")
    p.add_argument("--sheet-rows", type=int, default=12)
    p.add_argument("--limit", type=int, default=None, help="only the first N photos (sorted by path)")
    p.add_argument("--no-ssim", action="store_true", help="skip SSIM (the slowest metric)")


def run_eval(args) -> int:
    import tint
    from .weights import sha256
    folder = Path(args.folder)
    if not folder.is_dir():
        raise TintError(f"not a folder: {folder}")
    if args.limit is not None and args.limit < 1:
        raise TintError("--limit must be at least 1")
    for out in (args.json, args.sheet):
        if out and not Path(out).resolve().parent.is_dir():
            raise TintError(f"output folder does not exist: {Path(out).parent}")
    files = truth_files(folder, args.limit)
    kw = {"size": args.size} if args.size else {}
    runner = tint.load(args.weights, args.device, **kw)
    t0 = time.perf_counter()
    report, sheet = evaluate(runner.colorize_array, (load_truth(f) for f in files),
                             names=[os.path.relpath(f, folder) for f in files],
                             with_ssim=not args.no_ssim,
                             sheet_rows=args.sheet_rows if args.sheet else 0)
    dt = time.perf_counter() - t0
    report = {"protocol": PROTOCOL, "folder": str(folder), "weights": str(runner.weights_path),
              "weights_sha256": sha256(runner.weights_path), "device": str(runner.device),
              "working_size": runner.size, "seconds": round(dt, 2), **report}
    print(f"tint eval: {report['count']} images in {dt:.1f} s  {format_means(report['means'])}")
    if args.json:
        from .weights import atomic_write
        atomic_write(Path(args.json), lambda p: Path(p).write_text(json.dumps(_finite(report), indent=1)))
        print(f"tint eval: report -> {args.json}")
    if args.sheet:
        contact_sheet(sheet, args.sheet)
        print(f"tint eval: contact sheet -> {args.sheet}")
    return 0
