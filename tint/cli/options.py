"""The options commands share, declared once, and their checks.

Each group is one function that adds an argparse argument group (``--help`` shows them),
so a name means one thing in every command:

    model         --weights --device --size --backend   image video camera serve eval info;
                                                         bench (no --backend: it times the backends
                                                         itself); train (--device alone)
    output        -o/--output --overwrite --format       image (all three); video, convert
                                                         (-o, --overwrite); camera, train (-o)
    architecture  --backbone --head                      train (--backbone), convert, bench
    colour        --saturation                           image video camera serve

``-o/--output`` is always a path (a file or a folder, as the command says); the kind of a
model's head is ``--head``.  The working size is resolved and validated by
``core.pixels.check_size`` alone.
"""
from __future__ import annotations

import argparse
import sys

from ..api import BACKENDS
from ..core.model import BACKBONES, ColorizerConfig

# What a head predicts: "ab" regresses chroma, "bins" classifies quantized chroma (ColorizerConfig.output).
HEADS = ("ab", "bins")


def add_model_options(p: argparse.ArgumentParser, *, weights: bool = True, size: bool = True,
                      backend: bool = True, device_help: str | None = None):
    """The network and where it runs: --weights, --device, --size, --backend."""
    g = p.add_argument_group("model", "the network and where it runs")
    if weights:
        g.add_argument("--weights", default=None, metavar="FILE",
                       help="weights file (.safetensors); default: the bundled model")
    g.add_argument("--device", default="auto", help=device_help or "cpu, cuda, cuda:N or auto (default)")
    if size:
        g.add_argument("--size", type=int, default=None,
                       help="working size, 16..2048: the network sees about SIZE*SIZE pixels "
                            "(default: the model's, 256)")
    if backend:
        g.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="what runs the network: auto (default: the engine on CUDA, eager PyTorch "
                            "on a CPU, faster there than ONNX Runtime) or one of them by name")
    return g


def add_output_options(p: argparse.ArgumentParser, *, help: str, required: bool = True, default=None,
                       metavar: str = "OUT", overwrite: str | None = None, formats=None):
    """Where the results go: -o/--output PATH (always a path), --overwrite, --format."""
    g = p.add_argument_group("output", "where the results go")
    g.add_argument("-o", "--output", required=required, default=default, metavar=metavar, help=help)
    if overwrite:
        g.add_argument("--overwrite", action="store_true", help=overwrite)
    if formats:
        g.add_argument("--format", choices=formats, default=None,
                       help="output format (default: the input's, or png when tint cannot write it)")
    return g


def add_architecture_options(p: argparse.ArgumentParser, *, backbone: str, head: str | None = None):
    """The shape of a model that is built here rather than read from a file: --backbone
    (choices: the model table, ``core.model.BACKBONES``; one default everywhere: None, the
    model's own, ``core.model.default_backbone``) and --head (what it predicts)."""
    g = p.add_argument_group("architecture", "the model built when no weights file says it")
    g.add_argument("--backbone", choices=tuple(BACKBONES), default=None, help=backbone)
    if head:
        g.add_argument("--head", choices=HEADS, default=ColorizerConfig.output, help=head)
    return g


def add_colour_options(p: argparse.ArgumentParser):
    """How the result looks, for commands that colorize for a person: --saturation."""
    g = p.add_argument_group("colour", "how the result looks")
    g.add_argument("--saturation", type=float, default=None, metavar="S",
                   help="how colourful the result is, 0..2: 0 gray, 1 as predicted (default), "
                        "1.5 half as much again")
    return g


def check_model_options(args) -> None:
    """The shared options, validated once for every command, before any file or model is touched."""
    from ..core.pixels import check_saturation, check_size
    if hasattr(args, "size"):
        args.size = check_size(args.size, None)
    if getattr(args, "saturation", None) is not None:
        args.saturation = check_saturation(args.saturation)


def load_options(args) -> dict:
    """The keyword arguments of ``tint.load`` that the shared options ask for."""
    kw = {k: getattr(args, k) for k in ("size", "saturation") if getattr(args, k, None) is not None}
    if getattr(args, "backend", "auto") != "auto":
        kw["backend"] = args.backend
    return kw


def load_runner(args, device=None):
    """The Runner the model options ask for (``tint.load``: loaded once per process)."""
    from ..api import load
    return load(args.weights, device or args.device, **load_options(args))


def default_to_live(args, command: str, device=None) -> None:
    """Camera or video without CUDA, and no --weights or --size: the live path (``weights.LIVE``), said
    in one line.  On 2 cores the quality model at 256 gives ~4.5 frames/s, the same network
    at 128 keeps up (docs/CPU.md); photos keep the quality model."""
    if args.weights is not None or args.size is not None:
        return
    from ..api import pick_device
    from ..core.weights import LIVE, named_size
    if pick_device(device or args.device).type != "cuda":
        args.weights = LIVE
        print(f"tint {command}: no CUDA: the fast path (--weights {LIVE}, working size {named_size(LIVE)}); "
              "--weights default for the quality model", file=sys.stderr)
