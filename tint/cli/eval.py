"""``tint eval``: colorize photos with ground truth and report the measures."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..core.errors import TintError
from ..training.evaluate import (
    JUDGE_ENV, JUDGE_PROTOCOL, PROTOCOL, PerceptualJudge, _finite, contact_sheet, default_judge, evaluate,
    find_judge, format_means, load_truth, truth_files)


def add_eval_arguments(p) -> None:
    p.add_argument("folder", help="folder of color photos (ground truth)")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write the full report here")
    p.add_argument("--sheet", default=None, metavar="OUT.jpg",
                   help="contact sheet: gray | tint | truth rows for the first images")
    p.add_argument("--sheet-rows", type=int, default=12)
    p.add_argument("--limit", type=int, default=None, help="only the first N photos (sorted by path)")
    p.add_argument("--no-ssim", action="store_true", help="skip SSIM (the slowest metric)")
    p.add_argument("--judge", default=None, metavar="DIR_OR_FILE",
                   help=f"ImageNet Tiny Darknet (ml5's TF.js folder or its model.json) for FID and "
                        f"semantic agreement (default: ${JUDGE_ENV}, else "
                        f"../shared/data/weights/tiny-darknet beside the repo, if present)")
    p.add_argument("--no-judge", action="store_true", help="skip the perceptual measures")


def run_eval(args) -> int:
    import tint
    from ..core.weights import sha256
    folder = Path(args.folder)
    if not folder.is_dir():
        raise TintError(f"not a folder: {folder}")
    if args.limit is not None and args.limit < 1:
        raise TintError("--limit must be at least 1")
    for out in (args.json, args.sheet):
        if out and not Path(out).resolve().parent.is_dir():
            raise TintError(f"output folder does not exist: {Path(out).parent}")
    files = truth_files(folder, args.limit)
    judge_path = None if args.no_judge else find_judge(args.judge)
    judge = PerceptualJudge.from_path(judge_path) if judge_path else None
    if judge is None and not args.no_judge:
        print(f"tint eval: perceptual measures (FID, semantic agreement) skipped: no judge at "
              f"{default_judge()}; pass --judge DIR (ml5's TF.js Tiny Darknet) or set {JUDGE_ENV}",
              file=sys.stderr)
    kw = {"size": args.size} if args.size else {}
    runner = tint.load(args.weights, args.device, **kw)
    t0 = time.perf_counter()
    report, sheet = evaluate(runner.colorize_array, (load_truth(f) for f in files),
                             names=[os.path.relpath(f, folder) for f in files],
                             with_ssim=not args.no_ssim,
                             sheet_rows=args.sheet_rows if args.sheet else 0, judge=judge)
    dt = time.perf_counter() - t0
    head = {"protocol": PROTOCOL, "folder": str(folder), "weights": str(runner.weights_path),
            "weights_sha256": sha256(runner.weights_path), "device": str(runner.device),
            "working_size": runner.size, "seconds": round(dt, 2)}
    if judge:
        head["judge"] = {"protocol": JUDGE_PROTOCOL, "model_json": str(judge_path),
                         "model_json_sha256": sha256(judge_path)}
    report = {**head, **report}
    print(f"tint eval: {report['count']} images in {dt:.1f} s  {format_means(report['means'])}")
    if args.json:
        from ..core.files import atomic_write
        atomic_write(Path(args.json), lambda p: Path(p).write_text(json.dumps(_finite(report), indent=1)))
        print(f"tint eval: report -> {args.json}")
    if args.sheet:
        contact_sheet(sheet, args.sheet)
        print(f"tint eval: contact sheet -> {args.sheet}")
    return 0
