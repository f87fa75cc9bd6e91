"""Foreign weights -> tint's format (``tint convert``), run once, offline.

Each source format gets a declarative table of rules ``tint key <- source key`` with the
source shape it must have and the layout change it needs (gpt-fast's
convert_hf_checkpoint, timm's ``_n2p``).  ``apply_rules`` then insists that every source
tensor is either consumed by a rule or explicitly ignored, and that every shape matches;
anything else is a TintError naming the key.  ``tint.core.weights.load_state`` does the final
strict copy.  Runtime code never reads these formats: it loads the file written here.

Formats:
  keras   Keras .h5 weights (Keras applications VGG16 ``..._notop.h5``, old ``W_1:0`` names
          or newer ``kernel:0`` names, or a full-model save with ``model_weights``).
  tfjs    TF.js layers model (model.json + binary shards): Tiny Darknet (ml5).
  torch   PyTorch state dicts (weights_only): torchvision vgg16, or a tint Colorizer.

Our encoders read two planes, gray g = L/100 in [0, 1] and a plane of ones; a source's
first conv (RGB, with its own normalization) is folded into that stem exactly
(``fold_rgb_conv``).  The converted file is a full Colorizer: imported encoder, freshly
initialized head, ready for ``tint train --init FILE``.
"""
from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..core.errors import TintError
from ..core.model import LEAKY_SLOPE, Colorizer, ColorizerConfig, TinyDarknetEncoder, VGG16Encoder
from ..core.weights import FORMAT as TINT_FORMAT, load_state, sha256


# Keras applications VGG16 ("caffe" preprocessing): BGR, 0..255, minus the ImageNet mean.
KERAS_VGG_MEAN_BGR = (103.939, 116.779, 123.68)
# torchvision vgg16: RGB in [0, 1], minus mean, divided by std (per channel, RGB order).
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
FP16_MAX = 65504.0
INIT_SEED = 0          # the fresh head is seeded, so a conversion is reproducible


# --------------------------------------------------------------------------- layout helpers
def tf_to_torch_conv(kernel: torch.Tensor) -> torch.Tensor:
    """TF/Keras conv kernel (kH, kW, in, out) -> PyTorch (out, in, kH, kW)."""
    if kernel.dim() != 4:
        raise ValueError(f"expected a 4-d conv kernel, got shape {tuple(kernel.shape)}")
    return kernel.permute(3, 2, 0, 1).contiguous()


def fold_rgb_conv(weight_oihw: torch.Tensor, scale, mean_per_input_channel) -> torch.Tensor:
    """Fold a first conv's input normalization into tint's (gray, ones) stem, exactly.

    ``weight_oihw`` (O, C, kH, kW) was trained on zero-padded inputs
    ``x_c = scale_c * g - mean_c`` for each of its C input channels (in the conv's own
    channel order, e.g. BGR for Caffe/Keras VGG), where g in [0, 1] is the image.  A gray
    image puts the same g in every channel, so

        sum_c W[:, c] * x_c = (sum_c scale_c W[:, c]) * g  +  (-sum_c mean_c W[:, c]) * 1

    Returns (O, 2, kH, kW): weights for the planes (g, ones); the bias is unchanged.
    The ones plane is zero-padded like the image, so the border pixels are exact too
    (the source saw zeros there after normalization, and so do both of our planes).

    ``scale`` and ``mean_per_input_channel``: scalars or length C.  Examples:
    Keras VGG16 (Caffe): 255, BGR mean [103.939, 116.779, 123.68];
    torchvision: 1/std, mean/std;  Tiny Darknet (RGB/255): 1, 0.
    Computed in float64, returned in ``weight_oihw``'s dtype.
    """
    if weight_oihw.dim() != 4:
        raise ValueError(f"expected (O, C, kH, kW), got shape {tuple(weight_oihw.shape)}")
    c = weight_oihw.shape[1]
    w = weight_oihw.double()

    def per_channel(v, what):
        t = torch.as_tensor(v, dtype=torch.float64).flatten()
        if t.numel() == 1:
            t = t.expand(c)
        if t.numel() != c:
            raise ValueError(f"{what} has {t.numel()} values for a conv with {c} input channels")
        return t.view(1, c, 1, 1)

    gray = (w * per_channel(scale, "scale")).sum(1)                             # (O, kH, kW)
    ones = -(w * per_channel(mean_per_input_channel, "mean")).sum(1)            # (O, kH, kW)
    return torch.stack((gray, ones), 1).to(weight_oihw.dtype)                   # (O, 2, kH, kW)


