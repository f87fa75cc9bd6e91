"""``tint train``: the options of a training run, checked before anything loads."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import TintError
from ..training.train import train


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="+", help="folders of colour photos (searched recursively)")
    p.add_argument("--out", default="runs/train", help="output folder (last.pt, final.safetensors, log.jsonl)")
    p.add_argument("--backbone", default="tiny-darknet", choices=("vgg16", "tiny-darknet"))
    p.add_argument("--loss", default="bins", choices=("bins", "l2", "smoothl1"),
                   help="bins: classification with rebalancing (vivid); l2/smoothl1: regression")
    p.add_argument("--final-width", type=int, default=None,
                   help="head width at full resolution (default 3 for regression, 32 for bins)")
    p.add_argument("--context", type=int, default=0, metavar="WIDTH",
                   help="global-context branch width (Iizuka et al.; 0: none)")
    p.add_argument("--out-stride", type=int, default=1, choices=(1, 2, 4),
                   help="predict chroma at working size / N (cheaper head; chroma is smooth)")
    p.add_argument("--temperature", type=float, default=None,
                   help="readout temperature stored in the model (bins; default: the config's)")
    p.add_argument("--feature-loss", type=float, default=0.0, metavar="WEIGHT",
                   help="add a perceptual loss through the frozen ImageNet Tiny Darknet (0: off)")
    p.add_argument("--semantic-loss", type=float, default=0.0, metavar="WEIGHT",
                   help="with --feature-loss: also match the classifier's ImageNet class probabilities (KL)")
    p.add_argument("--feature-net", default=None, metavar="DIR",
                   help="the classifier for --feature-loss (TF.js folder, e.g. data/weights/tiny-darknet)")
    p.add_argument("--exclude", action="append", default=[], metavar="FILE",
                   help="file names (one per line) to leave out of training, e.g. a held-out split (repeatable)")
    p.add_argument("--init", default=None, metavar="FILE",
                   help="start from a tint weights file (all of it, or its encoder if only the backbone matches)")
    p.add_argument("--val", default=None, metavar="DIR", help="held-out colour photos for validation")
    p.add_argument("--val-limit", type=int, default=64, help="photos per periodic validation (all at the end)")
    p.add_argument("--val-every", type=int, default=None, help="validate every N steps (default: 10 times a run)")
    p.add_argument("--val-size", type=int, default=256, help="working size for validation")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps", type=int, default=None,
                   help="total steps of the schedule (overrides --epochs); with --time-limit each run "
                        "stops at the limit and --resume continues the same schedule (long runs in parts)")
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop cleanly before this much wall time; the schedule is sized to fit it")
    p.add_argument("--batch", type=int, default=64, help="images per step per process")
    p.add_argument("--crop", type=int, default=176, help="training crop (multiple of 16)")
    p.add_argument("--pack", default=None, help="decoded pack file (.npy); default: a cache under ~/.cache/tint")
    p.add_argument("--pack-size", type=int, default=224, help="side of the decoded squares")
    p.add_argument("--workers", type=int, default=None, help="decode processes (default: all cores)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--encoder-lr-mult", type=float, default=0.1, help="encoder lr multiplier with --init")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=int, default=200, help="warmup steps (at most a tenth of the run)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (0: off)")
    p.add_argument("--bin-sigma", type=float, default=5.0, help="soft-encoding / prior smoothing sigma (ab units)")
    p.add_argument("--rebalance-lambda", type=float, default=0.5, help="mix with uniform (1: no rebalancing)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (torchrun: one GPU per process)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--log-every", type=float, default=10.0, help="seconds between log lines (no TTY)")
    p.add_argument("--no-bar", action="store_true", help="log lines instead of a progress bar")
    p.add_argument("--bench-input", type=int, default=50, help="time N batches of the input pipeline first (0: off)")
    p.add_argument("--budget", type=float, default=None, metavar="MIN",
                   help="with --time-limit: size the schedule to MIN minutes in all (several --resume calls); "
                        "the time limit then only stops this call")
    p.add_argument("--reserve", type=float, default=20.0, help=argparse.SUPPRESS)   # seconds kept for the end
    p.add_argument("--calib-steps", type=int, default=20, help=argparse.SUPPRESS)
    p.add_argument("--stop-at-step", type=int, default=None, help=argparse.SUPPRESS)  # tests: a "kill"


def check_args(args) -> None:
    if args.crop % 16 or args.crop < 16:
        raise TintError(f"--crop must be a positive multiple of 16, got {args.crop}")
    if args.crop > args.pack_size:
        raise TintError(f"--crop {args.crop} is larger than --pack-size {args.pack_size}")
    if args.steps is not None and args.steps < 1:
        raise TintError("--steps must be at least 1")
    for k in ("batch", "epochs"):
        if getattr(args, k) < 1:
            raise TintError(f"--{k} must be at least 1")
    if args.budget is not None and not (args.time_limit and args.budget >= args.time_limit and not args.steps):
        raise TintError("--budget needs --time-limit (at most the budget) and no --steps")
    if args.time_limit is not None and args.time_limit <= 0:
        raise TintError("--time-limit must be positive (minutes)")
    if args.init and not Path(args.init).is_file():
        raise TintError(f"--init file not found: {args.init}")
    if args.semantic_loss and not args.feature_loss:
        raise TintError("--semantic-loss needs --feature-loss (it runs through the same classifier)")
    if args.feature_loss and not (args.feature_net and Path(args.feature_net).exists()):
        raise TintError("--feature-loss needs --feature-net DIR (the TF.js Tiny Darknet folder)")
    for f in args.exclude:
        if not Path(f).is_file():
            raise TintError(f"--exclude file not found: {f}")
    if args.val and not Path(args.val).is_dir():
        raise TintError(f"--val folder not found: {args.val}")


def run_train(args) -> int:
    check_args(args)
    return train(args)
