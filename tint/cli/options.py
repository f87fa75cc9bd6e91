"""The options commands share, declared once, and their checks."""
from __future__ import annotations

import argparse


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
    from ..core.pixels import check_saturation, check_size
    if getattr(args, "size", None) is not None:
        args.size = check_size(args.size)
    if getattr(args, "saturation", None) is not None:
        args.saturation = check_saturation(args.saturation)


def load_options(args) -> dict:
    """The keyword arguments of ``tint.load`` that the shared options ask for."""
    s = getattr(args, "saturation", None)
    return {} if s is None else {"saturation": s}
