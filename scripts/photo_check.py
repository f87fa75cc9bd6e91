"""Engine vs eager fp32 on real photos (the issue-4 correctness check): the share of pixels
whose R, G and B are all within 2 levels of 8-bit (all photos pooled, and the worst photo),
the same per value, and the largest difference, for engine variants.

    TINT_DATA=../shared/data python3 scripts/photo_check.py [--n 8]
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tint                                    # noqa: E402
from tint.engine.graphs import Engine


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    a = ap.parse_args()
    from PIL import Image
    from tint.bench.gpu import random_model
    from tint.core.weights import save_weights
    data = Path(os.environ.get("TINT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    files = sorted((data / "dev").glob("*.jpg"))[: a.n]
    frames = [torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).copy())[None] for f in files]
    tmp = tempfile.mkdtemp()
    models = {"default": ("default", 256),
              "vgg16-ab": (save_weights(random_model("vgg16", "ab"), Path(tmp) / "v.safetensors", dtype=torch.float32), 512)}
    for name, (w, size) in models.items():
        eager = tint.api.Runner(w, device="cuda", size=size, precision="fp32", backend="eager")

        def run_eager(x, eager=eager):
            return eager.colorize_tensor(x.cuda().permute(0, 3, 1, 2)).permute(0, 2, 3, 1).cpu()
        # the reference is eager fp32 as users run it: cuDNN convs in TF32 (PyTorch's default)
        refs = [run_eager(x) for x in frames]

        def strict_fp32(x):            # the same model with TF32 off: how far is fp32 from itself?
            old = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = False
            try:
                return run_eager(x)
            finally:
                torch.backends.cudnn.allow_tf32 = old

        variants = {"engine": {}, "engine, cuDNN convs": {"triton_convs": False}, "engine fp32": {"precision": "fp32"},
                    "eager fp32, TF32 off": None}
        for vname, kw in variants.items():
            if kw is None:
                run = strict_fp32
            else:
                kw = dict(kw)
                fast = tint.api.Runner(w, device="cuda", size=size)
                fast.use_network(Engine(fast.model, kw.pop("precision", "fp16"), **kw), "engine", vname)
                run = fast.colorize_frames
            px, val, mx, n_px, n_val = [], [], [], 0, 0
            for x, ref in zip(frames, refs):
                d = (run(x).int() - ref.int()).abs()
                dp = d.amax(-1)                          # a pixel's largest R/G/B difference
                px.append(int((dp <= 2).sum()) / dp.numel())
                val.append(int((d <= 2).sum()) / d.numel())
                n_px, n_val = n_px + int((dp <= 2).sum()), n_val + int((d <= 2).sum())
                mx.append(d.max().item())
            tot = sum(f.shape[1] * f.shape[2] for f in frames)
            print(f"{name:9s} {vname:20s} pixels within 2: all {n_px / tot:.5f}, worst photo {min(px):.5f} | "
                  f"values within 2: all {n_val / (3 * tot):.5f}, worst {min(val):.5f} | max diff {max(mx)} | "
                  f"per photo (pixels) {[round(f, 4) for f in px]}", flush=True)


if __name__ == "__main__":
    main()
