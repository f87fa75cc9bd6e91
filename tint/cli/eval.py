"""``tint eval``: the command line of ``tint.training.evaluate.evaluate_weights``.  It only
builds an EvalConfig (whose defaults these options show and whose ``check`` validates them)."""
from __future__ import annotations

import sys
from dataclasses import fields

from ..training.evaluate import JUDGE_ENV, EvalConfig, evaluate_weights
from .options import add_model_options

D = {f.name: f.default for f in fields(EvalConfig)}


def add_eval_arguments(p) -> None:
    p.add_argument("folder", help="folder of color photos (ground truth)")
    p.add_argument("--limit", type=int, default=D["limit"], help="only the first N photos (sorted by path)")
    p.add_argument("--no-ssim", action="store_true", help="skip SSIM (the slowest metric)")
    p.add_argument("--judge", default=D["judge"], metavar="DIR_OR_FILE",
                   help=f"ImageNet Tiny Darknet (ml5's TF.js folder or its model.json) for FID and "
                        f"semantic agreement (default: ${JUDGE_ENV}, else "
                        f"../shared/data/weights/tiny-darknet beside the repo, if present)")
    p.add_argument("--no-judge", action="store_true", help="skip the perceptual measures")
    add_model_options(p)
    g = p.add_argument_group("reports", "files written (the measures are printed either way)")
    g.add_argument("--json", default=D["json"], metavar="OUT.json", help="write the full report here")
    g.add_argument("--sheet", default=D["sheet"], metavar="OUT.jpg",
                   help="contact sheet: gray | tint | truth rows for the first images")
    g.add_argument("--sheet-rows", type=int, default=D["sheet_rows"])


def config_from_args(args) -> EvalConfig:
    return EvalConfig(args.folder, weights=args.weights, device=args.device, size=args.size,
                      backend=args.backend, limit=args.limit, ssim=not args.no_ssim, judge=args.judge,
                      use_judge=not args.no_judge, json=args.json, sheet=args.sheet, sheet_rows=args.sheet_rows)


def run_eval(args) -> int:
    evaluate_weights(config_from_args(args), log=print, note=lambda line: print(line, file=sys.stderr))
    return 0