def _tf_shape(oihw: Iterable[int], cin: int | None = None) -> tuple:
    """The TF (kH, kW, in, out) shape of a torch (O, I, kH, kW) weight; ``cin`` overrides I."""
    o, i, kh, kw = oihw
    return (kh, kw, i if cin is None else cin, o)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


# --------------------------------------------------------------------------- the checked copy
@dataclass(frozen=True)
class Rule:
    """``dst`` (tint key) <- ``fn(source[src])``; ``source[src]`` must have shape ``shape``."""
    dst: str
    src: str
    shape: tuple
    fn: Callable[[torch.Tensor], torch.Tensor] = _identity


def apply_rules(source: dict, rules: list[Rule], ignore: Iterable[str], origin: str) -> dict:
    """Run ``rules`` over ``source`` (name -> array/tensor) -> {tint key: float32 tensor}.

    Every rule's source key must exist with its shape; every source key must be used by a
    rule or fully match one of the ``ignore`` regexes.  Otherwise TintError naming the key.
    """
    assert len({r.dst for r in rules}) == len(rules), "duplicate destination in a rule table"
    out, used = {}, set()
    for r in rules:
        if r.src not in source:
            raise TintError(f"{origin}: missing tensor {r.src!r} (needed for {r.dst})")
        v = source[r.src]
        if tuple(v.shape) != tuple(r.shape):
            raise TintError(f"{origin}: tensor {r.src!r} has shape {tuple(v.shape)}, "
                            f"expected {tuple(r.shape)} (for {r.dst})")
        t = v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v, dtype=np.float32))
        out[r.dst] = r.fn(t.float())
        used.add(r.src)
    patterns = [re.compile(p) for p in ignore]
    left = sorted(k for k in source if k not in used and not any(p.fullmatch(k) for p in patterns))
    if left:
        raise TintError(f"{origin}: unexpected tensor {left[0]!r} ({len(left)} not used by the "
                        f"importer; is this the right --from / --backbone?)")
    return out


def _fresh_colorizer(config: ColorizerConfig) -> Colorizer:
    """A Colorizer with a reproducibly initialized head (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        return Colorizer(config)


def _with_fresh(model: torch.nn.Module, imported: dict, prefix: str) -> dict:
    """``imported`` plus the model's own values for everything not under ``prefix`` and for
    BN ``num_batches_tracked`` counters (no source format stores them)."""
    full = dict(imported)
    for k, v in model.state_dict().items():
        if k not in full and (not k.startswith(prefix) or k.endswith(".num_batches_tracked")):
            full[k] = v.clone()
    return full


# --------------------------------------------------------------------------- readers
def _need_h5py():
    try:
        import h5py
    except ImportError:
        raise TintError('reading Keras .h5 files needs h5py: pip install "tint[import]"') from None
    return h5py


def _one_line(e: BaseException, limit: int = 200) -> str:
    """An exception's message squeezed onto one line (library messages span several)."""
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if len(msg) <= limit else msg[:limit] + "..."


def _text(v) -> str:
    return v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v)


def _keras_short_name(layer: str, weight_name: str) -> str:
    """'block1_conv1_W_1:0' (Keras 1 era) or 'block1_conv1/kernel:0' (Keras 2) -> 'kernel'."""
    short = re.sub(r":\d+$", "", weight_name.rsplit("/", 1)[-1])
    m = re.fullmatch(rf"{re.escape(layer)}_(W|b)(_\d+)?", short)
    if m:
        return {"W": "kernel", "b": "bias"}[m.group(1)]
    return short


def read_keras_h5(path) -> dict[str, np.ndarray]:
    """A Keras .h5 weights file -> {'<layer>/<kernel|bias|...>': array}, read through the
    root ``layer_names`` attr and each group's ``weight_names`` attr (as Keras does)."""
    h5py = _need_h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise TintError(f"{path}: not a readable HDF5 (Keras .h5) file ({_one_line(e)})") from None
    out = {}
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            hint = " (Keras 3 '.weights.h5' files are not supported)" if "layers" in root else ""
            raise TintError(f"{path}: no 'layer_names' attribute: not a Keras 2 weights file{hint}")
        for layer in map(_text, root.attrs["layer_names"]):
            if layer not in root:
                raise TintError(f"{path}: layer {layer!r} is listed but has no group")
            g = root[layer]
            for wn in map(_text, g.attrs.get("weight_names", [])):
                if wn not in g:
                    raise TintError(f"{path}: weight {layer}/{wn} is listed but missing")
                key = f"{layer}/{_keras_short_name(layer, wn)}"
                if key in out:
                    raise TintError(f"{path}: two weights map to {key!r}")
                out[key] = np.asarray(g[wn])
    if not out:
        raise TintError(f"{path}: Keras file holds no weights")
    return out


