"""One ``colorize()`` under every interface (Python API, CLI, web server, video, bench).

Flow for any input (PIL image, numpy array or torch tensor):

    pixels -> L (full resolution, [0, 100])
           -> L at the working size (about size*size pixels, aspect kept)
           -> network -> ab at the working size
           -> ab upsampled to full resolution, joined with the full-resolution L -> sRGB

The luminance of the output is the input's, pixel for pixel; only chroma is predicted.
``saturation`` scales the predicted chroma before the join (0 gray, 1 as predicted).
Work is bounded by pixel count at every step: the working shape holds about size*size
pixels whatever the input's shape (``tint.core.pixels``), resizing never builds an image
larger than its input or its result, and the full-resolution join runs in tiles of
at most ``STRIP_PIXELS`` pixels, gathering two chroma taps per axis (no interpolation
matrix sized by the image's width or height)."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch

from .core.color import gray_to_lightness, lab_to_rgb, rgb_to_lightness
from .core.errors import TintError
from .core.model import working_shape
from .core.pipeline import join_chroma, resize_lightness, scale_chroma, tiles, upsample_chroma_rows
from .core.pixels import FLOAT_SLACK, check_pixels, check_saturation, check_size
from .core.weights import load_weights, resolve
from .engine.onnx import BACKENDS, cpu_network, import_ort, weights_key


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


def _to_float(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Array -> (float32 view-or-copy in [0, 1], the scale that maps back)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0, 255.0
    if x.dtype == np.uint16:
        return x.astype(np.float32) / 65535.0, 65535.0
    if x.dtype in (np.float32, np.float64, np.float16):
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
    x = check_pixels(x)
    c = x.shape[2]
    if c in (2, 4):
        return x[:, :, : c - 1], x[:, :, c - 1]
    return x, None


class Runner:
    """A model loaded once on a device, ready to colorize any number of images.

    Thread-safe: calls from several threads are serialized around the network.
    """

    def __init__(self, weights: str | os.PathLike | None = None, *, device="auto",
                 size: int | None = None, precision: str = "auto", saturation: float = 1.0,
                 backend: str = "auto"):
        # Arguments first: a typo should not cost a model load.
        size = check_size(size, None)
        self.saturation = check_saturation(saturation)
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
        self.size = check_size(size, self.config.size)
        if precision == "auto":
            precision = "fp16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        self.backend, self.backend_reason = backend, ""       # the one chosen, and why (below)
        self._network = self._build_network()
        self._lock = threading.Lock()

    def _build_network(self):
        """The callable L_work -> ab.  On CUDA the engine (fp16, folded BN, graphs) runs it;
        on a CPU ONNX Runtime when it is installed (tint.engine.onnx), else eager PyTorch."""
        if self.device.type == "cpu":
            net, self.backend, self.backend_reason = cpu_network(
                self.model, self.backend, self.precision, key=weights_key(self.weights_path))
            if net is not None:
                return net
        else:
            self.backend, self.backend_reason = "eager", f"on {self.device.type}"
        if self.device.type == "cuda":
            try:
                from .engine.graphs import prepare
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
        return working_shape(H, W, check_size(size, self.size), self.model.multiple)

    def _saturation(self, saturation: float | None) -> float:
        return self.saturation if saturation is None else check_saturation(saturation)

    @torch.no_grad()
    def colorize_lightness(self, L: torch.Tensor, size: int | None = None,
                           saturation: float | None = None) -> torch.Tensor:
        """L (B, 1, H, W) in [0, 100] on any device -> sRGB (B, 3, H, W) float in [0, 1], same device."""
        H, W = L.shape[-2:]
        s = self._saturation(saturation)
        L_work = resize_lightness(L.float(), self.working_shape(H, W, size))
        ab = scale_chroma(self.chroma(L_work).to(L.device), s)
        return join_chroma(L.float(), ab)

    @torch.no_grad()
    def colorize_tensor(self, x: torch.Tensor, size: int | None = None,
                        saturation: float | None = None) -> torch.Tensor:
        """(B, 1|3, H, W) uint8 or float in [0, 1] -> (B, 3, H, W) of the same dtype and device."""
        if x.dim() == 3:
            return self.colorize_tensor(x[None], size, saturation)[0]
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise TintError(f"expected a tensor (B, 1|3, H, W), got {tuple(x.shape)}")
        if x.numel() == 0:
            raise TintError(f"tensor has no pixels (shape {tuple(x.shape)})")
        if x.dtype == torch.uint8:
            f = x.float() / 255.0
        elif x.is_floating_point():
            lo, hi = (float(v) for v in torch.aminmax(x.float()))
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise TintError("image tensor holds NaN or infinite values")
            if lo < -FLOAT_SLACK or hi > 1 + FLOAT_SLACK:
                raise TintError(f"float image values must be in [0, 1]; this tensor holds {lo:g}..{hi:g}")
            f = x.float().clamp(0, 1)
        else:
            raise TintError(f"unsupported tensor dtype {x.dtype} (use uint8 or float in [0, 1])")
        L = gray_to_lightness(f) if f.shape[1] == 1 else rgb_to_lightness(f)
        rgb = self.colorize_lightness(L, size, saturation)
        if x.dtype == torch.uint8:
            return (rgb * 255.0).round_().to(torch.uint8)
        return rgb.to(x.dtype)

    # ---- arrays ------------------------------------------------------------------
    @torch.no_grad()
    def colorize_array(self, x: np.ndarray, size: int | None = None,
                       saturation: float | None = None) -> np.ndarray:
        """(H, W[, 1|2|3|4]) uint8 / uint16 / float [0, 1] -> (H, W, 3|4) of the same dtype.

        Alpha, if any, is passed through untouched.  Color inputs are reduced to their
        lightness first: the output's chroma is all predicted.  Memory: the input, the
        output, one float plane of lightness and one tile of temporaries.
        """
        color, alpha = split_channels(np.asarray(x))
        H, W = color.shape[:2]
        s = self._saturation(saturation)
        shape = self.working_shape(H, W, size)
        L = np.empty((H, W), np.float32)
        for r0, r1, c0, c1 in tiles(H, W):                               # L tile by tile
            f, _ = _to_float(color[r0:r1, c0:c1])
            t = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None]
            L[r0:r1, c0:c1] = (gray_to_lightness(t) if t.shape[1] == 1 else rgb_to_lightness(t))[0, 0].numpy()
        Lt = torch.from_numpy(L)[None, None]
        ab = scale_chroma(self.chroma(resize_lightness(Lt, shape)).cpu(), s)
        out = np.empty((H, W, 3 if alpha is None else 4), dtype=color.dtype)
        _, scale = _to_float(color[:1, :1])
        for r0, r1, c0, c1 in tiles(H, W):                               # join tile by tile
            ab_t = upsample_chroma_rows(ab, H, W, r0, r1, c0, c1)
            rgb = lab_to_rgb(torch.cat((Lt[:, :, r0:r1, c0:c1], ab_t), 1))[0].permute(1, 2, 0).numpy()
            out[r0:r1, c0:c1, :3] = _from_float(rgb, color.dtype, scale)
        if alpha is not None:
            out[:, :, 3] = alpha
        return out

    # ---- anything ----------------------------------------------------------------
    def __call__(self, image, size: int | None = None, saturation: float | None = None):
        return colorize(image, size=size, saturation=saturation, runner=self)


_DEFAULT_RUNNERS: dict = {}
_DEFAULT_LOCK = threading.Lock()


def load(weights: str | os.PathLike | None = None, device="auto", **kw) -> Runner:
    """A Runner for these weights on this device, loaded once per process and reused."""
    key = (str(weights), str(pick_device(device)), tuple(sorted(kw.items())))
    with _DEFAULT_LOCK:
        if key not in _DEFAULT_RUNNERS:
            _DEFAULT_RUNNERS[key] = Runner(weights, device=device, **kw)
        return _DEFAULT_RUNNERS[key]


def colorize(image, *, size: int | None = None, saturation: float | None = None, weights=None,
             device="auto", runner: Runner | None = None):
    """Colorize a black-and-white photo.

    ``image``: a PIL image (any mode; EXIF orientation applied; the current frame of an
    animation), a numpy array (H, W[, C]) of uint8, uint16 or float in [0, 1], or a torch
    tensor (B?, C, H, W) of uint8 or float in [0, 1].  Returns the same kind of object:
    PIL -> PIL ("RGB" or "RGBA", ICC profile kept in ``.info``), array -> array of the
    same dtype with 3 or 4 channels, tensor -> tensor.
    ``size``: working size (the network sees about size*size pixels), 16..2048; default
    from the runner or the model.  ``saturation``: 0..2, scales the predicted chroma
    (0 gray, 1 as predicted: the default).  Bad input is a TintError (one line).
    """
    check_size(size, None)                # arguments first: a typo should not cost a model load
    if saturation is not None:
        check_saturation(saturation)
    runner = runner or load(weights, device)
    if isinstance(image, torch.Tensor):
        return runner.colorize_tensor(image, size, saturation)
    if isinstance(image, np.ndarray):
        return runner.colorize_array(image, size, saturation)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        from PIL import ImageOps

        from .core.pixels import decode_pil, icc_colorspace
        out = runner.colorize_array(decode_pil(ImageOps.exif_transpose(image)), size, saturation)
        if out.dtype != np.uint8:      # PIL has no 16-bit RGB: hand back 8 bits
            out = np.rint(out.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
        result = Image.fromarray(out, "RGBA" if out.shape[2] == 4 else "RGB")
        if icc_colorspace(image.info.get("icc_profile")) == "RGB":   # a GRAY profile would mislabel RGB
            result.info["icc_profile"] = image.info["icc_profile"]
        if "dpi" in image.info:
            result.info["dpi"] = image.info["dpi"]
        return result
    if isinstance(image, (str, Path)):
        raise TintError("colorize() takes pixels; for files use tint.media.io.read_image or 'tint image'")
    raise TintError(f"cannot colorize a {type(image).__name__}; pass a PIL image, numpy array or tensor")
