"""Choose a bins model's readout (temperature, chroma gain) on a tuning split, never on a dev split.

    python scripts/tune_readout.py W.safetensors TUNE_DIR [--temps 0.25,0.32,0.4,0.5,0.65]
                                   [--gains 1.0] [--min-colorfulness 0.85] [-o OUT.safetensors]

The network runs once per photo (same protocol as ``tint eval``: short side 256, working
size 256); only the annealed-mean readout is redone per (temperature, gain).  Rule: the
highest PSNR among the pairs whose colorfulness (ratio of means) is at least
``--min-colorfulness`` of the truth's; if none is, the most colourful.  With ``-o`` the
weights are written again with that pair in their config (tensors unchanged).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from tint.core.pipeline import Pipeline
from tint.training.evaluate import colorfulness, load_truth, psnr, truth_files
from tint.core.weights import load_weights, save_weights


@torch.no_grad()
def sweep(model, truths, pairs, size=256):
    rows = {p: {"psnr": [], "cf": []} for p in pairs}
    cf_truth = []
    raw = {}

    def network(L_work):                      # the head once per photo, the readout per temperature
        if "photo" not in raw:
            raw["photo"] = model.raw(L_work)
        return model.upsample(model.readout(raw["photo"]))
    pipe = Pipeline(network, model.multiple, size)
    for truth in truths:
        raw.clear()
        x = torch.from_numpy(truth)[None]
        cf_truth.append(colorfulness(truth))
        for t, g in pairs:
            model.config = dataclasses.replace(model.config, temperature=t, chroma_gain=g)
            out = pipe.colorize_frames(x)[0].numpy()
            rows[t, g]["psnr"].append(psnr(out, truth))
            rows[t, g]["cf"].append(colorfulness(out))
    ct = float(np.mean(cf_truth))
    return {p: {"psnr": float(np.mean(r["psnr"])), "colorfulness_ratio": float(np.mean(r["cf"])) / ct}
            for p, r in rows.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("folder")
    ap.add_argument("--temps", default="0.25,0.32,0.4,0.5,0.65")
    ap.add_argument("--gains", default="1.0", help="chroma gains to try (the readout times this)")
    ap.add_argument("--min-colorfulness", type=float, default=0.85)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("-o", "--output", default=None)
    a = ap.parse_args()
    model, meta = load_weights(a.weights)
    if model.config.output != "bins":
        sys.exit("tune_readout: only bins models have a bins readout")
    pairs = [(float(t), float(g)) for t in a.temps.split(",") for g in a.gains.split(",")]
    res = sweep(model, (load_truth(f) for f in truth_files(a.folder, a.limit)), pairs)
    ok = [p for p in pairs if res[p]["colorfulness_ratio"] >= a.min_colorfulness]
    best = max(ok, key=lambda p: res[p]["psnr"]) if ok else max(pairs, key=lambda p: res[p]["colorfulness_ratio"])
    for p in pairs:
        print(f"T {p[0]:<5g} gain {p[1]:<5g} PSNR {res[p]['psnr']:.3f}  colorfulness "
              f"{100 * res[p]['colorfulness_ratio']:.1f} %{'  <- chosen' if p == best else ''}")
    sweep_rows = {f"T{t:g} gain{g:g}": r for (t, g), r in res.items()}
    if a.output:
        model.config = dataclasses.replace(model.config, temperature=best[0], chroma_gain=best[1])
        meta = {**meta, "readout_tuning": {"folder": Path(a.folder).name, "rule":
                f"max PSNR with colorfulness >= {a.min_colorfulness:g} of truth", "sweep": sweep_rows,
                "chosen": {"temperature": best[0], "chroma_gain": best[1]}}}
        save_weights(model, a.output, dtype=torch.float16, meta=meta)
        print(f"wrote {a.output} (temperature {best[0]:g}, chroma gain {best[1]:g})")
    print(json.dumps(sweep_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
