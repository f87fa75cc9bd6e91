"""One ``colorize()`` under every interface (Python API, CLI, web server, video, bench).

Flow for any input (PIL image, numpy array, torch tensor, uint8 frames): pixels -> L
(full resolution, [0, 100]), then ``tint.core.pipeline.Pipeline`` (``Runner.pipeline``):

           -> L at the working size (about size*size pixels, aspect kept)
           -> network (``Runner.network``, chosen by ``tint.engine.backends.choose``) -> ab
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

from .core.errors import TintError
from .core.pipeline import Pipeline, lightness, to_u8
from .core.pixels import FLOAT_SLACK, check_pixels, check_saturation, check_size
from .core.weights import load_weights, named_size, resolve
from .engine.backends import BACKENDS, choose
from .engine.onnx import import_ort, weights_key


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

    ``backend``: "auto" (the engine on CUDA, else eager PyTorch), "engine" (CUDA only),
    "eager" or "onnx" (ONNX Runtime, CPU only); ``backend`` and
    ``backend_reason`` say which runs and why (``tint.engine.backends``).
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
        if backend == "engine" and self.device.type != "cuda":
            raise TintError(f"the engine backend runs on CUDA only (this is {self.device.type}; "
                            f"use --device cuda, or backend eager or onnx)")
        self.weights_path = resolve(weights)
        self.model, self.meta = load_weights(self.weights_path, device=self.device)
        self.config = self.model.config
        self.size = check_size(size, named_size(weights) or self.config.size)
        if precision == "auto":
            precision = "fp16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        self._lock = threading.Lock()
        self._network, self.backend, self.backend_reason = choose(
            self.model, self.device, backend, precision, key=weights_key(self.weights_path))

    # ---- the network -------------------------------------------------------------
    @property
    def network(self):
        """The callable L_work -> ab that runs (an Engine, an OnnxNetwork, the model, ...)."""
        return self._network

    def use_network(self, network, backend: str = "custom", reason: str = "set by Runner.use_network"):
        """Run ``network`` (any callable L_work (B, 1, h, w) -> ab (B, 2, h, w)) from now on;
        returns the one it replaces.  For scripts that compare runtimes on one runner."""
        with self._lock:
            old = self._network
            self._network, self.backend, self.backend_reason = network, backend, reason
        return old

    @torch.no_grad()
    def chroma(self, L_work: torch.Tensor) -> torch.Tensor:
        """The network alone: L (B, 1, h, w) at a valid working shape -> ab (B, 2, h, w) float32."""
        with self._lock:
            return self._network(L_work.to(self.device, torch.float32)).float()

    @property
    def pipeline(self) -> Pipeline:
        """The pixel pipeline around this runner's network (``tint.core.pipeline``), with the
        engine's fused full-resolution stages for uint8 frames (their references off CUDA)."""
        from .engine import kernels as K
        return Pipeline(self.chroma, self.model.multiple, self.size, self.saturation,
                        lightness_u8=K.lightness_u8, join_u8=K.join_u8)

    def working_shape(self, H: int, W: int, size: int | None = None) -> tuple[int, int]:
        return self.pipeline.working_shape(H, W, size)

    # ---- tensors -----------------------------------------------------------------
    @torch.no_grad()
    def colorize_lightness(self, L: torch.Tensor, size: int | None = None,
                           saturation: float | None = None) -> torch.Tensor:
        """L (B, 1, H, W) in [0, 100] on any device -> sRGB (B, 3, H, W) float in [0, 1], same device."""
        return self.pipeline.colorize_lightness(L, size, saturation)

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
        rgb = self.colorize_lightness(lightness(f), size, saturation)
        if x.dtype == torch.uint8:
            return to_u8(rgb)
        return rgb.to(x.dtype)

    @torch.no_grad()
    def colorize_frames(self, frames, size: int | None = None, saturation: float | None = None,
                        stabilizer=None):
        """uint8 frames (B, H, W, 1|3) (numpy or a tensor on any device) -> uint8 sRGB
        (B, H, W, 3), the same kind (a tensor comes back on its device).  The work runs on
        this runner's device: ``Pipeline.colorize_frames``, the path of the camera and of the
        benchmark's frame rows; ``stabilizer(ab, L_work)`` filters the chroma."""
        t = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if t.dtype != torch.uint8 or t.dim() != 4 or t.shape[3] not in (1, 3):
            raise ValueError(f"expected uint8 frames (B, H, W, 1|3), got {t.dtype} {tuple(t.shape)}")
        out = self.pipeline.colorize_frames(t.to(self.device), size, saturation, stabilizer)
        return out.cpu().numpy() if isinstance(frames, np.ndarray) else out.to(t.device)

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
        out = np.empty((H, W, 3 if alpha is None else 4), dtype=color.dtype)
        self.pipeline.colorize_array(color, size, saturation, out=out)
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
