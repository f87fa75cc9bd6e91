"""Choose a bins model's readout temperature on a tuning split, never on a dev split.

    python scripts/tune_temperature.py W.safetensors TUNE_DIR [--temps 0.25,0.32,0.4,0.5,0.65]
                                       [--min-colorfulness 0.85] [-o OUT.safetensors]

The network runs once per photo (same protocol as ``tint eval``: short side 256, working
size 256); only the annealed-mean readout is redone per temperature.  Rule: the highest
PSNR among the temperatures whose colorfulness (ratio of means) is at least
``--min-colorfulness`` of the truth's; if none is, the most colourful.  With ``-o`` the
weights are written again with that temperature in their config (tensors unchanged).
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
def sweep(model, truths, temps, size=256):
    rows = {t: {"psnr": [], "cf": []} for t in temps}
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
        for t in temps:
            model.config = dataclasses.replace(model.config, temperature=t)
            out = pipe.colorize_frames(x)[0].numpy()
            rows[t]["psnr"].append(psnr(out, truth))
            rows[t]["cf"].append(colorfulness(out))
    ct = float(np.mean(cf_truth))
    return {t: {"psnr": float(np.mean(r["psnr"])), "colorfulness_ratio": float(np.mean(r["cf"])) / ct}
            for t, r in rows.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("folder")
    ap.add_argument("--temps", default="0.25,0.32,0.4,0.5,0.65")
    ap.add_argument("--min-colorfulness", type=float, default=0.85)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("-o", "--output", default=None)
    a = ap.parse_args()
    model, meta = load_weights(a.weights)
    if model.config.output != "bins":
        sys.exit("tune_temperature: only bins models have a readout temperature")
    temps = [float(t) for t in a.temps.split(",")]
    res = sweep(model, (load_truth(f) for f in truth_files(a.folder, a.limit)), temps)
    ok = [t for t in temps if res[t]["colorfulness_ratio"] >= a.min_colorfulness]
    best = max(ok, key=lambda t: res[t]["psnr"]) if ok else max(temps, key=lambda t: res[t]["colorfulness_ratio"])
    for t in temps:
        print(f"T {t:<5g} PSNR {res[t]['psnr']:.3f}  colorfulness {100 * res[t]['colorfulness_ratio']:.1f} %"
              f"{'  <- chosen' if t == best else ''}")
    if a.output:
        model.config = dataclasses.replace(model.config, temperature=best)
        meta = {**meta, "temperature_tuning": {"folder": Path(a.folder).name, "rule":
                f"max PSNR with colorfulness >= {a.min_colorfulness:g} of truth", "sweep": {str(t): r for t, r in res.items()},
                "chosen": best}}
        save_weights(model, a.output, dtype=torch.float16, meta=meta)
        print(f"wrote {a.output} (temperature {best:g})")
    print(json.dumps({str(t): r for t, r in res.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
