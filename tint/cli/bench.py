"""``tint bench``: the options, and GPU or CPU by the device."""
from __future__ import annotations

from ..bench.gpu import run_variants
from ..core.model import default_backbone
from .options import add_architecture_options, add_model_options


def add_arguments(p):
    add_model_options(p, backend=False)        # the bench times the backends itself
    add_architecture_options(
        p, backbone=f"encoder of the random-weight model benched when no --weights is given "
                    f"(default {default_backbone()})",
        head="head of the random-weight model: ab regression (default) or Q-bin classification")
    p.add_argument("--inputs", default=None,
                   help="comma list of 224, 512, 1080p, 4k or WxH (default: all four on a GPU; "
                        "256,320x240,1080p on a CPU)")
    p.add_argument("--max-batch", type=int, default=64, help="largest batch tried for throughput")
    p.add_argument("--compile", default="512", dest="compile_inputs",
                   help="inputs that get the torch.compile variant: comma list, 'all' or 'none' "
                        "(max-autotune compiles take about a minute per shape; default 512)")
    p.add_argument("--compile-mode", default="max-autotune")
    p.add_argument("--compile-batches", default="same",
                   help="batches for the compiled variant: 'same' as the engine (1..--max-batch, fair), "
                        "'best' (1 and the engine's best), 'top' (the engine's best only), or a comma list; "
                        "per input as 'INPUT:SPEC' entries separated by ';' (e.g. '512:1,32;top'); "
                        "each batch is a fresh compile")
    p.add_argument("--budget", type=float, default=330.0,
                   help="seconds: past this, remaining compiles and batch sweeps are skipped")
    p.add_argument("--json", default=None, help="write all numbers to this JSON file")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="also write a torch.profiler kernel table of the engine at 512 and 4K to DIR")
    p.add_argument("--quick", action="store_true", help="shorter timings (smoke test)")
    p.add_argument("--repeats", type=int, default=7,
                   help="CPU mode: timed eager/onnx pairs per measurement, after 2 warm-ups (default 7)")


def run(args) -> int:
    """``tint bench``: the variants on a GPU (tint.bench.gpu); on a CPU eager vs ONNX Runtime (tint.bench.cpu)."""
    from ..api import pick_device
    args.backbone = default_backbone(args.backbone)
    if pick_device(args.device).type == "cpu":
        from ..bench.cpu import run_cpu
        return run_cpu(args)
    return run_variants(args)
