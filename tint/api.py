"""One ``colorize()`` under every interface (Python API, CLI, web server, video, bench).

Flow for any input (PIL image, numpy array or torch tensor):

    pixels -> L (full resolution, [0, 100])
           -> L at the working size (about size*size pixels, aspect kept)
           -> network -> ab at the working size
           -> ab upsampled to full resolution, joined with the full-resolution L -> sRGB

The luminance of the output is the input's, pixel for pixel; only chroma is predicted.
Large images are joined in strips of rows, so memory stays bounded at any size.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .color import gray_to_lightness, lab_to_rgb, rgb_to_lightness
from .errors import TintError
from .model import working_shape
from .onnx_runtime import BACKENDS, cpu_network, import_ort, weights_key
from .weights import load_weights, resolve

STRIP_PIXELS = 1 << 22        # rows joined per step: ~4 Mpixel, ~100 MB of float temporaries


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; asking for a missing cuda is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise TintError(f"unknown device {device!r} (use cpu, cuda or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TintError("--device cuda asked for, but no CUDA GPU is available (try --device cpu)")
    return dev


def resize_lightness(L: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, h, w), antialiased when shrinking."""
    if tuple(L.shape[-2:]) == tuple(shape):
        return L
    return F.interpolate(L, size=shape, mode="bilinear", align_corners=False, antialias=True)


