"""``tint convert``: import Keras .h5, TF.js or PyTorch weights into tint's format."""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import TintError
from ..core.model import BACKBONES, ColorizerConfig
from ..core.weights import save_weights
from ..training.importers import FP16_MAX, convert


def add_arguments(p) -> None:
    p.add_argument("src", metavar="SRC", help="Keras .h5, TF.js model.json (or its folder), or PyTorch .pt/.pth")
    p.add_argument("-o", "--out", required=True, metavar="OUT.safetensors", help="tint weights file to write")
    p.add_argument("--from", dest="fmt", choices=("auto", "keras", "tfjs", "torch"), default="auto",
                   help="source format (default: guessed from the file)")
    p.add_argument("--backbone", choices=tuple(BACKBONES), default=None,
                   help="encoder (default: the one the source holds; required for a tint state dict)")
    p.add_argument("--output", choices=("ab", "bins"), default=ColorizerConfig.output,
                   help="head output: regress ab, or classify quantized ab bins")
    p.add_argument("--final-width", type=int, default=ColorizerConfig.final_width, metavar="N",
                   help=f"channels after the last merge (default {ColorizerConfig.final_width})")
    p.add_argument("--fp32", action="store_true", help="store float32 (default float16)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args) -> int:
    src, out = Path(args.src), Path(args.out)
    if args.final_width < 1:
        raise TintError(f"--final-width must be at least 1, got {args.final_width}")
    if out.exists():
        if src.exists() and out.resolve() == src.resolve():
            raise TintError(f"{out} is the source; write the converted file elsewhere")
        if not args.overwrite:
            raise TintError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise TintError(f"output folder does not exist: {out.parent}")
    model, meta = convert(src, args.fmt, args.backbone, output=args.output, final_width=args.final_width)
    dtype = torch.float32 if args.fp32 else torch.float16
    if dtype == torch.float16:
        for k, v in model.state_dict().items():
            if v.is_floating_point() and v.abs().max() > FP16_MAX:
                raise TintError(f"tensor {k!r} exceeds the float16 range; pass --fp32")
    save_weights(model, out, dtype=dtype, meta=meta)
    c = model.config
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {str(dtype).replace('torch.', '')}): "
          f"{c.backbone} encoder from {meta['format']}, head {meta['head']} "
          f"(output {c.output}, final width {c.final_width})")
    return 0
