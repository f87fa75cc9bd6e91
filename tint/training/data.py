"""Training data: decode a folder of photos once into a compact pack, then stream
augmented Lab batches from memory, on the training device.

    folders of JPEG/PNG/WebP --build_pack--> pack.npy  (N, S, S, 3) uint8, centre squares
                                             pack.json (file list, sources, skipped)
    pack (on the GPU) --GpuBatches--> L (B, 1, crop, crop) in [0, 100]
                                      ab (B, 2, crop, crop) in Lab units

Decoding JPEGs is the slow part of colorization training; doing it once (in parallel)
leaves the GPU with a gather + one ``grid_sample`` + a colour conversion per batch.
Batches are a pure function of (seed, epoch, step, rank), so a resumed run sees exactly
the batches an uninterrupted one would have.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..core.errors import TintError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
PACK_FORMAT = "tint-pack/1"


# --------------------------------------------------------------------------- files
def find_images(folders) -> list[Path]:
    """Every JPEG/PNG/WebP under ``folders`` (recursively), sorted, as absolute paths
    (symlinks kept as named)."""
    found = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            if folder.suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(os.path.abspath(folder)))
            continue
        if not folder.is_dir():
            raise TintError(f"data folder not found: {folder}")
        for root, dirs, files in os.walk(folder, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(os.path.abspath(os.path.join(root, f))) for f in files
                      if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return sorted(set(found))


def load_square(path, size: int) -> np.ndarray:
    """One photo -> (size, size, 3) uint8: EXIF-rotated, RGB (alpha on white), the
    central square resized to ``size`` (LANCZOS when shrinking, BICUBIC when growing)."""
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        # draft() lets libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers size.
        im.draft("RGB", (size, size))
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.getchannel("A"))
        elif im.mode != "RGB":
            im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
        resample = Image.LANCZOS if s > size else Image.BICUBIC
        out = im.resize((size, size), resample, box=box)
        return np.asarray(out, dtype=np.uint8)


def _decode(job):
    path, size = job
    try:
        return load_square(path, size), None
    except Exception as e:  # a corrupt file is skipped and counted, never fatal
        return None, f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------- pack
def _sidecar_path(pack_path: Path) -> Path:
    return pack_path.with_suffix(".json")


def _file_key(files) -> list:
    return [[str(p), os.path.getsize(p)] for p in files]


def read_pack_info(pack_path) -> dict:
    pack_path = Path(pack_path)
    side = _sidecar_path(pack_path)
    if not side.is_file() or not pack_path.is_file():
        raise TintError(f"no pack at {pack_path} (build one with build_pack / 'tint train')")
    return json.loads(side.read_text())


def build_pack(folders, out_path, size: int = 224, workers: int | None = None,
               log=print, force: bool = False, exclude=None) -> tuple[Path, dict]:
    """Decode every photo under ``folders`` into ``out_path`` (.npy, (N, size, size, 3)
    uint8) plus a JSON sidecar; files whose name is in ``exclude`` (a held-out split) are
    left out.  An existing pack whose sidecar lists the same files (path and byte size)
    and the same ``size`` is reused.  Returns (path, sidecar)."""
    from ..core.files import atomic_write
    out_path = Path(out_path)
    if out_path.suffix != ".npy":
        raise TintError(f"pack path must end in .npy, got {out_path}")
    files = find_images(folders)
    if exclude:
        n = len(files)
        files = [f for f in files if f.name not in exclude]
        if n != len(files):
            log(f"pack: {n - len(files)} held-out photos left out")
    if not files:
        raise TintError(f"no JPEG/PNG/WebP images found under {', '.join(map(str, folders))}")
    key = _file_key(files)
    side = _sidecar_path(out_path)
    if not force and side.is_file() and out_path.is_file():
        try:
            info = json.loads(side.read_text())
            if info.get("format") == PACK_FORMAT and info.get("size") == size and info.get("files") == key:
                log(f"pack: reusing {out_path} ({info['count']} images, {size}px)")
                return out_path, info
        except (ValueError, KeyError):
            pass
    out_path.parent.mkdir(parents=True, exist_ok=True)
    workers = max(1, int(workers or os.cpu_count() or 1))
    t0 = time.perf_counter()
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), size, size, 3))
    kept, skipped = [], []
    jobs = [(str(p), size) for p in files]
    try:
        if workers == 1:
            results = map(_decode, jobs)
            pool = None
        else:
            # fork is fastest, but not once CUDA is up in this process.
            method = "fork"
            if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
                method = "forkserver"
            pool = multiprocessing.get_context(method).Pool(workers)
            results = pool.imap(_decode, jobs, chunksize=16)
        for i, (img, err) in enumerate(results):
            if img is None:
                skipped.append([str(files[i]), err])
                continue
            arr[len(kept)] = img
            kept.append(i)
        if pool is not None:
            pool.close()
            pool.join()
        arr.flush()
        del arr
        if not kept:
            raise TintError(f"none of the {len(files)} images could be decoded")
        if skipped:                        # shrink the array to the images that decoded
            full = np.load(tmp, mmap_mode="r")
            atomic_write(out_path, lambda p: _save_prefix(full, len(kept), p))
            del full
            os.unlink(tmp)
        else:
            os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dt = time.perf_counter() - t0
    roots = [os.path.abspath(f) for f in folders]
    sources = {r: sum(1 for i in kept if str(files[i]).startswith(r.rstrip("/") + "/") or str(files[i]) == r)
               for r in roots}
    info = {"format": PACK_FORMAT, "size": size, "count": len(kept), "files": key,
            "kept": kept, "skipped": skipped, "sources": sources,
            "decode_seconds": round(dt, 2)}
    atomic_write(side, lambda p: Path(p).write_text(json.dumps(info)))
    log(f"pack: decoded {len(kept)} images ({len(skipped)} skipped) in {dt:.1f} s "
        f"= {len(files) / dt:.0f} images/s with {workers} workers -> {out_path}")
    for path, err in skipped[:5]:
        log(f"pack: skipped {path}: {err}")
    return out_path, info


def _save_prefix(full: np.ndarray, n: int, path) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n,) + full.shape[1:])
    for i in range(0, n, 256):
        out[i:i + 256] = full[i:min(n, i + 256)]
    out.flush()


def load_pack(pack_path) -> np.ndarray:
    """The pack's (N, S, S, 3) uint8 array, read into memory."""
    return np.load(Path(pack_path))


