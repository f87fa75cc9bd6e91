"""Engine vs eager fp32 on real photos, per photo: share of 8-bit RGB values within 2
levels and the largest difference, for engine variants (the issue-4 correctness check).

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
from tint import engine as E                   # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    a = ap.parse_args()
    from PIL import Image
    from tint.bench import random_model
    from tint.weights import save_weights
    data = Path(os.environ.get("TINT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    files = sorted((data / "dev").glob("*.jpg"))[: a.n]
    frames = [torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).copy())[None] for f in files]
    tmp = tempfile.mkdtemp()
    models = {"default": ("default", 256),
              "vgg16-ab": (save_weights(random_model("vgg16", "ab"), Path(tmp) / "v.safetensors", dtype=torch.float32), 512)}
    for name, (w, size) in models.items():
        eager = tint.api.Runner(w, device="cuda", size=size, precision="fp32")
        eager._network = eager.model
        refs = [eager.colorize_tensor(x.cuda().permute(0, 3, 1, 2)).permute(0, 2, 3, 1).cpu() for x in frames]
        variants = {"engine": {}, "engine, cuDNN convs": {"triton_convs": False}}
        for vname, kw in variants.items():
            fast = tint.api.Runner(w, device="cuda", size=size)
            fast._network = E.Engine(fast.model, "fp16", **kw)
            pipe = E.FramePipeline.from_runner(fast)
            fr, mx = [], []
            for x, ref in zip(frames, refs):
                d = (pipe.run(x).int() - ref.int()).abs()
                fr.append((d <= 2).float().mean().item())
                mx.append(d.max().item())
            print(f"{name:9s} {vname:22s} min share<=2 {min(fr):.5f}  mean {np.mean(fr):.5f}  max diff {max(mx)}  "
                  f"per photo {[round(f, 4) for f in fr]}", flush=True)


if __name__ == "__main__":
    main()
