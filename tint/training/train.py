"""Training as a library: ``train(TrainConfig(...))``; ``tint train`` only builds the config.

    from tint.training import TrainConfig, train
    train(TrainConfig(["photos/"], output="runs/a", backbone="tiny-darknet", time_limit=8))

    tint train photos/ --backbone tiny-darknet --init encoder.safetensors --time-limit 8
    torchrun --nproc_per_node 4 -m tint train photos/ --backbone vgg16 --epochs 40

Pipeline: photos --(once, in parallel)--> uint8 pack --(on the GPU)--> random crops in Lab
-> Colorizer.raw(L) -> loss against the true ab -> AdamW, cosine schedule.

Losses (``--loss``):
* ``l2`` / ``smoothl1``: regression of ab / AB_SCALE (the classic design, output "ab").
* ``bins``: cross-entropy over the model's ab bins with soft targets (5 nearest bins,
  Gaussian sigma 5) and class rebalancing (Zhang, Isola & Efros 2016): rare colours
  weigh more, so the model does not settle on brown.  Readout: annealed mean (model).

Checkpoints (``DIR/last.pt``) hold everything needed to continue exactly: the same next
batch (batches are a function of the step), the same schedule, and the run's TrainConfig
(``"args"``, as nanoGPT keeps its config in the checkpoint).  The result is
``DIR/final.safetensors`` in tint's weights format, with how it was made (the same
TrainConfig) in its metadata.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import TintError
from ..core.model import AB_SCALE, BACKBONES, LEAKY_SLOPE, Colorizer, ColorizerConfig, default_backbone
from ..core.pixels import check_size


CKPT_FORMAT = "tint-train/1"
DATA_TERMS = ("Trained on photos whose terms allow non-commercial research use only: tint's first "
              "training set (ImageNet, BSDS/Corel, COCO/Flickr, UTKFace, Clothing Co-Parsing, Houses, "
              "Intel, CamVid, Food-101) and, for models trained on the train-v2 recipe, Human Action "
              "Recognition, FairFace, PASCAL VOC 2007, COCO 2017, Pexels, Oxford 102 Flowers, Caltech-101, "
              "Yosemite (CycleGAN), Asirra cats and dogs, 100 Sports, Grocery Store, Clothing dataset, "
              "ILSVRC2012 val, ECSSD, NIPS 2017 adversarial dev, OpenALPR benchmarks, horse2zebra, "
              "apple2orange (see the data MANIFEST and recipes README). Do not ship or sell this model "
              "without a legal check.")
# Fields that define a run: on --resume the checkpoint's values win over the command line.
RUN_KEYS = ("backbone", "loss", "final_width", "init", "batch", "crop", "pack_size", "lr",
            "encoder_lr_mult", "weight_decay", "warmup", "epochs", "seed", "clip", "bin_sigma",
            "rebalance_lambda", "context", "out_stride", "feature_loss", "semantic_loss", "temperature",
            "steps", "budget", "adversarial", "critic_lr", "critic_scales", "width", "work_size", "teacher", "distill")
LOSSES = ("bins", "l2", "smoothl1")
OUT_STRIDES = (1, 2, 4)
# Checkpoints written before TrainConfig held the argparse namespace: its names that differ.
RENAMED = {"out": "output"}
SOFT_K = 5


# --------------------------------------------------------------------------- the config
@dataclass
class TrainConfig:
    """Every option of a training run, with its default.  ``tint train`` builds one from its
    command line (the options are these fields, ``-`` for ``_``); ``check`` validates it."""
    data: list                                # folders of colour photos (searched recursively)
    output: str = "runs/train"                # run folder: last.pt, final.safetensors, log.jsonl
    # ---- model
    backbone: str | None = None               # encoder (BACKBONES); None: the --init file's, else the table's default
    loss: str = "bins"                        # bins (classification, rebalanced), l2 or smoothl1 (regression)
    final_width: int | None = None            # head width at full resolution (None: 3 regression, 32 bins)
    context: int = 0                          # global-context branch width (0: none)
    width: int | None = None                  # encoder channels x this; None: the --init file's, else 1
    out_stride: int = 1                       # chroma predicted at working size / N (1, 2, 4)
    temperature: float | None = None          # bins readout temperature stored in the model (None: the model's)
    init: str | None = None                   # start from this tint weights file (all of it, or its encoder)
    # ---- extra losses
    feature_loss: float = 0.0                 # weight of the perceptual loss through a frozen classifier (0: off)
    semantic_loss: float = 0.0                # with feature_loss: weight of the class-probability KL
    feature_net: str | None = None            # the classifier for feature_loss (TF.js Tiny Darknet folder)
    adversarial: float = 0.0                  # weight of a conditional patch critic's hinge loss (0: off)
    critic_lr: float = 2e-4                   # the critic's learning rate (Adam, constant)
    critic_scales: int = 1                    # 1: scores per 8x8 patch; 2: also per 32x32 patch
    teacher: str | None = None                # a bins model whose distributions are soft targets (distillation)
    distill: float = 0.0                      # weight of the KL to the teacher's bin distributions (0: off)
    bin_sigma: float = 5.0                    # soft-encoding / prior smoothing sigma (ab units)
    rebalance_lambda: float = 0.5             # mix of the class prior with uniform (1: no rebalancing)
    # ---- data
    exclude: list = field(default_factory=list)  # files of names (one per line) left out of training
    batch: int = 64                           # images per step per process
    crop: int = 176                           # training crop side (a multiple of 16)
    work_size: int | None = None              # crops resized to this side before the network (None: the crop)
    pack: str | None = None                   # decoded pack file (.npy); None: a cache under ~/.cache/tint
    pack_size: int = 224                      # side of the decoded squares in the pack
    workers: int | None = None                # decode processes (None: all cores)
    # ---- schedule and optimizer
    epochs: int = 30                          # epochs of the schedule (unless steps)
    steps: int | None = None                  # total steps of the schedule (overrides epochs)
    time_limit: float | None = None           # minutes: stop cleanly before; the schedule is sized to fit
    budget: float | None = None               # minutes in all over several --resume calls (with time_limit)
    lr: float = 1e-3                          # peak learning rate (AdamW, warmup then cosine)
    encoder_lr_mult: float = 0.1              # encoder lr multiplier when starting from init
    weight_decay: float = 0.01                # AdamW weight decay (not on biases and norms)
    warmup: int = 200                         # warmup steps (at most a tenth of the run)
    clip: float = 1.0                         # gradient-norm clip (0: off)
    seed: int = 0                             # model init and batch order
    # ---- validation
    val: str | None = None                    # folder of held-out colour photos (None: no validation)
    val_limit: int = 64                       # photos per periodic validation (all of them at the end)
    val_every: int | None = None              # validate every N steps (None: 10 times a run)
    val_size: int | None = None               # working size for validation (None: the model's: work_size, else 256)
    # ---- the process
    device: str = "auto"                      # cpu, cuda or auto (torchrun: one GPU per process)
    compile: bool = False                     # torch.compile the network
    resume: bool = False                      # continue from output/last.pt if it exists
    save_every: int = 500                     # checkpoint every N steps
    log_every: float = 10.0                   # seconds between log lines (no progress bar)
    no_bar: bool = False                      # log lines instead of a progress bar
    bench_input: int = 50                     # time N batches of the input pipeline first (0: off)
    reserve: float = 20.0                     # seconds kept for the end (checkpoint, final weights)
    calib_steps: int = 20                     # steps timed to size the schedule to time_limit
    stop_at_step: int | None = None           # stop as if killed at this step (tests)

    def check(self) -> "TrainConfig":
        """The config validated, with its paths as strings, or a TintError naming the
        option: the one place a training run's options are checked."""
        c = replace(self, data=[str(f) for f in self.data], exclude=[str(f) for f in self.exclude],
                    **{k: None if getattr(self, k) is None else str(getattr(self, k))
                       for k in ("output", "init", "feature_net", "pack", "val", "teacher")})
        if not c.data:
            raise TintError("no data: give folders of colour photos")
        if c.loss not in LOSSES:
            raise TintError(f"--loss must be one of {', '.join(LOSSES)}, got {c.loss!r}")
        if c.out_stride not in OUT_STRIDES:
            raise TintError(f"--out-stride must be 1, 2 or 4, got {c.out_stride!r}")
        if c.backbone is not None and c.backbone not in BACKBONES:
            raise TintError(f"--backbone must be one of {', '.join(BACKBONES)}, got {c.backbone!r}")
        if c.crop % 16 or c.crop < 16:
            raise TintError(f"--crop must be a positive multiple of 16, got {c.crop}")
        if c.crop > c.pack_size:
            raise TintError(f"--crop {c.crop} is larger than --pack-size {c.pack_size}")
        if c.work_size is not None and not (c.work_size % 16 == 0 and 16 <= c.work_size <= c.crop):
            raise TintError(f"--work-size must be a multiple of 16 from 16 to --crop {c.crop}, got {c.work_size}")
        if c.distill < 0 or (c.distill > 0) != bool(c.teacher):
            raise TintError("--distill WEIGHT and --teacher FILE go together (a weight above 0)")
        if c.teacher and not Path(c.teacher).is_file():
            raise TintError(f"--teacher file not found: {c.teacher}")
        if c.teacher and c.loss != "bins":
            raise TintError("--teacher needs --loss bins (it matches bin distributions)")
        if c.steps is not None and c.steps < 1:
            raise TintError("--steps must be at least 1")
        for k in ("batch", "epochs"):
            if getattr(c, k) < 1:
                raise TintError(f"--{k} must be at least 1")
        if c.budget is not None and not (c.time_limit and c.budget >= c.time_limit and not c.steps):
            raise TintError("--budget needs --time-limit (at most the budget) and no --steps")
        if c.time_limit is not None and c.time_limit <= 0:
            raise TintError("--time-limit must be positive (minutes)")
        if c.init and not Path(c.init).is_file():
            raise TintError(f"--init file not found: {c.init}")
        if c.width is not None and not 1 <= c.width <= 8:
            raise TintError(f"--width must be 1..8, got {c.width}")
        if c.adversarial < 0 or c.critic_lr <= 0:
            raise TintError("--adversarial must be at least 0 and --critic-lr positive")
        if c.critic_scales not in (1, 2):
            raise TintError(f"--critic-scales must be 1 or 2, got {c.critic_scales}")
        if c.semantic_loss and not c.feature_loss:
            raise TintError("--semantic-loss needs --feature-loss (it runs through the same classifier)")
        if c.feature_loss and not (c.feature_net and Path(c.feature_net).exists()):
            raise TintError("--feature-loss needs --feature-net DIR (the TF.js Tiny Darknet folder)")
        for f in c.exclude:
            if not Path(f).is_file():
                raise TintError(f"--exclude file not found: {f}")
        if c.val and not Path(c.val).is_dir():
            raise TintError(f"--val folder not found: {c.val}")
        if c.val_size is not None:
            check_size(c.val_size)
        return c

    def with_backbone(self) -> "TrainConfig":
        """This config with ``backbone`` None resolved: the --init file's, else the model
        table's default (``core.model.default_backbone``, the one default of --backbone)."""
        if self.backbone is not None:
            return self
        from ..core.weights import read_header
        return replace(self, backbone=default_backbone(read_header(self.init)[0].backbone if self.init else None))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config from ``to_dict``, or from the ``args`` of a checkpoint written before
        TrainConfig (the argparse namespace: ``out`` is ``output``).  Unknown keys are left
        out: that namespace also held the router's fields (``command``) and options a later
        tint may drop; none of them defined the run."""
        d = {RENAMED.get(k, k): v for k, v in d.items()}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def resumed(self, saved: dict, log=print) -> "TrainConfig":
        """This config with the run-defining fields (RUN_KEYS) of a checkpoint's ``args``:
        on --resume the checkpoint's values win.  Keys an older checkpoint lacks keep ours."""
        saved = {RENAMED.get(k, k): v for k, v in saved.items()}
        changes = {}
        for k in RUN_KEYS:
            if k in saved and getattr(self, k) != saved[k]:
                if getattr(self, k) is not None and k != "epochs":
                    log(f"resume: {k}={saved[k]!r} from the checkpoint (ignoring {getattr(self, k)!r})")
                changes[k] = saved[k]
        return replace(self, **changes)

    @classmethod
    def defaults(cls) -> dict:
        """Field -> default (for the command line's defaults)."""
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


