"""The native weights format: safetensors (no pickle) with the model config inside.

A file holds the tensors of a ``Colorizer`` state dict plus three metadata strings:
``format`` (``tint-weights/1``), ``config`` (JSON of ``ColorizerConfig``) and ``meta``
(JSON: where the weights came from, training data and terms, metrics).  The file alone
rebuilds its model.  Loading memory-maps the file and checks every key and shape.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import TintError
from .files import atomic_write
from .model import BACKBONES, Colorizer, ColorizerConfig
from .pixels import MAX_SIZE, MIN_SIZE

FORMAT = "tint-weights/1"
PACKAGE_WEIGHTS = Path(__file__).parents[1] / "weights"     # tint/weights/: package data


@dataclass(frozen=True)
class NamedWeights:
    """A bundled checkpoint: file inside the package, its hash and what it is; ``size``, a
    working size the name stands for (None: the file's own)."""
    file: str
    sha256: str
    description: str
    size: int | None = None


# Bundled checkpoints; how each was trained and measured: docs/EVAL.md.
REGISTRY: dict[str, NamedWeights] = {
    "default": NamedWeights(
        file="tint-default.safetensors",
        sha256="c1f1837865a8e59d2dbf9b2a048bfeafd25b71020d78acb0e1077716dd1ee4af",
        description="2026-12-02e: tiny-darknet encoder (ImageNet) + residual head with global context, "
                    "261 ab bins at stride 2 (T=0.3, chroma gain 1.1, chosen on tune), bins loss with a feature "
                    "and class loss through the frozen ImageNet Tiny Darknet and a patch critic, trained 64.9 min "
                    "on train-v2 (68,884 photos); dev: PSNR 22.43 dB (gray 21.65), colorfulness 83 %, FID 83.1 "
                    "(gray 175.4)"),
    # Live use on a CPU until a distilled fast model exists: the same network at a quarter of
    # the pixels.  2-core CPU: camera 320x240 16.6 frames/s, p50 80 ms (2026-12-02 network);
    # 2026-12-02e: dev PSNR 22.13 dB (gray 21.65), FID 102.7 = 1.24x the default's; people300
    # 68.0 = 1.28x (docs/CPU.md).
    "fast": NamedWeights(
        file="tint-default.safetensors",
        sha256="c1f1837865a8e59d2dbf9b2a048bfeafd25b71020d78acb0e1077716dd1ee4af",
        description="the default network at working size 128, for live colorization on a CPU",
        size=128),
    "2026-11-22": NamedWeights(
        file="tint-2026-11-22.safetensors",
        sha256="91e39734299b51511cc7a9a282deea6328aed382eddefcb93b3139872596bb36",
        description="the first default: tiny-darknet encoder (ImageNet) + residual head, 261 ab bins, T=1.5, "
                    "7,435 photos; dev: PSNR 22.01 dB (gray 21.65), colorfulness 38.9 (truth 41.3), FID 109.3"),
}
DEFAULT = "default"
LIVE = "fast"            # what camera, video and the web page's webcam run without CUDA


def save_weights(model: Colorizer, path, *, dtype=torch.float16, meta: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (floats cast to ``dtype``); returns the path."""
    from safetensors.torch import save_file
    tensors = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "config": json.dumps(model.config.to_dict()),
                "meta": json.dumps(meta or {}, sort_keys=True)}
    path = Path(path)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path


# What a weights file's config may hold, checked before anything is built: the config is
# data from a file, and a width of 10^9 is an allocation of hundreds of GB.  (type, low,
# high) or (type, choices).  A config key that is not a ColorizerConfig field is refused;
# a field missing here (added to the dataclass later) is left to the dataclass.
CONFIG_RULES = {
    "backbone":    (str, tuple(BACKBONES)),
    "output":      (str, ("ab", "bins")),
    "final_width": (int, 1, 1024),
    "bin_step":    (float, 5.0, 100.0),        # 5 -> 960 bins, 100 -> 8
    "temperature": (float, 0.01, 100.0),
    "size":        (int, MIN_SIZE, MAX_SIZE),
    "context":     (int, 0, 1024),             # 0 = no global-context branch
    "out_stride":  (int, (1, 2, 4)),
    "chroma_gain": (float, 0.25, 4.0),
    "width":       (int, 1, 8),
}


def validate_config(raw, source: str = "config") -> ColorizerConfig:
    """A config dict from a file -> ColorizerConfig, every value checked against
    CONFIG_RULES first; TintError naming the key otherwise."""
    if not isinstance(raw, dict):
        raise TintError(f"{source}: bad config in weights file: expected an object, got {type(raw).__name__}")
    fields = {f.name for f in dataclasses.fields(ColorizerConfig)}
    for key, value in raw.items():
        if key not in fields:
            raise TintError(f"{source}: bad config in weights file: unknown key {key!r} (file from a newer tint?)")
        rule = CONFIG_RULES.get(key)
        if rule is None:
            continue
        kind, *allowed = rule
        ok_type = (isinstance(value, str) if kind is str else
                   isinstance(value, int) and not isinstance(value, bool) if kind is int else
                   isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
        if not ok_type:
            raise TintError(f"{source}: bad config in weights file: {key} must be {kind.__name__}, got {value!r}")
        if len(allowed) == 1 and value not in allowed[0]:
            raise TintError(f"{source}: bad config in weights file: {key} must be one of "
                            f"{', '.join(map(str, allowed[0]))}, got {value!r}")
        if len(allowed) == 2 and not allowed[0] <= value <= allowed[1]:
            raise TintError(f"{source}: bad config in weights file: {key} must be in "
                            f"{allowed[0]:g}..{allowed[1]:g}, got {value!r}")
    try:
        return ColorizerConfig.from_dict(raw)
    except (ValueError, TypeError) as e:
        raise TintError(f"{source}: bad config in weights file: {e}") from None


def read_header(path) -> tuple[ColorizerConfig, dict]:
    """(config, meta) of a weights file, without reading its tensors."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise TintError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for a bad header
        raise TintError(f"{path}: not a safetensors weights file ({e})") from None
    if md.get("format") != FORMAT or "config" not in md:
        raise TintError(f"{path}: not a tint weights file (no '{FORMAT}' config inside; "
                        f"convert foreign weights with 'tint convert')")
    try:
        raw = json.loads(md["config"])
        meta = json.loads(md.get("meta", "{}"))
    except ValueError as e:
        raise TintError(f"{path}: bad config in weights file: {e}") from None
    if not isinstance(meta, dict):
        raise TintError(f"{path}: bad metadata in weights file: expected an object")
    return validate_config(raw, str(path)), meta


def load_state(model: torch.nn.Module, tensors: dict, source: str) -> None:
    """Copy ``tensors`` into ``model``: every key used, every shape equal, or a TintError naming it."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing:
        raise TintError(f"{source}: missing tensor {missing[0]!r} ({len(missing)} missing)")
    if unexpected:
        raise TintError(f"{source}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} unused)")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise TintError(f"{source}: tensor {k!r} has shape {tuple(v.shape)}, "
                            f"model expects {tuple(own[k].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=True)


def load_weights(path, device="cpu", dtype=torch.float32) -> tuple[Colorizer, dict]:
    """Rebuild the model stored in ``path``; returns (model in eval mode, meta).
    The config is validated (``validate_config``) before the model is built."""
    from safetensors.torch import load_file
    config, meta = read_header(path)
    model = Colorizer(config)
    load_state(model, load_file(str(path)), str(path))
    return model.to(device=device, dtype=dtype).eval(), meta


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def named_size(weights) -> int | None:
    """The working size a bundled name stands for, if it names one (``fast``: 128)."""
    entry = REGISTRY.get(DEFAULT if weights is None else str(weights))
    return entry.size if entry else None


def resolve(weights: str | os.PathLike | None) -> Path:
    """A bundled name (``default``) or a path -> the file to load, hash-checked if bundled."""
    name = DEFAULT if weights is None else str(weights)
    if name in REGISTRY:
        entry = REGISTRY[name]
        path = PACKAGE_WEIGHTS / entry.file
        if not path.is_file():
            raise TintError(f"bundled weights {name!r} missing from this install ({path})")
        if sha256(path) != entry.sha256:
            raise TintError(f"bundled weights {name!r} are corrupt (sha256 mismatch): reinstall tint")
        return path
    if weights is None:
        raise TintError("no default weights are bundled with this install; pass --weights FILE "
                        "(a .safetensors from 'tint train' or 'tint convert')")
    return Path(weights)
