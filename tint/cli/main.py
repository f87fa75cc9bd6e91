"""The ``tint`` command.  Each subcommand lives in its own module, which exposes
``add_arguments(parser)`` and ``run(args) -> int``; this file only routes.

Errors the user can fix (TintError) are printed as one line on stderr with exit 2; any
other exception is one line too (exit 3), with its full report written to a file.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, TintError, debug, internal_error

# name -> (module, one-line help, takes the shared model options)
COMMANDS = {
    "image":   ("tint.cli_image", "colorize photos: files, folders, globs", True),
    "info":    ("tint.cli_image", "print model, device and versions", True),
    "convert": ("tint.importers", "import Keras .h5, TF.js or PyTorch weights into tint's format", False),
    "train":   ("tint.train", "train a colorization model on folders of color photos", False),
    "eval":    ("tint.evaluate", "measure PSNR/SSIM/colorfulness/FID on photos with ground truth", True),
    "bench":   ("tint.bench", "benchmark: GPU eager vs compiled vs engine; CPU eager vs ONNX Runtime", True),
    "video":   ("tint.video", "colorize a video file, audio kept", True),
    "camera":  ("tint.camera", "colorize a live camera (or a video file as a live source)", True),
    "serve":   ("tint.serve", "local web page and HTTP API", True),
}
# commands that colorize for a person to look at: they take --saturation
COLOUR_COMMANDS = ("image", "video", "camera", "serve")


def model_options() -> argparse.ArgumentParser:
    """Options every command that runs a model shares, declared once."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model")
    g.add_argument("--weights", default=None, help="weights file (.safetensors); default: the bundled model")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--size", type=int, default=None,
                   help="working size, 16..2048: the network sees about SIZE*SIZE pixels (default: the model's, 256)")
    return p


def colour_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument_group("colour").add_argument(
        "--saturation", type=float, default=None, metavar="S",
        help="how colourful the result is, 0..2: 0 gray, 1 as predicted (default), 1.5 half as much again")
    return p


def check_model_options(args) -> None:
    """The shared options, validated once for every command, before any file or model is touched."""
    from .pixels import check_saturation, check_size
    if getattr(args, "size", None) is not None:
        args.size = check_size(args.size)
    if getattr(args, "saturation", None) is not None:
        args.saturation = check_saturation(args.saturation)


def load_options(args) -> dict:
    """The keyword arguments of ``tint.load`` that the shared options ask for."""
    s = getattr(args, "saturation", None)
    return {} if s is None else {"saturation": s}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
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