@dataclass
class TfjsModel:
    layers: list            # modelTopology layer configs, in network order
    tensors: dict           # weight name -> float32 array
    json_path: Path
    shard_paths: list       # in manifest order


def _tfjs_json(path) -> Path:
    path = Path(path)
    p = path / "model.json" if path.is_dir() else path
    if not p.is_file():
        raise TintError(f"{path}: no TF.js model.json found")
    return p


def read_tfjs(path) -> TfjsModel:
    """A TF.js layers model (model.json or its folder) -> topology + tensors by name.

    Each manifest group's shard files are concatenated in order and cut into the group's
    tensors in manifest order (float32 only; quantized weights are refused).
    """
    jp = _tfjs_json(path)
    try:
        m = json.loads(jp.read_text(encoding="utf-8"))
        manifest = m["weightsManifest"]
        topo = m["modelTopology"]
        mc = topo.get("model_config", topo)
        cfg = mc["config"]
        layers = cfg["layers"] if isinstance(cfg, dict) else cfg
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise TintError(f"{jp}: not a TF.js layers model.json ({type(e).__name__}: {_one_line(e)})") from None
    tensors, shards = {}, []
    for group in manifest:
        blob = []
        for name in group.get("paths", []):
            sp = jp.parent / name
            if Path(name).name != name or not sp.is_file():
                raise TintError(f"{jp}: weight shard {name!r} not found beside model.json")
            blob.append(sp.read_bytes())
            shards.append(sp)
        blob = b"".join(blob)
        off = 0
        for w in group.get("weights", []):
            name, shape = w["name"], tuple(int(s) for s in w["shape"])
            if w.get("dtype", "float32") != "float32" or "quantization" in w:
                raise TintError(f"{jp}: tensor {name!r} is {w.get('dtype')}"
                                f"{' quantized' if 'quantization' in w else ''}; only float32 is supported")
            n = 4 * math.prod(shape)
            if off + n > len(blob):
                raise TintError(f"{jp}: shards of {group['paths']} are too short for tensor {name!r}")
            if name in tensors:
                raise TintError(f"{jp}: tensor {name!r} appears twice in the manifest")
            tensors[name] = np.frombuffer(blob, "<f4", math.prod(shape), off).reshape(shape)
            off += n
        if off != len(blob):
            raise TintError(f"{jp}: {len(blob) - off} bytes left over in shards {group['paths']} "
                            f"(manifest and shards disagree)")
    return TfjsModel(layers, tensors, jp, shards)


def read_torch(path) -> dict[str, torch.Tensor]:
    """A PyTorch state dict (``torch.load(weights_only=True)``) or a plain safetensors file."""
    path = Path(path)
    kind = _sniff(path)
    if kind not in ("torch", "safetensors"):
        looks = f"; it looks like {kind}" if kind else ""
        raise TintError(f"{path}: not a PyTorch weights file (neither a torch zip nor a pickle{looks})")
    if kind == "safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file
        try:
            with safe_open(str(path), framework="pt") as f:
                md = f.metadata() or {}
            if md.get("format") == TINT_FORMAT:
                raise TintError(f"{path}: already a tint weights file; nothing to convert")
            return load_file(str(path))
        except TintError:
            raise
        except Exception as e:
            raise TintError(f"{path}: not a readable safetensors file ({_one_line(e)})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise TintError(f"{path}: refusing a pickle that holds more than tensors "
                        f"(weights_only load failed: {_one_line(last)})") from None
    except Exception as e:  # zip, EOF and format errors come in many types
        raise TintError(f"{path}: not a PyTorch weights file ({type(e).__name__}: {_one_line(e)})") from None
    for key in ("state_dict", "model", "model_state_dict"):      # common training wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise TintError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TintError(f"{path}: entry {bad[0]!r} is not a tensor; expected a state dict")
    if all(k.startswith("module.") for k in obj):                 # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _sniff(path: Path) -> str | None:
    """Guess a file's format from its first bytes."""
    if path.is_dir() or path.suffix == ".json":
        return "tfjs"
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise TintError(f"cannot read {path}: {e.strerror or e}") from None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":   # torch zip, or a legacy pickle
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (100 << 20):
        return "safetensors"
    return None


