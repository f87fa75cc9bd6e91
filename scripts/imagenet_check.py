"""Check the Tiny Darknet import: ImageNet top-1/top-5 of the imported RGB classifier.

An importer that silently mangles a layout (a transposed kernel, BN stats swapped, groups
taken in name order instead of network order) still produces a network that runs; only
accuracy shows it.  Target with ml5's preprocessing: about 59.2 % top-1 / 82.2 % top-5
on the 964 ``imagenet_*`` photos in ../shared/data/train (MANIFEST.md).

    python scripts/imagenet_check.py                 # CPU, 2 threads, a minute or two
    python scripts/imagenet_check.py --threads 8 --limit 100

Labels come from the WordNet id that starts each file name (imagenet_<wnid>_<name>.jpg),
mapped to darknet's class order through wnids.txt.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tint.training.importers import load_tfjs_darknet

DATA = ROOT.parent / "shared" / "data"
SIZE = 224


def squash(rgb: torch.Tensor) -> torch.Tensor:
    """ml5 (darknet.js): the whole image to 224x224, aspect not kept, bilinear align_corners=True.
    rgb (3, H, W) in [0, 1] -> (3, 224, 224)."""
    return F.interpolate(rgb[None], size=(SIZE, SIZE), mode="bilinear", align_corners=True)[0]


def centre_crop(rgb: torch.Tensor) -> torch.Tensor:
    """Darknet's validate_classifier_single: the centre square, resized to 224x224."""
    h, w = rgb.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return squash(rgb[:, top:top + s, left:left + s])


def to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R 601, as PIL's 'L') copied to the three channels."""
    y = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None]
    return y.expand(3, -1, -1)


def load_photos(data: Path, wnid_index: dict, limit: int | None):
    paths = sorted(data.glob("train/part-*/imagenet_*.jpg"))[:limit]
    if not paths:
        raise SystemExit(f"no imagenet_*.jpg under {data}/train/part-*")
    images, labels = [], []
    for p in paths:
        wnid = p.name.split("_")[1]
        if wnid not in wnid_index:
            raise SystemExit(f"{p.name}: WordNet id {wnid} is not among darknet's 1000 classes")
        with Image.open(p) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        images.append(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())   # (3, H, W) in [0, 1]
        labels.append(wnid_index[wnid])
    return images, torch.tensor(labels)


@torch.inference_mode()
def accuracy(model, images, labels, prep, batch: int = 32) -> tuple[float, float]:
    top1 = top5 = 0
    for i in range(0, len(images), batch):
        x = torch.stack([prep(im) for im in images[i:i + batch]])
        logits = model.classify(x)                                         # (B, 1000)
        best = logits.topk(5, dim=1).indices
        y = labels[i:i + batch, None]
        top1 += (best[:, :1] == y).sum().item()
        top5 += (best == y).any(1).sum().item()
    return 100.0 * top1 / len(images), 100.0 * top5 / len(images)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="shared data folder (train/ inside)")
    ap.add_argument("--weights", type=Path, default=DATA / "weights" / "tiny-darknet",
                    help="TF.js Tiny Darknet folder (model.json, shards, wnids.txt)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos")
    ap.add_argument("--no-gray", action="store_true", help="skip the grayscale rows")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    model = load_tfjs_darknet(args.weights, classifier=True)
    wnids = (args.weights / "wnids.txt").read_text().split()
    images, labels = load_photos(args.data, {w: i for i, w in enumerate(wnids)}, args.limit)
    print(f"{len(images)} photos, {len(wnids)} classes (darknet order)")

    rows = [("ml5: squash to 224, RGB/255", squash), ("centre crop, RGB/255", centre_crop)]
    if not args.no_gray:
        rows += [("gray (luma x3), squash", lambda im: squash(to_gray(im))),
                 ("gray (luma x3), centre crop", lambda im: centre_crop(to_gray(im)))]
    print("| Input | Top-1 | Top-5 |\n|---|---|---|")
    for name, prep in rows:
        t1, t5 = accuracy(model, images, labels, prep)
        print(f"| {name} | {t1:.1f} % | {t5:.1f} % |", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s, {args.threads} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