# --------------------------------------------------------------------------- batches
def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class GpuBatches:
    """Augmented Lab batches drawn from a uint8 pack that lives on ``device``.

    Each epoch is a seeded permutation of the pack; rank r of W takes every W-th index
    (all ranks get the same number of full batches, the remainder is dropped).  A batch
    is a random resized crop (area ``scale`` of the square, aspect ``ratio``), resampled
    to ``crop`` x ``crop`` with one bilinear ``grid_sample``, flipped half the time,
    then converted to Lab.  ``batch(step)`` depends only on (seed, step, rank).
    """

    def __init__(self, pack, batch: int, crop: int, *, seed: int = 0, rank: int = 0,
                 world: int = 1, device="cpu", scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3),
                 flip: bool = True):
        import torch
        if isinstance(pack, np.ndarray):
            pack = torch.from_numpy(pack)
        if pack.dim() != 4 or pack.shape[-1] != 3 or pack.dtype != torch.uint8:
            raise ValueError(f"pack must be (N, S, S, 3) uint8, got {tuple(pack.shape)} {pack.dtype}")
        self.pack = pack.to(device)
        self.device = self.pack.device
        self.n = pack.shape[0]
        self.batch, self.crop, self.seed = int(batch), int(crop), int(seed)
        self.rank, self.world = int(rank), int(world)
        self.scale, self.ratio, self.flip = scale, ratio, flip
        self.per_rank = self.n // self.world
        self.steps_per_epoch = self.per_rank // self.batch
        if self.steps_per_epoch < 1:
            raise TintError(f"{self.n} images is fewer than one batch of {self.batch} "
                            f"per process ({self.world} processes); lower --batch")
        self._order_epoch, self._order = None, None

    def order(self, epoch: int):
        """This rank's image indices for ``epoch`` (a CPU LongTensor)."""
        import torch
        if self._order_epoch != epoch:
            g = torch.Generator().manual_seed(_seed(self.seed, 1, epoch))
            perm = torch.randperm(self.n, generator=g)
            self._order = perm[self.rank::self.world][: self.per_rank]
            self._order_epoch = epoch
        return self._order

    def params(self, epoch: int, step: int):
        """Crop boxes as affine thetas (B, 2, 3) for grid_sample, on the CPU."""
        import torch
        g = torch.Generator().manual_seed(_seed(self.seed, 2, epoch, step, self.rank))
        B = self.batch
        u = torch.rand(B, 5, generator=g, dtype=torch.float64)
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        logr = np.log(self.ratio[0]) + (np.log(self.ratio[1]) - np.log(self.ratio[0])) * u[:, 1]
        w = (area * logr.exp()).sqrt().clamp(max=1.0)       # crop width as a fraction of the side
        h = (area / logr.exp()).sqrt().clamp(max=1.0)
        cx = (1 - w) * (2 * u[:, 2] - 1)                    # centre in [-1, 1] coords, box inside
        cy = (1 - h) * (2 * u[:, 3] - 1)
        sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if self.flip else torch.ones(B, dtype=torch.float64)
        theta = torch.zeros(B, 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        return theta.float()

    def rgb(self, step: int):
        """sRGB crops (B, 3, crop, crop) float32 in [0, 1] for global ``step``."""
        import torch.nn.functional as F
        epoch, i = divmod(int(step), self.steps_per_epoch)
        idx = self.order(epoch)[i * self.batch:(i + 1) * self.batch].to(self.device)
        x = self.pack.index_select(0, idx).permute(0, 3, 1, 2).float().div_(255.0)   # (B, 3, S, S)
        theta = self.params(epoch, i).to(self.device)
        grid = F.affine_grid(theta, [self.batch, 3, self.crop, self.crop], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return x.clamp_(0, 1)                                                         # (B, 3, crop, crop)

    def batch_lab(self, step: int):
        """(L (B, 1, crop, crop) in [0, 100], ab (B, 2, crop, crop)) for global ``step``."""
        from ..core.color import rgb_to_lab
        lab = rgb_to_lab(self.rgb(step))
        return lab[:, :1].contiguous(), lab[:, 1:].contiguous()

    __call__ = batch_lab


def bench_batches(batches: GpuBatches, n: int = 200) -> float:
    """Images/s of the input pipeline alone (no model)."""
    import torch
    sync = torch.cuda.synchronize if batches.device.type == "cuda" else (lambda: None)
    batches.batch_lab(0)
    sync()
    t0 = time.perf_counter()
    for s in range(n):
        batches.batch_lab(s)
    sync()
    return n * batches.batch / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    """``python -m tint.training.data FOLDER... -o PACK.npy``: build (or reuse) a pack."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m tint.training.data", description=main.__doc__)
    p.add_argument("folders", nargs="+")
    p.add_argument("-o", "--output", required=True, metavar="PACK.npy", help="pack file (.npy) to write")
    p.add_argument("--pack-size", type=int, default=224)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--force", action="store_true")
    p.add_argument("--exclude", action="append", default=[], metavar="FILE",
                   help="file names (one per line) to leave out (as tint train --exclude)")
    a = p.parse_args(argv)
    try:
        exclude = {n for f in a.exclude for n in Path(f).read_text().split()}
        build_pack(a.folders, a.output, a.pack_size, a.workers, force=a.force, exclude=exclude)
    except TintError as e:
        print(f"tint.training.data: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