# --------------------------------------------------------------------------- VGG16 tables
def _vgg16_convs():
    """[(block, index)] of VGG16Encoder's convs, in network order: (1,1) .. (4,3)."""
    return [(b, i) for b, widths in enumerate(VGG16Encoder.blocks, 1) for i in range(1, len(widths) + 1)]


def keras_vgg16_rules(own: dict, prefix: str = "encoder.") -> tuple[list[Rule], list[str]]:
    """Keras applications VGG16: blockB_convI -> convB_I (B <= 4); block5 deliberately ignored."""
    stem = lambda k: fold_rgb_conv(tf_to_torch_conv(k), 255.0, KERAS_VGG_MEAN_BGR)  # noqa: E731
    rules = []
    for b, i in _vgg16_convs():
        dst, src = f"{prefix}conv{b}_{i}", f"block{b}_conv{i}"
        first = (b, i) == (1, 1)
        rules.append(Rule(f"{dst}.weight", f"{src}/kernel",
                          _tf_shape(own[f"{dst}.weight"].shape, 3 if first else None),
                          stem if first else tf_to_torch_conv))
        rules.append(Rule(f"{dst}.bias", f"{src}/bias", tuple(own[f"{dst}.bias"].shape)))
    return rules, [r"block5_conv\d+/(kernel|bias)"]     # our encoder stops at conv4_3


def torchvision_vgg16_rules(own: dict, prefix: str = "encoder.") -> tuple[list[Rule], list[str]]:
    """torchvision vgg16: features.{0,2,5,...,21} -> conv1_1 .. conv4_3; the rest ignored."""
    std = torch.tensor(TORCHVISION_STD, dtype=torch.float64)
    mean = torch.tensor(TORCHVISION_MEAN, dtype=torch.float64)
    stem = lambda w: fold_rgb_conv(w, 1.0 / std, mean / std)     # noqa: E731
    rules, idx = [], 0
    for b, widths in enumerate(VGG16Encoder.blocks, 1):
        for i in range(1, len(widths) + 1):
            dst, first = f"{prefix}conv{b}_{i}", (b, i) == (1, 1)
            shape = tuple(own[f"{dst}.weight"].shape)
            rules.append(Rule(f"{dst}.weight", f"features.{idx}.weight",
                              (shape[0], 3) + shape[2:] if first else shape, stem if first else _identity))
            rules.append(Rule(f"{dst}.bias", f"features.{idx}.bias", tuple(own[f"{dst}.bias"].shape)))
            idx += 2                     # conv, relu
        idx += 1                         # max-pool
    # conv5_* (features.24..28) and the fully connected classifier are not in our encoder
    return rules, [r"features\.(2[4-9]|[3-9]\d)\.(weight|bias)", r"classifier\.\d+\.(weight|bias)"]


# --------------------------------------------------------------------------- Tiny Darknet (TF.js)
BN_NAMES = (("gamma", "weight"), ("beta", "bias"),
            ("moving_mean", "running_mean"), ("moving_variance", "running_var"))


