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
4. Perceptual measures (when the judge's weights are found), from the original
   ImageNet-trained Tiny Darknet classifier (not a fine-tuned encoder), RGB in [0, 1] as
   ml5 feeds it (no mean or std): five 224x224 crops per image (centre, then the four
   corners) of the 256-px image; the 128-channel stride-16 map (the one its 1x1
   classifier reads) global-average-pooled to 128-d.  Frechet distance (the FID formula)
   between the crops' features of output and truth, over all crops of all images; and
   semantic agreement: the fraction of images whose truth's top-1 ImageNet class (centre
   crop) is among the output's top-5 (centre crop).  Both also for the gray baseline.

The metric functions below are pure and importable (``tint train`` validates with them);
``evaluate_weights(EvalConfig(folder, weights=...))`` is the whole of ``tint eval``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.color import lab_to_rgb, rgb_to_lab
from ..core.errors import TintError


EVAL_SHORT_SIDE = 256
PROTOCOL = ("short side resized to 256 px (PIL bicubic, antialiased); colorized from its Lab L "
            "via Runner.colorize_array; metrics on uint8 sRGB vs truth: PSNR (data_range 255), "
            "SSIM (Gaussian 11x11 sigma 1.5, per channel mean, as skimage gaussian_weights=True), "
            "mean |ab| error (Lab units), colorfulness (Hasler & Suesstrunk 2003) of output and "
            "truth; baseline 'gray' = L with a=b=0")
JUDGE_PROTOCOL = ("judge: original ImageNet Tiny Darknet (TF.js, ml5), RGB [0,1], no mean/std; "
                  "5 crops 224x224 (centre + 4 corners) of the 256-px image; features = stride-16 "
                  "128-ch map global-average-pooled; fid = Frechet distance output vs truth over all "
                  "crops; semantic = truth's top-1 class (centre crop) in output's top-5 (centre crop)")
JUDGE_ENV = "TINT_JUDGE"
JUDGE_SIZE = 224


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


# --------------------------------------------------------------------------- perceptual
def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance (the FID formula) between Gaussians fitted to feature sets a (N, d)
    and b (M, d), N, M >= 2: |mu_a - mu_b|^2 + tr(Ca + Cb - 2 (Ca^1/2 Cb Ca^1/2)^1/2), >= 0.

    Exact in float64 numpy: both square roots are of symmetric PSD matrices, taken by
    eigendecomposition (negative round-off eigenvalues clipped to 0); no scipy needed.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected feature sets (N, d) and (M, d), got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 samples per set, got {len(a)} and {len(b)}")
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(ca)
    sa = (v * np.sqrt(np.clip(w, 0, None))) @ v.T                  # Ca^1/2
    m = sa @ cb @ sa
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    d = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * cross
    return float(max(d, 0.0))


