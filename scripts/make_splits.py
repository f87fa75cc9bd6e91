"""Held-out splits of the train-v2 recipe: who is kept out of training, and their photos.

    python scripts/make_splits.py --mirrors DIR [--photos OUT_DIR]

The recipe's photos (../shared/data/recipes/train-v2.tsv, built into WebP parts by
../shared/tools/build_train_pack.py) are ordered by the MD5 of their pack file name; the
first 1,000 are ``dev-people`` (the second dev split: a random draw from a recipe that is
about 40 % people, against dev/'s BSDS and Kodak scenes), the next 500 are ``tune`` (for
choosing a readout temperature without touching either dev split).  The name lists are
written to splits/ (committed; ``tint train --exclude splits/dev-people.txt --exclude
splits/tune.txt`` keeps them out of training).  With ``--photos``, each split's photos are
also re-extracted from the git snapshots at a short side of 256 px (JPEG quality 95, never
upscaled), for ``tint eval``: the packs hold only 176 px WebP copies.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
SPLITS = {"dev-people": 1000, "tune": 500}


def pack_name(row: dict) -> str:
    """The file name build_train_pack.py gives a recipe row (kept in step with that tool)."""
    stem = os.path.splitext(os.path.basename(row["path"]))[0].replace(" ", "_")[:40]
    return f"{row['tag']}_{hashlib.md5(row['path'].encode()).hexdigest()[:8]}_{stem}.webp"


def read_recipe(path: Path) -> list[dict]:
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        return [dict(zip(head, line.rstrip("\n").split("\t"))) for line in f]


def split_rows(rows: list[dict]) -> dict[str, list[dict]]:
    ordered = sorted(rows, key=lambda r: hashlib.md5(pack_name(r).encode()).hexdigest())
    out, i = {}, 0
    for name, n in SPLITS.items():
        out[name] = ordered[i:i + n]
        i += n
    return out


def extract(row: dict, mirrors: Path, dst: Path, side: int = 256) -> None:
    from PIL import Image, ImageOps
    repo = mirrors / row["repo"].replace("/", "+", 1) / "repo"
    blob = subprocess.run(["git", "-C", str(repo), "cat-file", "blob", row["blob"]], capture_output=True)
    if blob.returncode:
        sys.exit(f"missing blob {row['blob']} in {repo}: fetch {row['repo']} first")
    im = ImageOps.exif_transpose(Image.open(io.BytesIO(blob.stdout))).convert("RGB")
    s = side / min(im.size)
    if s < 1:
        im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
    im.save(dst, "JPEG", quality=95)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", type=Path, default=SHARED / "data" / "recipes" / "train-v2.tsv")
    ap.add_argument("--mirrors", type=Path, help="git snapshots, as for build_train_pack.py (needed with --photos)")
    ap.add_argument("--photos", type=Path, help="also write each split's photos to PHOTOS/<split>/")
    a = ap.parse_args()
    splits = split_rows(read_recipe(a.recipe))
    out = HERE.parent / "splits"
    out.mkdir(exist_ok=True)
    for name, rows in splits.items():
        (out / f"{name}.txt").write_text("".join(pack_name(r) + "\n" for r in rows))
        tags = {}
        for r in rows:
            tags[r["tag"]] = tags.get(r["tag"], 0) + 1
        print(f"{name}: {len(rows)} photos ({', '.join(f'{t} {n}' for t, n in sorted(tags.items(), key=lambda x: -x[1]))})")
        if a.photos:
            if not a.mirrors:
                sys.exit("--photos needs --mirrors")
            d = a.photos / name
            d.mkdir(parents=True, exist_ok=True)
            for r in rows:
                dst = d / pack_name(r).replace(".webp", ".jpg")
                if not dst.exists():
                    extract(r, a.mirrors, dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
