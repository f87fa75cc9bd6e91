"""``tint info``: the model, the device, the backend that runs and why, the versions."""
from __future__ import annotations

import argparse

from ..core.errors import TintError
from .options import add_model_options


def add_info_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p)    # only the shared model options


def run_info(args) -> int:
    import platform

    import torch

    from .. import __version__
    from ..api import pick_device
    from ..core.model import Colorizer
    from ..core.pixels import check_size
    from ..core.weights import LIVE, named_size, read_header, resolve

    rows = [("tint", __version__), ("python", platform.python_version()), ("torch", torch.__version__)]
    try:
        import cv2
        rows.append(("opencv", cv2.__version__))
    except ImportError:
        rows.append(("opencv", "not installed (16-bit colour images are read and written as 8-bit)"))
    device = pick_device(args.device)
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    rows.append(("device", name))
    try:
        path = resolve(args.weights)
    except TintError as e:
        if args.weights is not None:
            raise
        rows.append(("weights", f"none: {e}"))
        path = None
    if path is not None:
        config, meta = read_header(path)
        params = sum(p.numel() for p in Colorizer(config).parameters())
        rows += [("weights", f"{path} ({path.stat().st_size / 1e6:.1f} MB)"),
                 ("config", ", ".join(f"{k}={v}" for k, v in config.to_dict().items())),
                 *_meta_rows(meta),
                 ("parameters", f"{params:,}"),
                 ("working size", str(check_size(args.size, named_size(args.weights) or config.size))),
                 _backend_row(device, path, args.backend)]
        if args.weights is None and device.type != "cuda":
            rows.append(("commands", f"image, serve, eval: this model; camera, video and the web page's "
                                     f"webcam: --weights {LIVE} (working size {named_size(LIVE)}), the live "
                                     "path without CUDA"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def _backend_row(device, path, backend: str = "auto") -> tuple[str, str]:
    """The runtime every command runs this model with on this device, and why: the real
    choice (``tint.engine.backends.choose``, through a Runner: with --backend onnx the
    in-memory ONNX export is made and checked, a few seconds; on CUDA the engine is built)."""
    from ..api import Runner
    r = Runner(path, device=device, backend=backend)
    return "backend", f"{r.backend}: {r.backend_reason}"


def _meta_rows(meta: dict) -> list[tuple[str, str]]:
    """The metadata a person reads first; nested training details (args, data) are summarized."""
    if not meta:
        return [("meta", "(none)")]
    rows = [(k, str(meta[k])) for k in ("name", "description", "data_terms", "note") if k in meta]
    ev = meta.get("dev_eval")
    if isinstance(ev, dict) and "psnr" in ev:
        rows.append(("dev eval", f"PSNR {ev['psnr']:.2f} dB (gray {ev.get('gray_psnr', float('nan')):.2f}), "
                                 f"colorfulness {ev.get('colorfulness', 0):.1f} "
                                 f"(truth {ev.get('colorfulness_truth', 0):.1f})"))
    if "steps" in meta:
        rows.append(("training", f"{meta.get('trained_with', '?')}, {meta['steps']} steps, "
                                 f"{(meta.get('data') or {}).get('images', '?')} images"))
    rest = sorted(set(meta) - {"name", "description", "data_terms", "note", "dev_eval", "steps"})
    rows.append(("meta keys", ", ".join(rest) or "(none)"))
    return rows