def darknet_plan(layers: list, origin: str) -> tuple[list[tuple[str, str]], str]:
    """Keras topology -> ([(conv name, its BN name)] in network order, final conv name).

    The order comes from the layer list (the network's order), never from sorting names,
    and the structure is checked against ``TinyDarknetEncoder.layers`` + a 1x1 conv to 1000.
    """
    seq, pairs, last_conv = [], [], None
    for layer in layers:
        cls, c = layer.get("class_name"), layer.get("config", {})
        name = c.get("name", layer.get("name"))
        if cls == "InputLayer":
            shape = c.get("batch_input_shape") or c.get("batch_shape")
            if shape and shape[-1] != 3:
                raise TintError(f"{origin}: input has {shape[-1]} channels, Tiny Darknet takes 3 (RGB)")
        elif cls == "Conv2D":
            k = tuple(c.get("kernel_size", ()))
            if (k[0] != k[1] or tuple(c.get("strides", (1, 1))) != (1, 1) or c.get("padding") != "same"
                    or tuple(c.get("dilation_rate", (1, 1))) != (1, 1)
                    or c.get("data_format", "channels_last") != "channels_last"):
                raise TintError(f"{origin}: conv {name!r} is not a square stride-1 'same' conv")
            seq.append((k[0], int(c["filters"]), bool(c.get("use_bias", True))))
            pairs.append([name, None])
            last_conv = name
        elif cls == "BatchNormalization":
            if last_conv is None or pairs[-1][1] is not None:
                raise TintError(f"{origin}: batch norm {name!r} does not follow a conv")
            if abs(float(c.get("epsilon", 1e-3)) - TinyDarknetEncoder.bn_eps) > 1e-9:
                raise TintError(f"{origin}: batch norm {name!r} has epsilon {c.get('epsilon')}, "
                                f"tint's Tiny Darknet uses {TinyDarknetEncoder.bn_eps}")
            pairs[-1][1] = name
        elif cls == "LeakyReLU":
            if abs(float(c.get("alpha", c.get("negative_slope", 0.3))) - LEAKY_SLOPE) > 1e-6:
                raise TintError(f"{origin}: {name!r} is not LeakyReLU({LEAKY_SLOPE})")
        elif cls == "MaxPooling2D":
            if tuple(c.get("pool_size", ())) != (2, 2) or tuple(c.get("strides") or (2, 2)) != (2, 2):
                raise TintError(f"{origin}: pool {name!r} is not 2x2 stride 2")
            seq.append(None)
        elif cls == "GlobalAveragePooling2D":
            pass
        else:
            raise TintError(f"{origin}: layer {name!r} of type {cls} is not part of Tiny Darknet")
    want = [None if l is None else (l[0], l[1], False) for l in TinyDarknetEncoder.layers if l != "tap"]
    want.append((1, 1000, True))                                   # the ImageNet classifier
    if seq != want:
        at = next((i for i, (a, b) in enumerate(zip(seq, want)) if a != b), min(len(seq), len(want)))
        raise TintError(f"{origin}: topology is not Tiny Darknet (layer {at}: got "
                        f"{seq[at] if at < len(seq) else 'end'}, expected {want[at] if at < len(want) else 'end'})")
    if any(bn is None for _, bn in pairs[:-1]) or pairs[-1][1] is not None:
        raise TintError(f"{origin}: every conv but the last must be followed by batch norm")
    return [tuple(p) for p in pairs[:-1]], pairs[-1][0]


def darknet_rules(plan, own: dict, prefix: str, fold: bool, classifier: bool):
    """Tiny Darknet: i-th conv of the topology -> conv{i}/bn{i}; last conv -> classifier."""
    pairs, final = plan
    rules = []
    for i, (conv, bn) in enumerate(pairs, 1):
        w = f"{prefix}conv{i}.weight"
        if i == 1 and fold:          # RGB/255, no mean: gray = sum of the RGB filters
            fn, shape = (lambda k: fold_rgb_conv(tf_to_torch_conv(k), 1.0, 0.0)), _tf_shape(own[w].shape, 3)
        else:
            fn, shape = tf_to_torch_conv, _tf_shape(own[w].shape)
        rules.append(Rule(w, f"{conv}/kernel", shape, fn))
        for src, dst in BN_NAMES:
            d = f"{prefix}bn{i}.{dst}"
            rules.append(Rule(d, f"{bn}/{src}", tuple(own[d].shape)))
    ignore = []
    if classifier:
        rules.append(Rule(f"{prefix}classifier.weight", f"{final}/kernel",
                          _tf_shape(own[f"{prefix}classifier.weight"].shape), tf_to_torch_conv))
        rules.append(Rule(f"{prefix}classifier.bias", f"{final}/bias", (1000,)))
    else:                            # the ImageNet classifier is not part of the colorizer
        ignore = [re.escape(f"{final}/kernel"), re.escape(f"{final}/bias")]
    return rules, ignore


def load_tfjs_darknet(path, classifier: bool = True) -> TinyDarknetEncoder:
    """The TF.js Tiny Darknet as an RGB network (input RGB in [0, 1]), eval mode, float32.

    ``classifier=True`` keeps the 1x1 conv to 1000 ImageNet classes (``model.classify``).
    """
    tf = read_tfjs(path)
    origin = str(tf.json_path)
    model = TinyDarknetEncoder(in_channels=3, classifier=classifier)
    own = model.state_dict()
    rules, ignore = darknet_rules(darknet_plan(tf.layers, origin), own, "", False, classifier)
    load_state(model, _with_fresh(model, apply_rules(tf.tensors, rules, ignore, origin), ""), origin)
    return model.eval()


