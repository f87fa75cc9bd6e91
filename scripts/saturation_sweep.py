"""Chroma kept (and flicker) of ``tint video``'s default path at several ``--saturation`` values,
on the clips of ``scripts/flicker_bench.py``: how much saturation each clip would need for a
target fraction of the real film's chroma.  A measurement only; the default stays 1.

    python scripts/saturation_sweep.py [--clips bbb@4,bbb@30,...] [--saturations 1,1.5,2] [--target 0.6]
                                       [--cache DIR] [--json F]

Same clips, reference, gray input, network cache and scoring as the bench (``run_variant``);
the runner's saturation is set before each run.  The saturation needed is interpolated
linearly between the measured points (extrapolated past the last one, and marked so).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import flicker_bench as FB  # noqa: E402


def needed(points, target):
    """Smallest s reaching ``target`` chroma kept along the piecewise-linear curve; (s, extrapolated)."""
    for (s0, k0), (s1, k1) in zip(points, points[1:]):
        if k0 >= target:
            return s0, False
        if k1 >= target:
            return s0 + (target - k0) * (s1 - s0) / (k1 - k0), False
    (s0, k0), (s1, k1) = points[-2], points[-1]
    return s1 + (target - k1) * (s1 - s0) / max(k1 - k0, 1e-9), True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default="bbb@4,bbb@8,bbb@22,bbb@27,bbb@30,bbb@40")
    ap.add_argument("--saturations", default="1,1.5,2")
    ap.add_argument("--target", type=float, default=0.6)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/saturation_sweep"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import tint
    from tint.media.video.encode import output_spec
    torch.manual_seed(0)
    runner = FB.CachedRunner(tint.load(None, device="cpu"), args.cache)
    sats = [float(s) for s in args.saturations.split(",")]
    out_opts = output_spec(Path("x.mp4")).options
    args.work.mkdir(parents=True, exist_ok=True)
    ns = argparse.Namespace(size=None, batch=args.batch)
    make = FB.variants()["default"]
    results = {}
    for cname in [c for c in args.clips.split(",") if c]:
        clip = (FB.bbb_clip(float(cname[4:]), 2.5) if cname.startswith("bbb@") else
                next(FB.synthetic_clip(n, p, k, a, 2.5) for n, p, k, a in FB.SYNTHETIC if n == cname))
        ref, gray_path, motion, layout, ref_fl, _, ref_chroma = FB.prepare_clip(clip, args.work, out_opts)
        row = {}
        with FB.CachedMotion():
            for s in sats:
                runner.runner.saturation = s
                r = FB.run_variant(make, runner, layout, ns, gray_path, args.work / f"{cname}_s{s:g}.mp4",
                                   ref, motion, ref_fl, ref_chroma)
                row[f"{s:g}"] = {k: r[k] for k in ("chroma_kept", "ratio", "flicker", "psnr", "colorfulness")}
                print(f"{cname} saturation {s:g}: chroma kept {r['chroma_kept']:.1%}, flicker {r['ratio']:.2f}x, "
                      f"PSNR {r['psnr']:.2f}", file=sys.stderr, flush=True)
        runner.runner.saturation = 1.0
        runner.save()
        s_need, extra = needed([(s, row[f"{s:g}"]["chroma_kept"]) for s in sats], args.target)
        results[cname] = {"saturations": row, "needed": s_need, "extrapolated": extra}
    print(f"\n| clip | " + " | ".join(f"chroma kept / flicker at {s:g}" for s in sats)
          + f" | saturation for {args.target:.0%} |")
    print("|---|" + "---:|" * (len(sats) + 1))
    for c, r in results.items():
        cells = [f"{r['saturations'][f'{s:g}']['chroma_kept']:.0%} / {r['saturations'][f'{s:g}']['ratio']:.2f}x"
                 for s in sats]
        print(f"| {c} | " + " | ".join(cells) + f" | {r['needed']:.2f}{' (extrapolated)' if r['extrapolated'] else ''} |")
    if args.json:
        args.json.write_text(json.dumps({"target": args.target, "clips": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