# --------------------------------------------------------------------------- bins loss
def soft_encode(ab: torch.Tensor, bins: torch.Tensor, k: int = SOFT_K, sigma: float = 5.0,
                chunk: int = 1 << 19):
    """ab (B, 2, H, W) in Lab units -> (idx (B, k, H, W) long, weight (B, k, H, W)).

    ``idx`` are the k nearest of ``bins`` (Q, 2), nearest first; ``weight`` is a Gaussian
    of the distance (sigma in ab units), summing to 1 over k.  Computed in float32 in
    chunks of pixels (the (pixels, Q) distance matrix is the big temporary).
    """
    if ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"expected ab of shape (B, 2, H, W), got {tuple(ab.shape)}")
    B, _, H, W = ab.shape
    x = ab.float().permute(0, 2, 3, 1).reshape(-1, 2)                  # (N, 2)
    b = bins.float().to(x.device)
    idx, d2 = [], []
    for xc in x.split(chunk):
        # Plain differences, not |x|^2 - 2x.b + |b|^2: no cancellation, no TF32 matmul.
        d = (xc[:, None, 0] - b[:, 0]).square_() + (xc[:, None, 1] - b[:, 1]).square_()   # (n, Q)
        dk, ik = d.topk(k, dim=1, largest=False)                       # sorted, nearest first
        idx.append(ik)
        d2.append(dk)
    idx, d2 = torch.cat(idx), torch.cat(d2)
    w = torch.softmax(-d2 / (2 * sigma ** 2), dim=1)                   # (N, k)
    shape = (B, H, W, k)
    return idx.view(shape).permute(0, 3, 1, 2), w.view(shape).permute(0, 3, 1, 2)


