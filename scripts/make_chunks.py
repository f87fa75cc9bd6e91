"""Pack the training photos into tar chunks small enough for one transfer each.

    python scripts/make_chunks.py ~/.cache/tint-train-v2 -o CHUNKS_DIR [--mib 50]

Reads the part-NNN/ folders that ../shared/tools/build_train_pack.py wrote, leaves out the
held-out splits (splits/*.txt), and writes chunk-NN.tar files (plain tar, photos sorted by
name, each chunk at most --mib MiB including tar headers), so that a GPU machine reached
through a size-limited copy gets one chunk per call: `tar xf chunk-NN.tar` there, then
`tint train DIR/chunk-*`.  The per-file overhead of a folder of 8,000 small WebP files
(about 1 KB each in a tar) is what made a 55 MiB part too large for a 64 MiB call.
"""
from __future__ import annotations

import argparse
import os
import sys
import tarfile
from pathlib import Path

SPLITS = Path(__file__).resolve().parents[1] / "splits"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pack_dir", type=Path, help="folder holding part-NNN/ of WebP photos")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--mib", type=float, default=50.0)
    a = ap.parse_args()
    held = {n for f in SPLITS.glob("*.txt") for n in f.read_text().split()}
    parts = sorted(d for d in a.pack_dir.iterdir() if d.is_dir() and d.name.startswith("part-"))
    if not parts:
        sys.exit(f"make_chunks: no part-NNN folders in {a.pack_dir}")
    files = sorted((f.name, f) for d in parts for f in d.iterdir() if f.name not in held)
    a.output.mkdir(parents=True, exist_ok=True)
    limit = int(a.mib * 2**20) - 10240                       # tar's end-of-archive blocks
    k, size, tf = 0, 0, None
    for name, path in files:
        cost = 512 + -(-path.stat().st_size // 512) * 512    # header + data padded to 512
        if tf is None or size + cost > limit:
            if tf:
                tf.close()
            tf = tarfile.open(a.output / f"chunk-{k:02d}.tar", "w", format=tarfile.USTAR_FORMAT)
            k, size = k + 1, 0
        tf.add(path, arcname=f"chunk/{name}")
        size += cost
    tf.close()
    print(f"{len(files)} photos ({len(held)} held-out names skipped) in {k} chunks under {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