# --------------------------------------------------------------------------- to a Colorizer
FORMAT_NAMES = {
    "keras": "Keras .h5 (Keras applications VGG16)",
    "tfjs": "TF.js layers model (Tiny Darknet)",
    "torchvision": "PyTorch state dict (torchvision vgg16)",
    "tint-state-dict": "PyTorch state dict (tint Colorizer)",
}
FOLDS = {
    "keras": "conv1_1: Caffe BGR 0..255 minus mean [103.939, 116.779, 123.68] folded into (gray, ones)",
    "tfjs": "conv1: RGB/255 folded into gray (sum of RGB filters), ones plane zero",
    "torchvision": "conv1_1: RGB [0,1] (x-mean)/std (ImageNet) folded into (gray, ones)",
}
BACKBONE_OF = {"keras": "vgg16", "tfjs": "tiny-darknet", "torchvision": "vgg16"}


def _config(backbone: str, args_backbone: str | None, kind: str, **head) -> ColorizerConfig:
    if args_backbone and args_backbone != backbone:
        raise TintError(f"the source holds a {backbone} encoder ({FORMAT_NAMES[kind]}), "
                        f"not --backbone {args_backbone}")
    try:
        return ColorizerConfig(backbone=backbone, **head)
    except ValueError as e:
        raise TintError(str(e)) from None


def _digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def convert(src, fmt: str = "auto", backbone: str | None = None, **head) -> tuple[Colorizer, dict]:
    """Import ``src`` into a tint Colorizer -> (model, meta).

    ``head``: ColorizerConfig options for the (freshly initialized) head, e.g.
    ``output="bins", final_width=32``.  ``fmt``: auto, keras, tfjs or torch.
    """
    src = Path(src)
    if not src.exists():
        raise TintError(f"source not found: {src}")
    sniffed = _sniff(src)
    if fmt == "auto":
        if sniffed is None:
            raise TintError(f"{src}: cannot tell its format; pass --from keras|tfjs|torch")
        fmt = "torch" if sniffed == "safetensors" else sniffed
    if fmt == "tfjs":
        src = _tfjs_json(src)
    elif src.is_dir():
        raise TintError(f"{src} is a folder; --from {fmt} takes a file")
    origin = str(src)
    # the file name, not the local path (the output may be shared); a TF.js model.json is
    # anonymous without its folder
    name = f"{src.parent.name}/{src.name}" if fmt == "tfjs" else src.name
    meta = {"source": name, "sha256": sha256(src), "converted_by": "tint convert",
            "head": "untrained", "init_seed": INIT_SEED}

    if fmt == "keras":
        source, kind = read_keras_h5(src), "keras"
    elif fmt == "tfjs":
        tf = read_tfjs(src)
        source, kind = tf.tensors, "tfjs"
        meta["shards_sha256"] = _digest(tf.shard_paths)
    elif fmt == "torch":
        source = read_torch(src)
        if any(k.startswith("features.") for k in source):
            kind = "torchvision"
        elif any(k.startswith("encoder.") for k in source):
            kind = "tint-state-dict"
        else:
            raise TintError(f"{src}: unrecognized state dict (first key {next(iter(source))!r}); "
                            f"expected torchvision vgg16 'features.*' or tint 'encoder.*' keys")
    else:
        raise TintError(f"unknown --from {fmt!r} (auto, keras, tfjs or torch)")
    meta["format"] = FORMAT_NAMES[kind]

    if kind == "tint-state-dict":
        if backbone is None:
            raise TintError(f"{src}: a tint state dict does not record its config; pass --backbone "
                            f"(and --output/--final-width as it was trained)")
        try:
            config = ColorizerConfig(backbone=backbone, **head)
        except ValueError as e:
            raise TintError(str(e)) from None
        model = _fresh_colorizer(config)
        load_state(model, {k: v.float() for k, v in source.items()}, origin)
        meta["head"] = "imported"
        return model.eval(), meta

    config = _config(BACKBONE_OF[kind], backbone, kind, **head)
    model = _fresh_colorizer(config)
    own = model.state_dict()
    if kind == "keras":
        rules, ignore = keras_vgg16_rules(own)
    elif kind == "torchvision":
        rules, ignore = torchvision_vgg16_rules(own)
    else:
        rules, ignore = darknet_rules(darknet_plan(tf.layers, origin), own, "encoder.",
                                      fold=True, classifier=False)
    imported = apply_rules(source, rules, ignore, origin)
    load_state(model, _with_fresh(model, imported, "encoder."), origin)
    meta["encoder"] = f"{config.backbone}: {len(rules)} tensors imported"
    meta["input_fold"] = FOLDS[kind]
    return model.eval(), meta