def bin_histogram(batches, bins: torch.Tensor, max_images: int = 2000, stride: int = 4) -> torch.Tensor:
    """Empirical distribution (Q,) of the nearest bin over pixels of the pack (every
    ``stride``-th pixel of up to ``max_images`` images, a fixed subset)."""
    pack = batches.pack
    n = pack.shape[0]
    g = torch.Generator().manual_seed(12345)
    chosen = torch.randperm(n, generator=g)[:max_images].sort().values
    from ..core.color import rgb_to_lab
    counts = torch.zeros(bins.shape[0], dtype=torch.float64, device=pack.device)
    for part in chosen.split(64):
        rgb = pack.index_select(0, part.to(pack.device))[:, ::stride, ::stride].permute(0, 3, 1, 2).float() / 255
        ab = rgb_to_lab(rgb)[:, 1:]
        idx, _ = soft_encode(ab, bins.to(pack.device), k=1)
        counts += torch.bincount(idx.flatten(), minlength=bins.shape[0]).double()
    return (counts / counts.sum()).float().cpu()


def rebalance_weights(prior: torch.Tensor, bins: torch.Tensor, sigma: float = 5.0,
                      lam: float = 0.5) -> torch.Tensor:
    """Per-bin loss weights (Q,) from an empirical bin distribution (Q,), Zhang et al. 2016:
    w ∝ 1 / ((1 - lam) * smooth(p) + lam / Q), normalized so E_smooth(p)[w] = 1."""
    if prior.dim() != 1 or prior.shape[0] != bins.shape[0]:
        raise ValueError(f"prior must be (Q,) with Q = {bins.shape[0]}, got {tuple(prior.shape)}")
    p = prior.double() / prior.double().sum()
    b = bins.double()
    kernel = torch.exp(-torch.cdist(b, b) ** 2 / (2 * sigma ** 2))    # (Q, Q) Gaussian in ab
    ps = kernel @ p
    ps = ps / ps.sum()
    w = 1.0 / ((1 - lam) * ps + lam / p.numel())
    w = w / (ps * w).sum()
    return w.float()


def compute_loss(kind: str, raw: torch.Tensor, ab: torch.Tensor, bins=None, class_weights=None,
                 sigma: float = 5.0) -> torch.Tensor:
    """Scalar loss of the head output ``raw`` against the true ``ab`` (B, 2, H, W), float32.

    A head at output stride S (raw is H/S x W/S) is scored against ab averaged over S x S."""
    S = ab.shape[-1] // raw.shape[-1]
    if S > 1:
        ab = F.avg_pool2d(ab, S)
    if kind == "l2":
        return F.mse_loss(raw.float(), ab / AB_SCALE)
    if kind == "smoothl1":
        return F.smooth_l1_loss(raw.float(), ab / AB_SCALE, beta=0.1)   # quadratic below 10 ab units
    if kind == "bins":
        with torch.autocast(raw.device.type, enabled=False):
            idx, w = soft_encode(ab, bins, sigma=sigma)                # (B, k, H, W) each
            logp = F.log_softmax(raw.float(), dim=1)                   # (B, Q, H, W)
            nll = -(w * logp.gather(1, idx)).sum(1)                    # (B, H, W)
            return (class_weights[idx[:, 0]] * nll).mean()
    raise ValueError(f"unknown loss {kind!r}")


