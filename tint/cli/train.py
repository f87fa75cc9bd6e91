"""``tint train``: the command line of ``tint.training.train``.  It only builds a
TrainConfig (whose defaults these options show, and whose ``check`` validates them) and
calls ``train(config)``; torchrun runs this same command in every process."""
from __future__ import annotations

import argparse
from dataclasses import fields

from ..core.model import default_backbone
from ..training.train import LOSSES, OUT_STRIDES, TrainConfig, train
from .options import add_architecture_options, add_model_options, add_output_options

D = TrainConfig.defaults()


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="+", help="folders of colour photos (searched recursively)")

    g = add_architecture_options(p, backbone=f"encoder (default: the --init file's, else {default_backbone()})")
    g.add_argument("--loss", default=D["loss"], choices=LOSSES,
                   help="bins: classification with rebalancing (vivid); l2/smoothl1: regression "
                        "(the head kind follows: bins or ab)")
    g.add_argument("--final-width", type=int, default=D["final_width"],
                   help="head width at full resolution (default 3 for regression, 32 for bins)")
    g.add_argument("--width", type=int, default=D["width"], metavar="M",
                   help="encoder channels x M (default: the --init file's, else 1); a wider run "
                        "from a narrower --init grows it, keeping what it learned (Net2Wider)")
    g.add_argument("--context", type=int, default=D["context"], metavar="WIDTH",
                   help="global-context branch width (Iizuka et al.; 0: none)")
    g.add_argument("--out-stride", type=int, default=D["out_stride"], choices=OUT_STRIDES,
                   help="predict chroma at working size / N (cheaper head; chroma is smooth)")
    g.add_argument("--temperature", type=float, default=D["temperature"],
                   help="readout temperature stored in the model (bins; default: the config's)")
    g.add_argument("--init", default=D["init"], metavar="FILE",
                   help="start from a tint weights file (all of it, or its encoder if only the backbone matches)")

    g = p.add_argument_group("loss", "what the network is scored on")
    g.add_argument("--feature-loss", type=float, default=D["feature_loss"], metavar="WEIGHT",
                   help="add a perceptual loss through the frozen ImageNet Tiny Darknet (0: off)")
    g.add_argument("--semantic-loss", type=float, default=D["semantic_loss"], metavar="WEIGHT",
                   help="with --feature-loss: also match the classifier's ImageNet class probabilities (KL)")
    g.add_argument("--feature-net", default=D["feature_net"], metavar="DIR",
                   help="the classifier for --feature-loss (TF.js folder, e.g. data/weights/tiny-darknet)")
    g.add_argument("--adversarial", type=float, default=D["adversarial"], metavar="WEIGHT",
                   help="add a conditional patch critic's hinge loss on (L, ab), e.g. 0.05 for a "
                        "short fine-tune from --init (0: off)")
    g.add_argument("--critic-lr", type=float, default=D["critic_lr"], metavar="LR",
                   help="the critic's learning rate (Adam, constant)")
    g.add_argument("--critic-scales", type=int, default=D["critic_scales"], choices=(1, 2),
                   help="1: the critic scores 8x8 patches of the head's output; 2: also 32x32 ones "
                        "(the scene around a flat region)")
    g.add_argument("--teacher", default=D["teacher"], metavar="FILE",
                   help="distil: a bins model whose per-pixel bin distributions (on the full crop) are "
                        "soft targets, e.g. the default for a smaller --work-size model")
    g.add_argument("--distill", type=float, default=D["distill"], metavar="WEIGHT",
                   help="with --teacher: weight of the KL to its distributions")
    g.add_argument("--bin-sigma", type=float, default=D["bin_sigma"],
                   help="soft-encoding / prior smoothing sigma (ab units)")
    g.add_argument("--rebalance-lambda", type=float, default=D["rebalance_lambda"],
                   help="mix with uniform (1: no rebalancing)")

    g = p.add_argument_group("data", "the photos and how they are fed")
    g.add_argument("--exclude", action="append", default=[], metavar="FILE",
                   help="file names (one per line) to leave out of training, e.g. a held-out split (repeatable)")
    g.add_argument("--batch", type=int, default=D["batch"], help="images per step per process")
    g.add_argument("--crop", type=int, default=D["crop"], help="training crop (multiple of 16)")
    g.add_argument("--work-size", type=int, default=D["work_size"], metavar="SIDE",
                   help="resize each crop to SIDE before the network (a model for a smaller working "
                        "size, e.g. 128 for live use; default: the crop); the file records it as its size")
    g.add_argument("--pack", default=D["pack"], help="decoded pack file (.npy); default: a cache under ~/.cache/tint")
    g.add_argument("--pack-size", type=int, default=D["pack_size"], help="side of the decoded squares")
    g.add_argument("--workers", type=int, default=D["workers"], help="decode processes (default: all cores)")
    g.add_argument("--bench-input", type=int, default=D["bench_input"],
                   help="time N batches of the input pipeline first (0: off)")

    g = p.add_argument_group("schedule", "how long, and the optimizer")
    g.add_argument("--epochs", type=int, default=D["epochs"])
    g.add_argument("--steps", type=int, default=D["steps"],
                   help="total steps of the schedule (overrides --epochs); with --time-limit each run "
                        "stops at the limit and --resume continues the same schedule (long runs in parts)")
    g.add_argument("--time-limit", type=float, default=D["time_limit"], metavar="MINUTES",
                   help="stop cleanly before this much wall time; the schedule is sized to fit it")
    g.add_argument("--budget", type=float, default=D["budget"], metavar="MIN",
                   help="with --time-limit: size the schedule to MIN minutes in all (several --resume calls); "
                        "the time limit then only stops this call")
    g.add_argument("--lr", type=float, default=D["lr"])
    g.add_argument("--encoder-lr-mult", type=float, default=D["encoder_lr_mult"],
                   help="encoder lr multiplier with --init")
    g.add_argument("--weight-decay", type=float, default=D["weight_decay"])
    g.add_argument("--warmup", type=int, default=D["warmup"], help="warmup steps (at most a tenth of the run)")
    g.add_argument("--clip", type=float, default=D["clip"], help="gradient-norm clip (0: off)")
    g.add_argument("--seed", type=int, default=D["seed"])

    g = p.add_argument_group("validation", "held-out photos measured during the run")
    g.add_argument("--val", default=D["val"], metavar="DIR", help="held-out colour photos for validation")
    g.add_argument("--val-limit", type=int, default=D["val_limit"],
                   help="photos per periodic validation (all at the end)")
    g.add_argument("--val-every", type=int, default=D["val_every"],
                   help="validate every N steps (default: 10 times a run)")
    g.add_argument("--val-size", type=int, default=D["val_size"], help="working size for validation (default: the model's, --work-size or 256)")

    g = add_model_options(p, weights=False, size=False, backend=False,
                          device_help="cpu, cuda or auto (default; torchrun: one GPU per process)")
    g.add_argument("--compile", action="store_true", help="torch.compile the network")
    g = add_output_options(p, required=False, default=D["output"], metavar="DIR",
                           help=f"run folder: last.pt, final.safetensors, log.jsonl (default {D['output']}); "
                                f"the checkpoint and log options follow")
    g.add_argument("--resume", action="store_true", help="continue from DIR/last.pt if it exists")
    g.add_argument("--save-every", type=int, default=D["save_every"], help="checkpoint every N steps")
    g.add_argument("--log-every", type=float, default=D["log_every"], help="seconds between log lines (no TTY)")
    g.add_argument("--no-bar", action="store_true", help="log lines instead of a progress bar")
    g.add_argument("--reserve", type=float, default=D["reserve"], help=argparse.SUPPRESS)
    g.add_argument("--calib-steps", type=int, default=D["calib_steps"], help=argparse.SUPPRESS)
    g.add_argument("--stop-at-step", type=int, default=D["stop_at_step"], help=argparse.SUPPRESS)  # tests: a "kill"


def config_from_args(args) -> TrainConfig:
    """The TrainConfig this command line asks for (every field is an option of the same name)."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def run_train(args) -> int:
    return train(config_from_args(args))
