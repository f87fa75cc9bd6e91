"""The ``tint`` command.  Each subcommand lives in its own module, which exposes
``add_arguments(parser)`` and ``run(args) -> int``; this file only routes.

Errors the user can fix (TintError) are printed as one line on stderr with exit 2; any
other exception is one line too (exit 3), with its full report written to a file.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..core.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, TintError, debug, internal_error
from .options import check_model_options, colour_options, model_options


# name -> (module in tint.cli, one-line help, takes the shared model options)
COMMANDS = {
    "image":   ("tint.cli.image", "colorize photos: files, folders, globs", True),
    "info":    ("tint.cli.info", "print model, device and versions", True),
    "convert": ("tint.cli.convert", "import Keras .h5, TF.js or PyTorch weights into tint's format", False),
    "train":   ("tint.cli.train", "train a colorization model on folders of color photos", False),
    "eval":    ("tint.cli.eval", "measure PSNR/SSIM/colorfulness/FID on photos with ground truth", True),
    "bench":   ("tint.cli.bench", "benchmark: GPU eager vs compiled vs engine; CPU eager vs ONNX Runtime", True),
    "video":   ("tint.cli.video", "colorize a video file, audio kept", True),
    "camera":  ("tint.cli.camera", "colorize a live camera (or a video file as a live source)", True),
    "serve":   ("tint.cli.serve", "local web page and HTTP API", True),
}
# commands that colorize for a person to look at: they take --saturation
COLOUR_COMMANDS = ("image", "video", "camera", "serve")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    parser = argparse.ArgumentParser(prog="tint", description="Colorize black-and-white photos and video.")
    parser.add_argument("--version", action="version", version=f"tint {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    shared, colour = model_options(), colour_options()
    for name, (module, help_, uses_model) in COMMANDS.items():
        parents = ([shared] if uses_model else []) + ([colour] if name in COLOUR_COMMANDS else [])
        p = sub.add_parser(name, help=help_, description=help_, parents=parents)
        p.set_defaults(_module=module)
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            p.set_defaults(_import_error=str(e))
            continue
        adder = getattr(mod, f"add_{name}_arguments", None) or getattr(mod, "add_arguments")
        adder(p)
        p.set_defaults(_run=getattr(mod, f"run_{name}", None) or getattr(mod, "run"))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "_import_error", None):
        print(f"tint {args.command}: unavailable ({args._import_error}); "
              f'install the extra: pip install "tint[all]"', file=sys.stderr)
        return EXIT_USAGE
    try:
        check_model_options(args)
        return int(args._run(args) or 0)
    except TintError as e:
        print(f"tint {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"tint {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug, or out of memory: one line, the report in a file
        if debug():
            import traceback
            traceback.print_exc()
        print(f"tint {args.command}: {internal_error(e)}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
