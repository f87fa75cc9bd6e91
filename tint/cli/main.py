"""The ``tint`` command.  Each subcommand lives in its own module, which exposes
``add_arguments(parser)`` (its own options, and the shared groups of ``options`` it takes)
and ``run(args) -> int``; this file only routes.

Errors the user can fix (TintError) are printed as one line on stderr with exit 2; any
other exception is one line too (exit 3), with its full report written to a file.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..core.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, TintError, debug, internal_error
from .options import check_model_options


# name -> (module in tint.cli, one-line help)
COMMANDS = {
    "image":   ("tint.cli.image", "colorize photos: files, folders, globs"),
    "info":    ("tint.cli.info", "print model, device and versions"),
    "convert": ("tint.cli.convert", "import Keras .h5, TF.js or PyTorch weights into tint's format"),
    "train":   ("tint.cli.train", "train a colorization model on folders of color photos"),
    "eval":    ("tint.cli.eval", "measure PSNR/SSIM/colorfulness/FID on photos with ground truth"),
    "bench":   ("tint.cli.bench", "benchmark: GPU eager vs compiled vs engine; CPU eager vs ONNX Runtime"),
    "video":   ("tint.cli.video", "colorize a video file, audio kept"),
    "camera":  ("tint.cli.camera", "colorize a live camera (or a video file as a live source)"),
    "serve":   ("tint.cli.serve", "local web page and HTTP API"),
}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    parser = argparse.ArgumentParser(prog="tint", description="Colorize black-and-white photos and video.")
    parser.add_argument("--version", action="version", version=f"tint {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            p.set_defaults(_import_error=str(e))
            p.add_argument("_rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)   # said below
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