def five_crops(rgb: np.ndarray, size: int = JUDGE_SIZE) -> torch.Tensor:
    """uint8 (H, W, 3) -> (5, 3, size, size) float RGB in [0, 1]: centre, then top-left,
    top-right, bottom-left, bottom-right.  An image with a side under ``size`` is first
    scaled up (bilinear) so its short side is ``size``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {rgb.dtype} {rgb.shape}")
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0   # (3, H, W)
    h, w = x.shape[1:]
    if min(h, w) < size:
        s = size / min(h, w)
        x = F.interpolate(x[None], size=(max(size, round(h * s)), max(size, round(w * s))),
                          mode="bilinear", align_corners=False)[0].clamp(0, 1)
        h, w = x.shape[1:]
    t, l = (h - size) // 2, (w - size) // 2
    at = ((t, l), (0, 0), (0, w - size), (h - size, 0), (h - size, w - size))
    return torch.stack([x[:, r:r + size, c:c + size] for r, c in at])


class PerceptualJudge:
    """The ImageNet Tiny Darknet classifier as a judge of colorized photos.

    ``judge(images)`` -> (features (N, 5, 128) float64, logits (N, 1000) float32): the
    stride-16 map of each of ``five_crops`` pooled to 128-d, and the ImageNet logits of the
    centre crop (the classifier is a 1x1 conv followed by a global mean, so its logits are
    that linear map of the pooled features: one forward gives both).  Forwards run in
    batches of ``batch`` crops.
    """

    def __init__(self, classifier, batch: int = 60, labels: list[str] | None = None,
                 source: str | None = None):
        if getattr(classifier, "classifier", None) is None:
            raise ValueError("the judge needs a Tiny Darknet with its ImageNet classifier "
                             "(load_tfjs_darknet(path, classifier=True))")
        self.net = classifier.eval()
        self.device = classifier.classifier.weight.device       # the judge runs where its weights are
        self.batch = int(batch)
        self.labels = labels
        self.source = source
        w = classifier.classifier.weight
        self._w = w.detach().reshape(w.shape[0], -1).float()                 # (1000, 128)
        self._b = classifier.classifier.bias.detach().float()

    @classmethod
    def from_path(cls, path, **kw) -> "PerceptualJudge":
        """From ml5's TF.js Tiny Darknet (its folder or model.json); labels.txt beside it
        gives class names."""
        from .importers import load_tfjs_darknet
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        labels = folder / "labels.txt"
        names = labels.read_text(encoding="utf-8").split("\n")[:1000] if labels.is_file() else None
        return cls(load_tfjs_darknet(path, classifier=True), labels=names, source=str(path), **kw)

    def label(self, i: int) -> str:
        return self.labels[i] if self.labels and i < len(self.labels) else f"class {i}"

    @torch.inference_mode()
    def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
        crops = torch.cat([five_crops(im) for im in images]).to(self.device)  # (5N, 3, 224, 224)
        feats = torch.cat([self.net(crops[i:i + self.batch])[-1].mean((2, 3))   # (b, 128)
                           for i in range(0, len(crops), self.batch)])
        feats = feats.reshape(len(images), 5, -1)
        logits = F.linear(feats[:, 0], self._w, self._b)                     # centre crops
        return feats.double().cpu().numpy(), logits.cpu().numpy()


def top1_in_top5(logits_truth: np.ndarray, logits_out: np.ndarray, k: int = 5) -> np.ndarray:
    """Per image (rows): is the truth's top-1 class among the output's top-k?  (N,) bool."""
    t1 = np.argmax(logits_truth, axis=1)
    topk = np.argsort(-logits_out, axis=1)[:, :k]
    return (topk == t1[:, None]).any(1)


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


def evaluate(colorize_fn, truths, names=None, with_ssim: bool = True, sheet_rows: int = 0,
             judge: PerceptualJudge | None = None):
    """Run ``colorize_fn`` (uint8 (H, W, 3) truth -> uint8 (H, W, 3) output; it must only
    use the lightness) over ``truths``; returns (report dict, sheet triples).

    ``judge``: add the perceptual measures (per image ``semantic``, ``gray_semantic``; in
    the means ``fid``, ``gray_fid``).  Off by default (``tint train`` validates without).
    """
    per_image, sheet = [], []
    feats = {"out": [], "gray": [], "truth": []}
    pending = []                                 # (row, out, gray, truth) awaiting the judge
    group = max(1, judge.batch // 15) if judge else 0      # images per flush: 3 kinds x 5 crops

    def flush():
        f, logits = judge([im for _, *trip in pending for im in trip])
        f, logits = f.reshape(len(pending), 3, *f.shape[1:]), logits.reshape(len(pending), 3, -1)
        for kind, j in (("out", 0), ("gray", 1), ("truth", 2)):
            feats[kind].append(f[:, j].reshape(-1, f.shape[-1]))
        hit = top1_in_top5(logits[:, 2], logits[:, 0])
        gray_hit = top1_in_top5(logits[:, 2], logits[:, 1])
        for n, (row, *_) in enumerate(pending):
            row.update(semantic=float(hit[n]), gray_semantic=float(gray_hit[n]),
                       class_truth=judge.label(int(logits[n, 2].argmax())),
                       class_out=judge.label(int(logits[n, 0].argmax())))
        pending.clear()

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
        if judge:
            pending.append((row, out, gray, truth))
            if len(pending) >= group:
                flush()
        if i < sheet_rows:
            sheet.append((gray, out, truth))
    if pending:
        flush()
    keys = [k for k, v in per_image[0].items() if isinstance(v, float)] if per_image else []
    means = {k: _mean(per_image, k) for k in keys}
    # The ratio of means is steadier than the mean of ratios (near-gray truths blow up).
    if means.get("colorfulness_truth"):
        means["colorfulness_ratio_of_means"] = means["colorfulness"] / means["colorfulness_truth"]
    if judge and per_image:
        truth_f = np.concatenate(feats["truth"])
        means["fid"] = frechet_distance(np.concatenate(feats["out"]), truth_f)
        means["gray_fid"] = frechet_distance(np.concatenate(feats["gray"]), truth_f)
    return {"count": len(per_image), "means": means, "images": per_image}, sheet


def contact_sheet(triples, path, height: int = 192) -> None:
    """JPEG with one row per image: gray | tint | truth, each scaled to ``height``."""
    from PIL import Image, ImageDraw
    from ..core.files import atomic_write
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
            f"colorfulness {f('colorfulness', '%.1f')} / truth {f('colorfulness_truth', '%.1f')}"
            + (f"  FID {f('fid', '%.2f')} (gray {f('gray_fid', '%.2f')})  "
               f"semantic {100 * means['semantic']:.1f} % (gray {100 * means['gray_semantic']:.1f} %)"
               if "fid" in means else ""))


def default_judge() -> Path:
    """Where the judge's weights are looked for: $TINT_JUDGE, else the shared data beside
    the repository (never the working directory)."""
    env = os.environ.get(JUDGE_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "weights" / "tiny-darknet"


def find_judge(arg: str | None) -> Path | None:
    """The judge's model.json, or None when the default place holds none.  A path given
    explicitly (``--judge`` or $TINT_JUDGE) must exist."""
    explicit = arg is not None or bool(os.environ.get(JUDGE_ENV))
    path = Path(arg) if arg is not None else default_judge()
    json_path = path / "model.json" if path.is_dir() else path
    if json_path.is_file():
        return json_path
    if explicit:
        origin = "--judge" if arg is not None else f"${JUDGE_ENV}"
        raise TintError(f"{origin} {path}: no TF.js model.json there (ml5's darknettiny folder)")
    return None


# --------------------------------------------------------------------------- a whole evaluation
@dataclass
class EvalConfig:
    """Every option of ``tint eval``, with its default; ``check`` validates it."""
    folder: str                          # folder of colour photos (the ground truth)
    weights: str | None = None           # tint weights file (None: the bundled model)
    device: str = "auto"                 # cpu, cuda, cuda:N or auto
    size: int | None = None              # working size, 16..2048 (None: the model's)
    backend: str = "auto"                # what runs the network (tint.api.BACKENDS)
    limit: int | None = None             # only the first N photos (sorted by path)
    ssim: bool = True                    # measure SSIM (the slowest metric)
    judge: str | None = None             # the judge for FID / semantic agreement (None: default_judge())
    use_judge: bool = True               # the perceptual measures at all
    json: str | None = None              # write the full report here
    sheet: str | None = None             # contact sheet (gray | tint | truth rows) here
    sheet_rows: int = 12                 # rows of the contact sheet

    def check(self) -> "EvalConfig":
        """The config validated (paths as strings), or a TintError naming the option: the
        one place an evaluation's options are checked, before any model loads."""
        from ..core.pixels import check_size
        c = replace(self, **{k: None if getattr(self, k) is None else str(getattr(self, k))
                             for k in ("folder", "weights", "judge", "json", "sheet")})
        if not Path(c.folder).is_dir():
            raise TintError(f"not a folder: {c.folder}")
        if c.limit is not None and c.limit < 1:
            raise TintError("--limit must be at least 1")
        if c.sheet_rows < 1:
            raise TintError("--sheet-rows must be at least 1")
        for out in (c.json, c.sheet):
            if out and not Path(out).resolve().parent.is_dir():
                raise TintError(f"output folder does not exist: {Path(out).parent}")
        c.size = check_size(c.size, None)
        return c


