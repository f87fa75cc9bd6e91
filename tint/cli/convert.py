"""``tint convert``: import Keras .h5, TF.js or PyTorch weights into tint's format."""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import TintError
from ..core.model import ColorizerConfig
from ..core.weights import save_weights
from ..training.importers import FP16_MAX, convert
from .options import add_architecture_options, add_output_options


def add_arguments(p) -> None:
    p.add_argument("src", metavar="SRC", help="Keras .h5, TF.js model.json (or its folder), or PyTorch .pt/.pth")
    p.add_argument("--from", dest="fmt", choices=("auto", "keras", "tfjs", "torch"), default="auto",
                   help="source format (default: guessed from the file)")
    g = add_architecture_options(
        p, backbone="encoder (default: the one the source holds; required for a tint state dict)",
        head="what the head predicts: regress ab (default), or classify quantized ab bins")
    g.add_argument("--final-width", type=int, default=ColorizerConfig.final_width, metavar="N",
                   help=f"channels after the last merge (default {ColorizerConfig.final_width})")
    g = add_output_options(p, metavar="OUT.safetensors", help="tint weights file to write",
                           overwrite="replace OUT if it exists")
    g.add_argument("--fp32", action="store_true", help="store float32 (default float16)")


def run(args) -> int:
    src, out = Path(args.src), Path(args.output)
    if args.final_width < 1:
        raise TintError(f"--final-width must be at least 1, got {args.final_width}")
    if out.exists():
        if src.exists() and out.resolve() == src.resolve():
            raise TintError(f"{out} is the source; write the converted file elsewhere")
        if not args.overwrite:
            raise TintError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise TintError(f"output folder does not exist: {out.parent}")
    model, meta = convert(src, args.fmt, args.backbone, output=args.head, final_width=args.final_width)
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
