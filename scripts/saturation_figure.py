"""Make docs/saturation.jpg: one public-domain photo colorized by the bundled model at
saturation 0.5, 1.0 and 1.5, side by side and labelled (the README's picture).

    python scripts/saturation_figure.py [PHOTO] [-o docs/saturation.jpg]
"""
import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tint  # noqa: E402

DEFAULT_PHOTO = ROOT.parent / "shared" / "data" / "bw" / "deoldify_1899NycBlizzard.jpg"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photo", nargs="?", default=str(DEFAULT_PHOTO))
    p.add_argument("-o", "--output", default=str(ROOT / "docs" / "saturation.jpg"))
    p.add_argument("--width", type=int, default=340, help="width of each panel (default 340)")
    args = p.parse_args(argv)
    src = Image.open(args.photo)
    runner = tint.load(device="cpu")
    panels = []
    for s in (0.5, 1.0, 1.5):
        out = tint.colorize(src, saturation=s, runner=runner)
        out = out.resize((args.width, round(out.height * args.width / out.width)), Image.LANCZOS)
        d = ImageDraw.Draw(out)
        label = f"--saturation {s:g}"
        box = d.textbbox((8, 8), label)
        d.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=(0, 0, 0))
        d.text((8, 8), label, fill=(255, 255, 255))
        panels.append(out)
    gap = 4
    sheet = Image.new("RGB", (sum(p.width for p in panels) + gap * (len(panels) - 1), panels[0].height), "white")
    x = 0
    for panel in panels:
        sheet.paste(panel, (x, 0))
        x += panel.width + gap
    sheet.save(args.output, quality=85, optimize=True)
    print(f"{args.output}: {sheet.width}x{sheet.height}, {Path(args.output).stat().st_size / 1000:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