def interp_matrix(n_out: int, n_in: int, r0: int = 0, r1: int | None = None,
                  dtype=torch.float32, device=None) -> torch.Tensor:
    """Rows r0:r1 of the (n_out, n_in) matrix of 1-D bilinear upsampling (half-pixel
    centres, edges clamped): the same weights as F.interpolate(align_corners=False)."""
    r1 = n_out if r1 is None else r1
    x = ((torch.arange(r0, r1, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = x.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    t = x - i0
    m = torch.zeros(r1 - r0, n_in, dtype=torch.float64)
    rows = torch.arange(r1 - r0)
    m.index_put_((rows, i0), 1 - t, accumulate=True)
    m.index_put_((rows, i1), t, accumulate=True)
    return m.to(dtype=dtype, device=device)


def upsample_chroma_rows(ab: torch.Tensor, H: int, W: int, r0: int, r1: int) -> torch.Tensor:
    """Rows r0:r1 of ab (B, 2, h, w) bilinearly upsampled to (H, W) -> (B, 2, r1-r0, W)."""
    h, w = ab.shape[-2:]
    ry = interp_matrix(H, h, r0, r1, ab.dtype, ab.device)           # (r1-r0, h)
    rx = interp_matrix(W, w, dtype=ab.dtype, device=ab.device)      # (W, w)
    return torch.einsum("rh,bchw,Ww->bcrW", ry, ab, rx)


def join_chroma(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Full-resolution L (B, 1, H, W) [0, 100] + working-size ab (B, 2, h, w) -> sRGB (B, 3, H, W) [0, 1]."""
    ab_full = F.interpolate(ab.to(L.dtype), size=L.shape[-2:], mode="bilinear", align_corners=False)
    return lab_to_rgb(torch.cat((L, ab_full), 1))


def _to_float(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Array -> (float32 view-or-copy in [0, 1], the scale that maps back)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0, 255.0
    if x.dtype == np.uint16:
        return x.astype(np.float32) / 65535.0, 65535.0
    if x.dtype in (np.float32, np.float64, np.float16):
        if x.size and not np.isfinite(x).all():
            raise TintError("image array holds NaN or infinite values")
        return np.clip(x.astype(np.float32, copy=False), 0.0, 1.0), 1.0
    raise TintError(f"unsupported array dtype {x.dtype} (use uint8, uint16 or float in [0, 1])")


def _from_float(x: np.ndarray, dtype: np.dtype, scale: float) -> np.ndarray:
    if scale == 1.0:
        return x.astype(dtype, copy=False)
    return np.rint(x * scale).astype(dtype)


def split_channels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W[, C]) array -> (color or gray (H, W, 1|3), alpha (H, W) or None)."""
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[2] not in (1, 2, 3, 4):
        raise TintError(f"expected an image array (H, W), (H, W, 1|2|3|4), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise TintError(f"image has no pixels (shape {x.shape})")
    c = x.shape[2]
    if c in (2, 4):
        return x[:, :, : c - 1], x[:, :, c - 1]
    return x, None


class Runner:
    """A model loaded once on a device, ready to colorize any number of images.

    Thread-safe: calls from several threads are serialized around the network.
    """

    def __init__(self, weights: str | os.PathLike | None = None, *, device="auto",
                 size: int | None = None, precision: str = "auto", backend: str = "auto"):
        # Arguments first: a typo should not cost a model load.
        if size is not None and int(size) < 16:
            raise TintError(f"working size must be at least 16, got {size}")
        if precision not in ("auto", "fp32", "fp16", "bf16"):
            raise TintError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
        if backend not in BACKENDS:
            raise TintError(f"backend must be {', '.join(BACKENDS)}, got {backend!r}")
        self.device = pick_device(device)
        if backend == "onnx":
            if self.device.type != "cpu":
                raise TintError("the onnx backend runs on the CPU only (use --device cpu)")
            import_ort()                          # missing: a TintError naming the extra
        self.weights_path = resolve(weights)
        self.model, self.meta = load_weights(self.weights_path, device=self.device)
        self.config = self.model.config
        self.size = int(size or self.config.size)
        if precision == "auto":
            precision = "fp16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        self.backend, self.backend_reason = backend, ""       # the one chosen, and why (below)
        self._network = self._build_network()
        self._lock = threading.Lock()

    def _build_network(self):
        """The callable L_work -> ab.  On CUDA the engine (fp16, folded BN, graphs) runs it;
        on a CPU ONNX Runtime when it is installed (tint.onnx_runtime), else eager PyTorch."""
        if self.device.type == "cpu":
            net, self.backend, self.backend_reason = cpu_network(
                self.model, self.backend, self.precision, key=weights_key(self.weights_path))
            if net is not None:
                return net
        else:
            self.backend, self.backend_reason = "eager", f"on {self.device.type}"
        if self.device.type == "cuda":
            try:
                from .engine import prepare
            except ImportError:
                prepare = None
            if prepare is not None:
                self.backend, self.backend_reason = "engine", "on CUDA: tint.engine"
                return prepare(self.model, precision=self.precision)
        if self.precision == "fp32":
            return self.model
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        model = self.model

        def run(L):
            with torch.autocast(self.device.type, dtype=dtype):
                return model(L)
        return run

    # ---- tensors -----------------------------------------------------------------
    @torch.no_grad()
    def chroma(self, L_work: torch.Tensor) -> torch.Tensor:
        """The network alone: L (B, 1, h, w) at a valid working shape -> ab (B, 2, h, w) float32."""
        with self._lock:
            return self._network(L_work.to(self.device, torch.float32)).float()

    def working_shape(self, H: int, W: int, size: int | None = None) -> tuple[int, int]:
        return working_shape(H, W, int(size or self.size), self.model.multiple)

    @torch.no_grad()
    def colorize_lightness(self, L: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """L (B, 1, H, W) in [0, 100] on any device -> sRGB (B, 3, H, W) float in [0, 1], same device."""
        H, W = L.shape[-2:]
        L_work = resize_lightness(L.float(), self.working_shape(H, W, size))
        ab = self.chroma(L_work).to(L.device)
        return join_chroma(L.float(), ab)

    @torch.no_grad()
    def colorize_tensor(self, x: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """(B, 1|3, H, W) uint8 or float in [0, 1] -> (B, 3, H, W) of the same dtype and device."""
        if x.dim() == 3:
            return self.colorize_tensor(x[None], size)[0]
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise TintError(f"expected a tensor (B, 1|3, H, W), got {tuple(x.shape)}")
        f = x.float() / 255.0 if x.dtype == torch.uint8 else x.float().clamp(0, 1)
        L = gray_to_lightness(f) if f.shape[1] == 1 else rgb_to_lightness(f)
        rgb = self.colorize_lightness(L, size)
        if x.dtype == torch.uint8:
            return (rgb * 255.0).round_().to(torch.uint8)
        return rgb.to(x.dtype)

    # ---- arrays ------------------------------------------------------------------
    @torch.no_grad()
    def colorize_array(self, x: np.ndarray, size: int | None = None) -> np.ndarray:
        """(H, W[, 1|2|3|4]) uint8 / uint16 / float [0, 1] -> (H, W, 3|4) of the same dtype.

        Alpha, if any, is passed through untouched.  Color inputs are reduced to their
        lightness first: the output's chroma is all predicted.
        """
        color, alpha = split_channels(np.asarray(x))
        H, W = color.shape[:2]
        L = np.empty((H, W), np.float32)
        rows = max(1, STRIP_PIXELS // W)
        for r0 in range(0, H, rows):                                     # L strip by strip
            f, _ = _to_float(color[r0:r0 + rows])
            t = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None]
            L[r0:r0 + rows] = (gray_to_lightness(t) if t.shape[1] == 1 else rgb_to_lightness(t))[0, 0].numpy()
        Lt = torch.from_numpy(L)[None, None]
        ab = self.chroma(resize_lightness(Lt, self.working_shape(H, W, size))).cpu()
        out = np.empty((H, W, 3 if alpha is None else 4), dtype=color.dtype)
        _, scale = _to_float(color[:1, :1])
        for r0 in range(0, H, rows):                                     # join strip by strip
            r1 = min(H, r0 + rows)
            ab_s = upsample_chroma_rows(ab, H, W, r0, r1)
            rgb = lab_to_rgb(torch.cat((Lt[:, :, r0:r1], ab_s), 1))[0].permute(1, 2, 0).numpy()
            out[r0:r1, :, :3] = _from_float(rgb, color.dtype, scale)
        if alpha is not None:
            out[:, :, 3] = alpha
        return out

    # ---- anything ----------------------------------------------------------------
    def __call__(self, image, size: int | None = None):
        return colorize(image, size=size, runner=self)


def _pil_to_array(img):
    """PIL image (any mode) -> (array, alpha-or-None) with EXIF orientation applied."""
    from PIL import ImageOps
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img).astype(np.uint16), None
    if mode == "I":
        a = np.asarray(img)
        return np.clip(a, 0, 65535).astype(np.uint16), None
    if mode == "F":
        return np.clip(np.asarray(img, np.float32), 0, 1), None
    if mode == "1":
        img = img.convert("L")
    elif mode in ("P", "PA"):
        img = img.convert("RGBA" if ("transparency" in img.info or mode == "PA") else "RGB")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in mode else "RGB")
    return np.asarray(img), None


_DEFAULT_RUNNERS: dict = {}
_DEFAULT_LOCK = threading.Lock()


def load(weights: str | os.PathLike | None = None, device="auto", **kw) -> Runner:
    """A Runner for these weights on this device, loaded once per process and reused."""
    key = (str(weights), str(pick_device(device)), tuple(sorted(kw.items())))
    with _DEFAULT_LOCK:
        if key not in _DEFAULT_RUNNERS:
            _DEFAULT_RUNNERS[key] = Runner(weights, device=device, **kw)
        return _DEFAULT_RUNNERS[key]


def colorize(image, *, size: int | None = None, weights=None, device="auto", runner: Runner | None = None):
    """Colorize a black-and-white photo.

    ``image``: a PIL image (any mode; EXIF orientation applied), a numpy array
    (H, W[, C]) of uint8, uint16 or float in [0, 1], or a torch tensor (B?, C, H, W).
    Returns the same kind of object: PIL -> PIL ("RGB" or "RGBA", ICC profile kept in
    ``.info``), array -> array of the same dtype with 3 or 4 channels, tensor -> tensor.
    ``size``: working size (the network sees about size*size pixels); default from the model.
    """
    runner = runner or load(weights, device)
    if isinstance(image, torch.Tensor):
        return runner.colorize_tensor(image, size)
    if isinstance(image, np.ndarray):
        return runner.colorize_array(image, size)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        arr, _ = _pil_to_array(image)
        out = runner.colorize_array(arr, size)
        if out.dtype != np.uint8:      # PIL has no 16-bit RGB: hand back 8 bits
            out = (out.astype(np.float32) / (65535.0 if out.dtype == np.uint16 else 1.0) * 255).round().clip(0, 255).astype(np.uint8)
        result = Image.fromarray(out, "RGBA" if out.shape[2] == 4 else "RGB")
        from .io import icc_colorspace
        if icc_colorspace(image.info.get("icc_profile")) == "RGB":   # a GRAY profile would mislabel RGB
            result.info["icc_profile"] = image.info["icc_profile"]
        if "dpi" in image.info:
            result.info["dpi"] = image.info["dpi"]
        return result
    if isinstance(image, (str, Path)):
        raise TintError("colorize() takes pixels; for files use tint.io.read_image or 'tint image'")
    raise TintError(f"cannot colorize a {type(image).__name__}; pass a PIL image, numpy array or tensor")