def evaluate_weights(config: EvalConfig, log=print, note=print) -> dict:
    """Colorize ``config.folder``'s photos with ``config.weights`` by the protocol above and
    return the report (also written to ``config.json``; the contact sheet to ``config.sheet``).
    ``log`` gets the result lines, ``note`` the one that says a measure was skipped."""
    import time

    from ..api import load
    from ..core.weights import sha256
    config = config.check()
    folder = Path(config.folder)
    files = truth_files(folder, config.limit)
    judge_path = find_judge(config.judge) if config.use_judge else None
    judge = PerceptualJudge.from_path(judge_path) if judge_path else None
    if judge is None and config.use_judge:
        note(f"tint eval: perceptual measures (FID, semantic agreement) skipped: no judge at "
             f"{default_judge()}; pass --judge DIR (ml5's TF.js Tiny Darknet) or set {JUDGE_ENV}")
    kw = {k: v for k, v in (("size", config.size), ("backend", config.backend)) if v not in (None, "auto")}
    runner = load(config.weights, config.device, **kw)
    t0 = time.perf_counter()
    report, sheet = evaluate(runner.colorize_array, (load_truth(f) for f in files),
                             names=[os.path.relpath(f, folder) for f in files], with_ssim=config.ssim,
                             sheet_rows=config.sheet_rows if config.sheet else 0, judge=judge)
    dt = time.perf_counter() - t0
    head = {"protocol": PROTOCOL, "folder": str(folder), "weights": str(runner.weights_path),
            "weights_sha256": sha256(runner.weights_path), "device": str(runner.device),
            "working_size": runner.size, "seconds": round(dt, 2)}
    if judge:
        head["judge"] = {"protocol": JUDGE_PROTOCOL, "model_json": str(judge_path),
                         "model_json_sha256": sha256(judge_path)}
    report = {**head, **report}
    log(f"tint eval: {report['count']} images in {dt:.1f} s  {format_means(report['means'])}")
    if config.json:
        import json
        from ..core.files import atomic_write
        atomic_write(Path(config.json), lambda p: Path(p).write_text(json.dumps(_finite(report), indent=1)))
        log(f"tint eval: report -> {config.json}")
    if config.sheet:
        contact_sheet(sheet, config.sheet)
        log(f"tint eval: contact sheet -> {config.sheet}")
    return report
