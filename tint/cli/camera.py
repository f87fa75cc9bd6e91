"""``tint camera``: colorize a live camera, or a video file as a live source."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..core.errors import TintError
from ..media.camera import camera_loop
from .options import add_colour_options, add_model_options, add_output_options, default_to_live, load_runner


def add_camera_arguments(p) -> None:
    p.add_argument("--source", default="0", help="camera index (0), stream URL or video file (default 0)")
    p.add_argument("--headless", action="store_true", help="no window (also automatic without a display)")
    p.add_argument("--frames", type=int, default=None, help="stop after this many colorized frames")
    p.add_argument("--no-stabilize", dest="stabilize", action="store_false", help="no temporal smoothing")
    add_model_options(p)
    add_output_options(p, required=False, metavar="FILE",
                       help="also record the colorized frames to this file (.mp4 .mkv .webm)")
    add_colour_options(p)


def run_camera(args) -> int:
    if args.frames is not None and args.frames < 1:
        raise TintError(f"--frames must be at least 1, got {args.frames}")
    headless = args.headless
    if not headless and sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print("tint camera: no display found; running headless", file=sys.stderr)
        headless = True
    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise TintError(f"{output.parent}: output folder does not exist")
    default_to_live(args, "camera")
    runner = load_runner(args)
    stats = camera_loop(runner, args.source, output=output, headless=headless, frames=args.frames,
                        size=args.size, stabilize=args.stabilize)
    print(f"tint camera: {stats.summary()}", file=sys.stderr)
    if output is not None and stats.frames:
        print(f"tint camera: recorded {output}", file=sys.stderr)
    return 0
