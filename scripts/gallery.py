"""A before/after contact sheet of one model on the public-domain photos of ../shared/data/bw.

    python3 scripts/gallery.py -o docs/gallery/2026-11-22-default.jpg          # bundled model
    python3 scripts/gallery.py --weights runs/x/final.safetensors -o docs/gallery/NAME.jpg \\
        --title "tint NAME"

Each photo becomes a labelled pair, gray input | colorized, at ``--height`` px, in a grid
of ``--columns``; one JPEG per model (quality 85, about 1 MB).  Only the 24 photos named in
``PHOTOS`` are public domain and may be published (docs/gallery/README.md); the others in
bw/ are for internal use only, so the list lives here and not in a glob.  Colorizing goes
through the public API alone (``tint.load`` and ``tint.colorize``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import tint  # noqa: E402

BW = ROOT.parent / "shared" / "data" / "bw"
PREFIX = "deoldify_"
# The public-domain photos, in sheet order (file names: PREFIX + name + .jpg).
PHOTOS = ("1890sPingPong", "1899NycBlizzard", "1899SodaFountain", "1908FamilyPhoto", "1909Chicago",
          "1916Sweeden", "AthleticClubParis1913", "CorkKids1910", "Deadwood1860s", "DeepSeaDiver1915",
          "EasterNyc1911", "ElectricScooter1915", "GreekImmigrants1905", "HerbSeller1899Paris",
          "InuitWoman1903", "Killarney1910", "Locomotive1880s", "MaioreWoman1895NZ", "Mid1800sSisters",
          "PaddysMarketCork1900s", "PostOfficeVermont1914", "SutroBaths1880s", "ZebraCarriageLondon1900",
          "LondonStreets1900")
COLORIZE_SHORT_SIDE = 512    # photos are reduced to this before colorizing (the network sees 256)
GAP, LABEL, PAD = 4, 18, 10  # px between the pair's tiles, label strip, margin around each cell
BACKGROUND, INK = (255, 255, 255), (20, 20, 20)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)        # FreeType build of Pillow
    except (TypeError, OSError):
        return ImageFont.load_default()


def find_photo(folder: Path, name: str) -> Path:
    for ext in (".jpg", ".jpeg", ".png"):
        p = folder / f"{PREFIX}{name}{ext}"
        if p.is_file():
            return p
    raise SystemExit(f"gallery: {folder / (PREFIX + name)}.jpg not found")


def pair(path: Path, runner, height: int) -> Image.Image:
    """gray | colorized, both ``height`` px tall, GAP apart."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("L")
    s = COLORIZE_SHORT_SIDE / min(im.size)
    if s < 1:
        im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
    color = tint.colorize(im, runner=runner).convert("RGB")
    w = max(1, round(im.width * height / im.height))
    before = im.convert("RGB").resize((w, height), Image.LANCZOS)
    after = color.resize((w, height), Image.LANCZOS)
    out = Image.new("RGB", (2 * w + GAP, height), BACKGROUND)
    out.paste(before, (0, 0))
    out.paste(after, (w + GAP, 0))
    return out


def sheet(pairs: list[tuple[str, Image.Image]], columns: int, title: str) -> Image.Image:
    """The pairs in a grid of equal cells (the widest pair's width), each labelled below."""
    cw = max(p.width for _, p in pairs) + 2 * PAD
    ch = max(p.height for _, p in pairs) + LABEL + 2 * PAD
    rows = -(-len(pairs) // columns)
    head = 34
    out = Image.new("RGB", (columns * cw, head + rows * ch), BACKGROUND)
    draw = ImageDraw.Draw(out)
    draw.text((PAD, 8), title, fill=INK, font=_font(18))
    font = _font(13)
    for i, (name, p) in enumerate(pairs):
        x0, y0 = (i % columns) * cw, head + (i // columns) * ch
        x = x0 + (cw - p.width) // 2
        out.paste(p, (x, y0 + PAD))
        draw.text((x, y0 + PAD + p.height + 3), name, fill=INK, font=font)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None, help="tint weights file (default: the bundled model)")
    ap.add_argument("--bw", type=Path, default=BW, help=f"folder of the {PREFIX}*.jpg photos")
    ap.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.jpg")
    ap.add_argument("--title", default=None, help="heading (default: the weights file's name)")
    ap.add_argument("--height", type=int, default=180, help="pair height in px (default 180)")
    ap.add_argument("--columns", type=int, default=4)
    ap.add_argument("--quality", type=int, default=85, help="JPEG quality (default 85)")
    ap.add_argument("--names", nargs="+", default=None, metavar="NAME",
                    help="other photos than the published list (tests; never publish others)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    if not args.output.resolve().parent.is_dir():
        raise SystemExit(f"gallery: output folder does not exist: {args.output.parent}")
    names = args.names or PHOTOS
    paths = [find_photo(args.bw, n) for n in names]           # every photo first, then the model
    t0 = time.perf_counter()
    runner = tint.load(args.weights, args.device)
    pairs = [(n, pair(p, runner, args.height)) for n, p in zip(names, paths)]
    title = args.title or f"tint {Path(runner.weights_path).name}: gray input | colorized"
    img = sheet(pairs, args.columns, title)
    img.save(args.output, "JPEG", quality=args.quality, optimize=True)
    print(f"gallery: {len(pairs)} photos -> {args.output} ({img.width}x{img.height}, "
          f"{args.output.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