class FeatureLoss(nn.Module):
    """Perceptual loss through a frozen ImageNet classifier (the original Tiny Darknet):
    squared feature differences of the colorized and the true crop at strides 4, 8 and 16,
    each divided by the true features' mean square.  It rewards colours that keep objects
    recognisable (a red apple, a green field) rather than per-pixel averages.

    ``semantic`` > 0 adds that weight times KL(p_true || p_pred) of the classifier's ImageNet
    class probabilities: the colorized crop should be seen as the same thing as the true one."""

    TAPS = (2, 3, 4)

    def __init__(self, net: nn.Module, semantic: float = 0.0):
        super().__init__()
        if semantic and net.classifier is None:
            raise ValueError("the semantic loss needs the classifier's 1000-class layer")
        self.net = net.eval().requires_grad_(False)
        self.semantic = semantic

    def _run(self, rgb):
        taps = self.net(rgb)
        logits = self.net.classifier(taps[-1]).mean((2, 3)).float() if self.semantic else None
        return taps, logits

    def forward(self, rgb_pred: torch.Tensor, rgb_true: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            taps, logits_true = self._run(rgb_true)
            want = [taps[t].float() for t in self.TAPS]
        got, logits = self._run(rgb_pred)
        loss = sum((got[t].float() - w).square().mean() / w.square().mean().clamp(min=1e-6)
                   for t, w in zip(self.TAPS, want)) / len(self.TAPS)
        if self.semantic:
            loss = loss + self.semantic * F.kl_div(F.log_softmax(logits, 1), F.log_softmax(logits_true, 1),
                                                   reduction="batchmean", log_target=True)
        return loss


def predicted_rgb(model: Colorizer, ab: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Differentiable sRGB (B, 3, H, W) in [0, 1] of L joined with the model's chroma ``ab``
    at its output stride (``model.readout(raw)``)."""
    from ..core.color import lab_to_rgb
    return lab_to_rgb(torch.cat((L.float(), model.upsample(ab)), 1)).clamp(0, 1)


class PatchCritic(nn.Module):
    """Conditional patch critic for the adversarial loss: (L, ab) at the head's output stride
    -> one realness score per 8 x 8 patch, and with ``scales=2`` also one per 32 x 32 patch
    (two more stride-2 convs on the same features).  Its verdicts on true against colorized
    chroma given the same lightness push the head towards colours that could be real (vivid,
    consistent) where the per-pixel losses settle for a greyish mean; spectral norm keeps
    the hinge game stable at a small weight.  The coarse scale sees most of a training crop:
    an 8 x 8 patch of a bright flat region (a pool, a sky, a platform) says nothing about
    whether it should be white, blue or yellow, the scene around it does.
    Inputs: L in [0, 100], ab in Lab units; output: a list of score maps, finest first."""

    def __init__(self, width: int = 64, scales: int = 1):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        c = (3, width, 2 * width, 4 * width)
        layers = []
        for cin, cout in zip(c, c[1:]):
            layers += [sn(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, sn(nn.Conv2d(c[-1], 1, 3, padding=1)))
        self.coarse = None
        if scales == 2:
            w = c[-1]
            # 3 x 3 kernels: any map size works (a 16-px crop's 2 x 2 features as well)
            self.coarse = nn.Sequential(sn(nn.Conv2d(w, w, 3, stride=2, padding=1)), nn.LeakyReLU(0.2),
                                        sn(nn.Conv2d(w, w, 3, stride=2, padding=1)), nn.LeakyReLU(0.2),
                                        sn(nn.Conv2d(w, 1, 3, padding=1)))
        elif scales != 1:
            raise ValueError(f"PatchCritic: scales must be 1 or 2, got {scales}")

    def forward(self, L: torch.Tensor, ab: torch.Tensor) -> list[torch.Tensor]:
        feats = self.net[:-1](torch.cat((L / 50 - 1, ab / AB_SCALE), 1))
        scores = [self.net[-1](feats)]                                    # (B, 1, h/8, w/8)
        if self.coarse is not None:
            scores.append(self.coarse(feats))                             # (B, 1, h/32, w/32)
        return scores


def critic_verdict(scores: list[torch.Tensor]) -> torch.Tensor:
    """The model's side of the game: the critic's mean score, each scale weighing the same."""
    return torch.stack([s.float().mean() for s in scores]).mean()


def critic_step(critic, opt, L_s, real_ab, fake_ab, amp=contextlib.nullcontext) -> torch.Tensor:
    """One hinge-loss update of the critic on detached chroma; returns its loss (each scale
    weighing the same).  Real and colorized go through in one batch (one forward per
    backward, as DDP wants)."""
    with amp():
        scores = critic(torch.cat((L_s, L_s)), torch.cat((real_ab, fake_ab.detach().to(real_ab.dtype))))
    losses = []
    for score in scores:
        real, fake = score.float().chunk(2)
        losses.append(F.relu(1 - real).mean() + F.relu(1 + fake).mean())
    loss = torch.stack(losses).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


# --------------------------------------------------------------------------- model
def load_teacher(path, student: Colorizer, device) -> Colorizer:
    """The frozen teacher for --distill: a bins model on the student's ab bins."""
    from ..core.weights import load_weights
    teacher, _ = load_weights(path, device=device)
    mine = getattr(student, "bins", None)
    if teacher.config.output != "bins" or mine is None or not torch.equal(teacher.bins.cpu(), mine.cpu()):
        raise TintError(f"--teacher {path}: not a bins model on the same ab bins as the student")
    if torch.device(device).type == "cuda":
        teacher.to(memory_format=torch.channels_last)
    return teacher.requires_grad_(False).eval()


def distill_loss(raw: torch.Tensor, teacher_raw: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per pixel, averaged: both (B, Q, h, w) bin logits; the
    teacher's distributions (softmax at temperature 1) are area-averaged onto the student's
    grid when the student works at a smaller size.  0 when the student matches."""
    p = torch.softmax(teacher_raw.float(), 1)
    if p.shape[-2:] != raw.shape[-2:]:
        p = F.adaptive_avg_pool2d(p, raw.shape[-2:])
    logq = torch.log_softmax(raw.float(), 1)
    return (p * (torch.log(p.clamp_min(1e-12)) - logq)).sum(1).mean()


class RawHead(nn.Module):
    """Wraps a Colorizer so forward() returns the head output (what the losses need);
    DistributedDataParallel and torch.compile wrap this."""

    def __init__(self, model: Colorizer):
        super().__init__()
        self.model = model

    def forward(self, L):
        return self.model.raw(L)


def init_fresh(model: Colorizer) -> None:
    """He init for every conv (the PyTorch default shrinks activations ~6x per ReLU
    layer, which starves VGG16's 10 plain convs); the output conv starts near zero
    (gray for regression, uniform for bins)."""
    slope = LEAKY_SLOPE if model.config.backbone == "tiny-darknet" else 0.0
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            nonlin = "leaky_relu" if name.startswith("encoder") and slope else "relu"
            nn.init.kaiming_normal_(m.weight, a=slope, mode="fan_in", nonlinearity=nonlin)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    nn.init.normal_(model.head.out.weight, std=1e-3)
    nn.init.zeros_(model.head.out.bias)


READOUT_KEYS = ("size", "temperature", "chroma_gain")


def load_init(model: Colorizer, path, log=print, seed: int = 0) -> str:
    """Start from a tint weights file: all tensors when its network matches and its head is
    trained, else the encoder's alone when the backbone matches (checked key by key).  A
    narrower file is first grown to this run's width (``tint.training.grow``)."""
    from safetensors.torch import load_file
    from ..core.weights import load_state, read_header
    cfg, meta = read_header(path)
    if cfg.backbone != model.config.backbone:
        raise TintError(f"--init {path} holds a {cfg.backbone} model; this run trains {model.config.backbone}")
    tensors = load_file(str(path))
    grown = ""
    if cfg.width != model.config.width:
        if model.config.width % cfg.width:
            raise TintError(f"--init {path} has encoder width x{cfg.width}; this run's x{model.config.width} "
                            "is not a multiple of it (a model can grow, not shrink)")
        from .grow import grow_width
        small = Colorizer(cfg)
        load_state(small, tensors, str(path))
        wide = grow_width(small, model.config.width, seed=seed)
        cfg, tensors = wide.config, wide.state_dict()
        grown = f", grown from encoder width x{small.config.width} to x{cfg.width} (Net2Wider)"
    # The readout's calibration (working size, temperature, chroma gain) is chosen after
    # training and is not the network: a tuned file must still resume whole.  (Until
    # 2026-12-02 chroma_gain counted, so runs from a tuned default trained a new head.)
    mine, theirs = model.config.to_dict(), cfg.to_dict()
    differ = sorted(k for k in mine if k not in READOUT_KEYS and mine[k] != theirs[k])
    if not differ and meta.get("head") != "untrained":   # 'tint convert' marks a random head
        load_state(model, tensors, str(path))
        log(f"init: all tensors from {path}{grown}")
        return "grown" if grown else "all"
    enc = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}
    load_state(model.encoder, enc, f"{path} (encoder)")
    why = ", ".join(f"{k} {theirs[k]} (this run: {mine[k]})" for k in differ) or "its head is untrained"
    log(f"init: encoder from {path} ({len(enc)} tensors{grown}); the head is new: {why}")
    return "encoder"


def param_groups(model: Colorizer, lr: float, encoder_mult: float, weight_decay: float):
    """Encoder / head x decay / no-decay (biases and norms are not decayed)."""
    groups = {}
    for name, p in model.named_parameters():
        part = "encoder" if name.startswith("encoder.") else "head"
        decay = p.dim() >= 2
        key = (part, decay)
        if key not in groups:
            base = lr * (encoder_mult if part == "encoder" else 1.0)
            groups[key] = {"params": [], "lr": base, "base_lr": base,
                           "weight_decay": weight_decay if decay else 0.0, "name": f"{part}{'' if decay else '_nd'}"}
        groups[key]["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def lr_factor(step: int, total: int, warmup: int, final: float = 0.01) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from 1 down to ``final`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))


# --------------------------------------------------------------------------- validation
def model_colorizer(model: Colorizer, device, size: int, amp_dtype=None):
    """uint8 (H, W, 3) -> uint8 (H, W, 3) with an in-memory model: the pixel pipeline
    (``tint.core.pipeline.Pipeline.colorize_frames``) around the bare model."""
    from ..core.pipeline import Pipeline

    def network(L_work):
        with autocast(device, amp_dtype):
            return model(L_work).float()
    pipe = Pipeline(network, model.multiple, size)

    @torch.no_grad()
    def run(truth: np.ndarray) -> np.ndarray:
        return pipe.colorize_frames(torch.from_numpy(truth).to(device)[None])[0].cpu().numpy()
    return run


def validate(model: Colorizer, truths, device, size: int, amp_dtype) -> dict:
    from .evaluate import evaluate
    was_training = model.training
    model.eval()
    # Every validation photo has its own shape, and cuDNN builds plans per shape: with its
    # autotuner on, 80 s for 32 photos on an H200; with only its heuristics still ~4 s a
    # photo (torch 2.11, 2026-12-01: 250 s for 64 photos).  PyTorch's own convolutions need
    # no plan: 1,224 photos in ~15 s.
    # Training keeps the model channels_last for cuDNN; PyTorch's own convolutions are made
    # for NCHW.  A channels_last model validated at 1.3 s a photo on the H200 (2026-12-02),
    # a freshly loaded NCHW one at ~40 ms: the layout is the suspect (not yet confirmed there).
    channels_last = device.type == "cuda" and any(
        p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters())
    try:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        with torch.backends.cudnn.flags(enabled=False):
            report, _ = evaluate(model_colorizer(model, device, size, amp_dtype), truths, with_ssim=False)
    finally:
        if channels_last:
            model.to(memory_format=torch.channels_last)
        model.train(was_training)
    m = report["means"]
    return {k: m[k] for k in ("l1_ab", "psnr", "colorfulness", "colorfulness_truth",
                              "colorfulness_ratio_of_means", "gray_l1_ab", "gray_psnr") if k in m}


def fmt_val(v: dict) -> str:
    return (f"val L1ab {v['l1_ab']:.2f} (gray {v['gray_l1_ab']:.2f})  PSNR {v['psnr']:.2f} dB "
            f"(gray {v['gray_psnr']:.2f})  colorfulness {v['colorfulness']:.1f}/{v['colorfulness_truth']:.1f}")


# --------------------------------------------------------------------------- helpers
def autocast(device, dtype):
    """bf16 autocast on CUDA; nothing (fp32) when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def default_pack_path(folders, size: int) -> Path:
    import hashlib
    key = hashlib.sha256(json.dumps(sorted(str(Path(f).resolve()) for f in folders)).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tint" / "packs"
    return cache / f"pack-{key}-{size}.npy"


def _fmt_time(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _Dist:
    """torch.distributed only when torchrun started us (WORLD_SIZE > 1)."""

    def __init__(self, device_arg: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local = int(os.environ.get("LOCAL_RANK", "0"))
        from ..api import pick_device
        dev = pick_device(device_arg)
        if self.world > 1:
            import torch.distributed as dist
            self.dist = dist
            if dev.type == "cuda":
                torch.cuda.set_device(self.local)
                dev = torch.device("cuda", self.local)
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        elif dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.device = dev
        self.main = self.rank == 0

    def barrier(self):
        if self.world > 1:
            self.dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast_int(self, value: int) -> int:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.long, device=self.device)
        self.dist.broadcast(t, 0)
        return int(t.item())

    def close(self):
        if self.world > 1:
            self.dist.destroy_process_group()


# --------------------------------------------------------------------------- the run
def train(config: TrainConfig) -> int:
    """Train a colorizer as ``config`` says (one process, or one of torchrun's); returns 0.
    A bad option is a TintError before anything loads."""
    config = config.check()
    t_start = time.monotonic()
    out = Path(config.output)
    ckpt_path = out / "last.pt"
    ctx = _Dist(config.device)
    log = (lambda *a: print(*a, flush=True)) if ctx.main else (lambda *a: None)
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)

    ckpt = None
    if config.resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt.get("format") != CKPT_FORMAT:
            raise TintError(f"{ckpt_path}: not a tint training checkpoint")
        config = config.resumed(ckpt["args"], log)         # its run-defining fields win
        log(f"resume: {ckpt_path} at step {ckpt['step']}/{ckpt['total_steps']}")
    elif config.resume:
        log(f"resume: no {ckpt_path} yet, starting fresh")
    config = config.with_backbone()

    # ---- data
    from .data import GpuBatches, bench_batches, build_pack, load_pack
    pack_path = Path(config.pack) if config.pack else default_pack_path(config.data, config.pack_size)
    exclude = {n for f in config.exclude for n in Path(f).read_text().split()}
    if ctx.main:
        build_pack(config.data, pack_path, config.pack_size, config.workers, log=log, exclude=exclude)
    ctx.barrier()
    if not ctx.main:
        build_pack(config.data, pack_path, config.pack_size, 1, log=lambda *a: None, exclude=exclude)
    info = json.loads(pack_path.with_suffix(".json").read_text())
    batches = GpuBatches(load_pack(pack_path), config.batch, config.crop, seed=config.seed,
                         rank=ctx.rank, world=ctx.world, device=ctx.device)
    spe = batches.steps_per_epoch
    if config.bench_input and ctx.main:
        rate = bench_batches(batches, config.bench_input)
        log(f"input pipeline alone: {rate:.0f} images/s per process ({config.bench_input} batches of "
            f"{config.batch} at {config.crop}px on {ctx.device})")

    truths = []
    if config.val:
        from .evaluate import load_truth, truth_files
        truths = [load_truth(f) for f in truth_files(config.val)] if ctx.main else []

    # ---- model
    output = "bins" if config.loss == "bins" else "ab"
    final_width = config.final_width or (3 if output == "ab" else 32)
    # None: the --init file's width.  Resolved for the model only: the checkpoint's args keep
    # what was asked (tests/test_train.py::test_library_train_matches_the_command), and its
    # config holds the width the model has.
    from ..core.weights import read_header
    width = config.width or (read_header(config.init)[0].width if config.init else 1)
    model_config = ColorizerConfig(backbone=config.backbone, output=output, final_width=final_width,
                                   context=config.context, out_stride=config.out_stride, width=width,
                                   **({"temperature": config.temperature} if config.temperature else {}),
                                   **({"size": config.work_size} if config.work_size else {}))
    torch.manual_seed(config.seed)
    model = Colorizer(model_config)
    init_fresh(model)
    if config.init and ckpt is None:
        load_init(model, config.init, log, seed=config.seed)
    model.to(ctx.device)
    if ctx.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    val_size = config.val_size or model_config.size
    resize = config.work_size if config.work_size not in (None, config.crop) else None   # crops -> network
    enc_mult = config.encoder_lr_mult if config.init else 1.0
    opt = torch.optim.AdamW(param_groups(model, config.lr, enc_mult, config.weight_decay),
                            lr=config.lr, betas=(0.9, 0.99))
    amp_dtype = torch.bfloat16 if ctx.device.type == "cuda" else None
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True             # fixed training shapes

    feature_loss = None
    if config.feature_loss:
        from .importers import load_tfjs_darknet
        semantic = config.semantic_loss / config.feature_loss      # FeatureLoss's own scale is 1
        feature_loss = FeatureLoss(load_tfjs_darknet(config.feature_net, classifier=semantic > 0),
                                   semantic).to(ctx.device)
        if ctx.device.type == "cuda":
            feature_loss.to(memory_format=torch.channels_last)
        log(f"feature loss: x{config.feature_loss:g}, semantic x{config.semantic_loss:g}, through the frozen "
            f"classifier from {config.feature_net}")

    critic = critic_opt = None
    if config.adversarial:
        critic = PatchCritic(scales=config.critic_scales).to(ctx.device)
        critic_opt = torch.optim.Adam(critic.parameters(), lr=config.critic_lr, betas=(0.0, 0.99))
        log(f"adversarial: x{config.adversarial:g} (ramped in over the warmup), patch critic "
            f"({config.critic_scales} scale{'s' if config.critic_scales > 1 else ''}) of "
            f"{sum(p.numel() for p in critic.parameters()) / 1e6:.2f} M params, lr {config.critic_lr:g}")

    teacher = None
    if config.teacher:
        teacher = load_teacher(config.teacher, model, ctx.device)
        log(f"distill: x{config.distill:g}, KL to the bin distributions of {config.teacher} "
            f"(run on the {config.crop}px crop)")

    bins = getattr(model, "bins", None)
    prior = class_weights = None
    if output == "bins":
        if ckpt is not None:
            prior = ckpt["prior"]
        else:
            t0 = time.perf_counter()
            prior = bin_histogram(batches, bins)
            log(f"bins: prior of {bins.shape[0]} bins from the pack in {time.perf_counter() - t0:.1f} s "
                f"({int((prior > 0).sum())} bins seen)")
        class_weights = rebalance_weights(prior, bins.cpu(), config.bin_sigma, config.rebalance_lambda).to(ctx.device)

    step, total, history, train_seconds = 0, None, [], 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if critic is not None:
            if "critic" not in ckpt:
                raise TintError(f"{ckpt_path}: says --adversarial but holds no critic")
            critic.load_state_dict(ckpt["critic"])
            critic_opt.load_state_dict(ckpt["critic_optimizer"])
        step, total = ckpt["step"], ckpt["total_steps"]
        history, train_seconds = ckpt.get("history", []), ckpt.get("train_seconds", 0.0)
        torch.set_rng_state(ckpt["rng"]["torch"])
        np.random.set_state(ckpt["rng"]["numpy"])
        if ctx.device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
    cap = config.steps or config.epochs * spe
    calibrated = total is not None or bool(config.steps)     # --steps: a schedule that no time limit resizes
    if total is None:
        total = cap
    warmup = min(config.warmup, max(1, total // 10))

    net = RawHead(model)
    critic_ddp = critic
    if ctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        net = DDP(net, device_ids=ids)
        if critic is not None:                # its own updates all-reduced; the model's pass uses critic itself
            critic_ddp = DDP(critic, device_ids=ids)
    if config.compile:
        net = torch.compile(net)
    model.train()

    # ---- bookkeeping
    deadline = t_start + config.time_limit * 60 if config.time_limit else None
    stop = {"reason": None}

    def on_signal(signum, frame):
        stop["reason"] = signal.Signals(signum).name

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def checkpoint():
        if not ctx.main:
            return
        from ..core.files import atomic_write
        state = {"format": CKPT_FORMAT, "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "step": step, "total_steps": total if calibrated or not deadline else None,
                 "epoch": step // spe, "args": config.to_dict(), "config": model_config.to_dict(),
                 "prior": prior, "history": history, "train_seconds": train_seconds,
                 **({"critic": critic.state_dict(), "critic_optimizer": critic_opt.state_dict()}
                    if critic is not None else {}),
                 "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                         "cuda": torch.cuda.get_rng_state() if ctx.device.type == "cuda" else None}}
        atomic_write(ckpt_path, lambda p: torch.save(state, p))

    def run_val(limit):
        if not truths:
            return None, 0.0
        t0 = time.perf_counter()
        v = validate(model, truths[:limit] if limit else truths, ctx.device, val_size, amp_dtype)
        dt = time.perf_counter() - t0
        rec = {"step": step, "epoch": step // spe, "images": len(truths[:limit] if limit else truths), **v}
        history.append(rec)
        _append_jsonl(out / "log.jsonl", {"val": rec})
        log(f"step {step}  {fmt_val(v)}  ({dt:.1f} s)")
        return v, dt

    val_seconds = 0.0
    if ctx.main and truths and (not calibrated or deadline):
        _, val_seconds = run_val(config.val_limit)          # a baseline; also times validation
    # The last validation runs on every held-out photo, the periodic ones on val_limit;
    # unless the whole set would take over a quarter of a time-limited run (on 2026-12-02 an
    # 11-minute estimate stopped an 8-minute run at step 0): then the last one is val_limit too.
    final_limit = None
    final_val_est = val_seconds * len(truths) / max(1, min(config.val_limit or len(truths), len(truths)))
    if deadline is not None and config.val_limit and final_val_est > 0.25 * (deadline - time.monotonic()):
        if ctx.main:
            log(f"validation: all {len(truths)} photos would take ~{_fmt_time(final_val_est)}; "
                f"the last validation uses {config.val_limit} like the others")
        final_limit, final_val_est = config.val_limit, val_seconds
    if ctx.main:
        n_params = sum(p.numel() for p in model.parameters())
        log(f"train: {model_config.backbone} output={output} final_width={final_width} "
            f"({n_params / 1e6:.2f} M params) on {ctx.device} x{ctx.world}; {info['count']} images, "
            f"{spe} steps/epoch of {config.batch}x{ctx.world} at {config.crop}px"
            f"{f' resized to {resize}px' if resize else ''}; "
            f"{'up to ' if deadline and not calibrated else ''}{total} steps")

    # ---- loop
    use_bar = ctx.main and sys.stderr.isatty() and not config.no_bar
    bar = None
    if use_bar:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True, leave=True)
    calib_from, calib_t = step + 5, None
    last_log, log_loss, log_n, log_step = time.monotonic(), torch.zeros((), device=ctx.device), 0, step
    log_critic = torch.zeros((), device=ctx.device)
    seg_start = time.monotonic()
    val_every = config.val_every or max(1, total // 10)
    loss_val = float("nan")
    finished = False
    while True:
        if step >= total:
            finished = True
            break
        if config.stop_at_step is not None and step >= config.stop_at_step:
            stop["reason"] = "stop-at-step"
        late = deadline is not None and time.monotonic() > deadline - config.reserve - final_val_est
        if ctx.any(stop["reason"] is not None or late) if (step % 10 == 0 or ctx.world == 1) else False:
            stop["reason"] = stop["reason"] or "time limit"
            break

        # The schedule is a pure function of (step, total, warmup): resume is exact.
        f = lr_factor(step, total, warmup)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * f
        L, ab = batches(step)
        teacher_raw = None
        if teacher is not None:               # the teacher sees the crop at full size
            with torch.no_grad(), autocast(ctx.device, amp_dtype):
                teacher_raw = teacher.raw(L).float()
        if resize:
            L, ab = (F.interpolate(t, size=(resize, resize), mode="bilinear", antialias=True,
                                   align_corners=False) for t in (L, ab))
        if ctx.device.type == "cuda":
            L = L.contiguous(memory_format=torch.channels_last)
        with autocast(ctx.device, amp_dtype):
            raw = net(L)
        loss = compute_loss(config.loss, raw, ab, bins, class_weights, config.bin_sigma)
        if teacher_raw is not None:
            loss = loss + config.distill * distill_loss(raw, teacher_raw)
        fake_ab = None
        if feature_loss is not None or critic is not None:
            with autocast(ctx.device, amp_dtype):
                fake_ab = model.readout(raw.float())     # (B, 2, H/S, W/S), differentiable
        if feature_loss is not None:
            from ..core.color import lab_to_rgb
            with autocast(ctx.device, amp_dtype):
                true_rgb = lab_to_rgb(torch.cat((L, ab), 1)).clamp(0, 1)
                loss = loss + config.feature_loss * feature_loss(predicted_rgb(model, fake_ab, L), true_rgb)
        if critic is not None:
            S = model.config.out_stride
            L_s, real_ab = (F.avg_pool2d(L, S), F.avg_pool2d(ab, S)) if S > 1 else (L, ab)
            critic.requires_grad_(False)          # the model's step moves the model only
            with autocast(ctx.device, amp_dtype):
                adv = -critic_verdict(critic(L_s, fake_ab))
            loss = loss + config.adversarial * min(1.0, (step + 1) / warmup) * adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        if critic is not None:
            critic.requires_grad_(True)
            log_critic += critic_step(critic_ddp, critic_opt, L_s, real_ab, fake_ab,
                                      lambda: autocast(ctx.device, amp_dtype))
        step += 1
        log_loss += loss.detach()
        log_n += 1

        # Size the schedule to the time limit from the measured speed (once per run).
        if deadline is not None and not calibrated and step == calib_from:
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            calib_t = time.monotonic()
        if deadline is not None and not calibrated and calib_t is not None and step == calib_from + config.calib_steps:
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            rate = config.calib_steps / (time.monotonic() - calib_t)
            n_vals = 10 if truths else 0
            # --budget: a schedule for that many minutes in all, over several --resume calls
            end = t_start + config.budget * 60 if config.budget else deadline
            left = end - time.monotonic() - config.reserve - val_seconds * n_vals - final_val_est
            fit = step + int(0.93 * rate * max(0.0, left))
            total = ctx.broadcast_int(max(step + 1, min(cap, fit)))
            warmup = min(config.warmup, max(1, total // 10))
            val_every = config.val_every or max(1, total // 10)
            calibrated = True
            if bar is not None:
                bar.total = total
            log(f"schedule: {rate:.2f} steps/s -> {total} steps to fit {config.budget or config.time_limit:g} min "
                f"({total / spe:.1f} epochs)")

        if bar is not None:
            if step % 10 == 0:
                loss_val = (log_loss / max(1, log_n)).item()
                bar.set_postfix(loss=f"{loss_val:.4f}", lr=f"{opt.param_groups[-1]['lr']:.1e}",
                                refresh=False)
                log_loss.zero_(); log_critic.zero_(); log_n = 0
            bar.update(1)
        elif ctx.main and time.monotonic() - last_log >= config.log_every:
            now = time.monotonic()
            loss_val = (log_loss / max(1, log_n)).item()
            ips = (step - log_step) * config.batch * ctx.world / (now - last_log)
            sps = (step - log_step) / (now - last_log)
            rec = {"step": step, "loss": loss_val, "images_per_s": round(ips, 1)}
            if critic is not None:
                rec["critic"] = (log_critic / max(1, log_n)).item()
            log(f"step {step}/{total}  epoch {step / spe:.1f}  loss {loss_val:.4f}  "
                + (f"critic {rec['critic']:.3f}  " if critic is not None else "")
                + f"lr {opt.param_groups[-1]['lr']:.2e}  {ips:.0f} img/s  ETA {_fmt_time((total - step) / max(sps, 1e-9))}")
            _append_jsonl(out / "log.jsonl", rec)
            last_log, log_step = now, step
            log_loss.zero_(); log_critic.zero_(); log_n = 0

        if ctx.main and truths and step % val_every == 0 and step < total:
            run_val(config.val_limit)
            checkpoint()
        elif ctx.main and config.save_every and step % config.save_every == 0:
            checkpoint()

    if bar is not None:
        bar.close()
    train_seconds += time.monotonic() - seg_start
    for s, h in old_handlers.items():
        signal.signal(s, h)
    if not finished:
        log(f"stopped ({stop['reason']}) at step {step}/{total}; continue with --resume")

    # ---- the end: checkpoint, full validation, weights
    final_val = None
    if ctx.main:
        checkpoint()
        if truths:
            final_val, _ = run_val(final_limit)
        save_final(model, out / "final.safetensors", config, info, final_val, step, total, finished,
                   train_seconds, ctx.world, log)
        checkpoint()                                      # history now holds the final validation
    ctx.barrier()
    ctx.close()
    return 0


def save_final(model, path, config, info, val, step, total, finished, seconds, world, log) -> None:
    from ..core.weights import save_weights
    meta = {"trained_with": "tint train", "args": config.to_dict(), "world_size": world,
            "data": {"folders": [_short(f) for f in config.data], "images": info["count"],
                     "skipped": len(info.get("skipped", [])), "pack_size": info["size"]},
            "data_terms": DATA_TERMS, "validation": val,
            "validation_protocol": "tint.train.validate: short side 256, working size "
                                   f"{config.val_size or model.config.size}, L1 ab / PSNR / colorfulness (see tint eval)",
            "steps": step, "total_steps": total, "finished": finished,
            "train_seconds": round(seconds, 1), "git_commit": git_commit()}
    # fp16 halves the file; a BN running variance beyond fp16's range would become inf.
    finite = all(torch.isfinite(v.half()).all() for v in model.state_dict().values() if v.is_floating_point())
    dtype = torch.float16 if finite else torch.float32
    save_weights(model, path, dtype=dtype, meta=meta)
    log(f"weights: {path} ({path.stat().st_size / 1e6:.1f} MB, {str(dtype).split('.')[-1]}, "
        f"step {step}/{total})")


def _short(folder) -> str:
    p = Path(folder)
    return str(Path(p.parent.name, p.name)) if p.parent.name else p.name


def _append_jsonl(path: Path, rec: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
