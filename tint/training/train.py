"""``tint train``: train a colorizer on folders of colour photos (one GPU, or many with torchrun).

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
batch (batches are a function of the step) and the same schedule.  The result is
``DIR/final.safetensors`` in tint's weights format, with how it was made in its metadata.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import TintError
from ..core.model import AB_SCALE, LEAKY_SLOPE, Colorizer, ColorizerConfig


CKPT_FORMAT = "tint-train/1"
DATA_TERMS = ("Trained on photos whose terms allow non-commercial research use only: tint's first "
              "training set (ImageNet, BSDS/Corel, COCO/Flickr, UTKFace, Clothing Co-Parsing, Houses, "
              "Intel, CamVid, Food-101) and, for models trained on the train-v2 recipe, Human Action "
              "Recognition, FairFace, PASCAL VOC 2007, COCO 2017, Pexels, Oxford 102 Flowers, Caltech-101, "
              "Yosemite (CycleGAN), Asirra cats and dogs, 100 Sports, Grocery Store, Clothing dataset, "
              "ILSVRC2012 val, ECSSD, NIPS 2017 adversarial dev, OpenALPR benchmarks, horse2zebra, "
              "apple2orange (see the data MANIFEST and recipes README). Do not ship or sell this model "
              "without a legal check.")
# Args that define a run: on --resume the checkpoint's values win over the command line.
RUN_KEYS = ("backbone", "loss", "final_width", "init", "batch", "crop", "pack_size", "lr",
            "encoder_lr_mult", "weight_decay", "warmup", "epochs", "seed", "clip", "bin_sigma",
            "rebalance_lambda", "context", "out_stride", "feature_loss", "semantic_loss", "temperature",
            "steps", "budget")
SOFT_K = 5


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


def predicted_rgb(model: Colorizer, raw: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Differentiable sRGB (B, 3, H, W) in [0, 1] of the model's colorization of L."""
    from ..core.color import lab_to_rgb
    ab = model.upsample(model.readout(raw.float()))
    return lab_to_rgb(torch.cat((L.float(), ab), 1)).clamp(0, 1)


# --------------------------------------------------------------------------- model
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


def load_init(model: Colorizer, path, log=print) -> str:
    """Start from a tint weights file: all tensors when its config matches and its head
    is trained, else the encoder's alone when the backbone matches (checked key by key)."""
    from safetensors.torch import load_file
    from ..core.weights import load_state, read_header
    cfg, meta = read_header(path)
    tensors = load_file(str(path))
    mine = model.config.to_dict()
    theirs = cfg.to_dict()
    same = {k: v for k, v in mine.items() if k not in ("size", "temperature")} == \
           {k: v for k, v in theirs.items() if k not in ("size", "temperature")}
    if same and meta.get("head") != "untrained":       # 'tint convert' marks a random head
        load_state(model, tensors, str(path))
        log(f"init: all tensors from {path}")
        return "all"
    if cfg.backbone != model.config.backbone:
        raise TintError(f"--init {path} holds a {cfg.backbone} model; this run trains {model.config.backbone}")
    enc = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}
    load_state(model.encoder, enc, f"{path} (encoder)")
    log(f"init: encoder from {path} ({len(enc)} tensors; head is new: file has output={cfg.output} "
        f"final_width={cfg.final_width} head={meta.get('head', 'trained')})")
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
    try:
        with torch.backends.cudnn.flags(enabled=False):
            report, _ = evaluate(model_colorizer(model, device, size, amp_dtype), truths, with_ssim=False)
    finally:
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
    import contextlib
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
def train(args) -> int:
    t_start = time.monotonic()
    out = Path(args.out)
    ckpt_path = out / "last.pt"
    ctx = _Dist(args.device)
    log = (lambda *a: print(*a, flush=True)) if ctx.main else (lambda *a: None)
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)

    ckpt = None
    if args.resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt.get("format") != CKPT_FORMAT:
            raise TintError(f"{ckpt_path}: not a tint training checkpoint")
        for k in RUN_KEYS:
            if k in ckpt["args"] and getattr(args, k, None) != ckpt["args"][k]:
                if getattr(args, k, None) is not None and k != "epochs":
                    log(f"resume: {k}={ckpt['args'][k]!r} from the checkpoint (ignoring {getattr(args, k)!r})")
                setattr(args, k, ckpt["args"][k])
        log(f"resume: {ckpt_path} at step {ckpt['step']}/{ckpt['total_steps']}")
    elif args.resume:
        log(f"resume: no {ckpt_path} yet, starting fresh")

    # ---- data
    from .data import GpuBatches, bench_batches, build_pack, load_pack
    pack_path = Path(args.pack) if args.pack else default_pack_path(args.data, args.pack_size)
    exclude = {n for f in args.exclude for n in Path(f).read_text().split()}
    if ctx.main:
        build_pack(args.data, pack_path, args.pack_size, args.workers, log=log, exclude=exclude)
    ctx.barrier()
    if not ctx.main:
        build_pack(args.data, pack_path, args.pack_size, 1, log=lambda *a: None, exclude=exclude)
    info = json.loads(pack_path.with_suffix(".json").read_text())
    batches = GpuBatches(load_pack(pack_path), args.batch, args.crop, seed=args.seed,
                         rank=ctx.rank, world=ctx.world, device=ctx.device)
    spe = batches.steps_per_epoch
    if args.bench_input and ctx.main:
        rate = bench_batches(batches, args.bench_input)
        log(f"input pipeline alone: {rate:.0f} images/s per process ({args.bench_input} batches of "
            f"{args.batch} at {args.crop}px on {ctx.device})")

    truths = []
    if args.val:
        from .evaluate import load_truth, truth_files
        truths = [load_truth(f) for f in truth_files(args.val)] if ctx.main else []

    # ---- model
    output = "bins" if args.loss == "bins" else "ab"
    final_width = args.final_width or (3 if output == "ab" else 32)
    config = ColorizerConfig(backbone=args.backbone, output=output, final_width=final_width,
                             context=args.context, out_stride=args.out_stride,
                             **({"temperature": args.temperature} if args.temperature else {}))
    torch.manual_seed(args.seed)
    model = Colorizer(config)
    init_fresh(model)
    if args.init and ckpt is None:
        load_init(model, args.init, log)
    model.to(ctx.device)
    if ctx.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    enc_mult = args.encoder_lr_mult if args.init else 1.0
    opt = torch.optim.AdamW(param_groups(model, args.lr, enc_mult, args.weight_decay),
                            lr=args.lr, betas=(0.9, 0.99))
    amp_dtype = torch.bfloat16 if ctx.device.type == "cuda" else None
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True             # fixed training shapes

    feature_loss = None
    if args.feature_loss:
        from .importers import load_tfjs_darknet
        semantic = args.semantic_loss / args.feature_loss      # FeatureLoss's own scale is 1
        feature_loss = FeatureLoss(load_tfjs_darknet(args.feature_net, classifier=semantic > 0),
                                   semantic).to(ctx.device)
        if ctx.device.type == "cuda":
            feature_loss.to(memory_format=torch.channels_last)
        log(f"feature loss: x{args.feature_loss:g}, semantic x{args.semantic_loss:g}, through the frozen "
            f"classifier from {args.feature_net}")

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
        class_weights = rebalance_weights(prior, bins.cpu(), args.bin_sigma, args.rebalance_lambda).to(ctx.device)

    step, total, history, train_seconds = 0, None, [], 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, total = ckpt["step"], ckpt["total_steps"]
        history, train_seconds = ckpt.get("history", []), ckpt.get("train_seconds", 0.0)
        torch.set_rng_state(ckpt["rng"]["torch"])
        np.random.set_state(ckpt["rng"]["numpy"])
        if ctx.device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
    cap = args.steps or args.epochs * spe
    calibrated = total is not None or bool(args.steps)     # --steps: a schedule that no time limit resizes
    if total is None:
        total = cap
    warmup = min(args.warmup, max(1, total // 10))

    net = RawHead(model)
    if ctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(net, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    if args.compile:
        net = torch.compile(net)
    model.train()

    # ---- bookkeeping
    deadline = t_start + args.time_limit * 60 if args.time_limit else None
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
                 "epoch": step // spe, "args": _jsonable(vars(args)), "config": config.to_dict(),
                 "prior": prior, "history": history, "train_seconds": train_seconds,
                 "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                         "cuda": torch.cuda.get_rng_state() if ctx.device.type == "cuda" else None}}
        atomic_write(ckpt_path, lambda p: torch.save(state, p))

    def run_val(limit):
        if not truths:
            return None, 0.0
        t0 = time.perf_counter()
        v = validate(model, truths[:limit] if limit else truths, ctx.device, args.val_size, amp_dtype)
        dt = time.perf_counter() - t0
        rec = {"step": step, "epoch": step // spe, "images": len(truths[:limit] if limit else truths), **v}
        history.append(rec)
        _append_jsonl(out / "log.jsonl", {"val": rec})
        log(f"step {step}  {fmt_val(v)}  ({dt:.1f} s)")
        return v, dt

    val_seconds = 0.0
    if ctx.main and truths and (not calibrated or deadline):
        _, val_seconds = run_val(args.val_limit)          # a baseline; also times validation
    # The last validation runs on every held-out photo, the periodic ones on val_limit.
    final_val_est = val_seconds * len(truths) / max(1, min(args.val_limit or len(truths), len(truths)))
    if ctx.main:
        n_params = sum(p.numel() for p in model.parameters())
        log(f"train: {config.backbone} output={output} final_width={final_width} "
            f"({n_params / 1e6:.2f} M params) on {ctx.device} x{ctx.world}; {info['count']} images, "
            f"{spe} steps/epoch of {args.batch}x{ctx.world} at {args.crop}px; "
            f"{'up to ' if deadline and not calibrated else ''}{total} steps")

    # ---- loop
    use_bar = ctx.main and sys.stderr.isatty() and not args.no_bar
    bar = None
    if use_bar:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True, leave=True)
    calib_from, calib_t = step + 5, None
    last_log, log_loss, log_n, log_step = time.monotonic(), torch.zeros((), device=ctx.device), 0, step
    seg_start = time.monotonic()
    val_every = args.val_every or max(1, total // 10)
    loss_val = float("nan")
    finished = False
    while True:
        if step >= total:
            finished = True
            break
        if args.stop_at_step is not None and step >= args.stop_at_step:
            stop["reason"] = "stop-at-step"
        late = deadline is not None and time.monotonic() > deadline - args.reserve - final_val_est
        if ctx.any(stop["reason"] is not None or late) if (step % 10 == 0 or ctx.world == 1) else False:
            stop["reason"] = stop["reason"] or "time limit"
            break

        # The schedule is a pure function of (step, total, warmup): resume is exact.
        f = lr_factor(step, total, warmup)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * f
        L, ab = batches(step)
        if ctx.device.type == "cuda":
            L = L.contiguous(memory_format=torch.channels_last)
        with autocast(ctx.device, amp_dtype):
            raw = net(L)
        loss = compute_loss(args.loss, raw, ab, bins, class_weights, args.bin_sigma)
        if feature_loss is not None:
            from ..core.color import lab_to_rgb
            with autocast(ctx.device, amp_dtype):
                true_rgb = lab_to_rgb(torch.cat((L, ab), 1)).clamp(0, 1)
                loss = loss + args.feature_loss * feature_loss(predicted_rgb(model, raw, L), true_rgb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        log_loss += loss.detach()
        log_n += 1

        # Size the schedule to the time limit from the measured speed (once per run).
        if deadline is not None and not calibrated and step == calib_from:
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            calib_t = time.monotonic()
        if deadline is not None and not calibrated and calib_t is not None and step == calib_from + args.calib_steps:
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            rate = args.calib_steps / (time.monotonic() - calib_t)
            n_vals = 10 if truths else 0
            # --budget: a schedule for that many minutes in all, over several --resume calls
            end = t_start + args.budget * 60 if args.budget else deadline
            left = end - time.monotonic() - args.reserve - val_seconds * n_vals - final_val_est
            fit = step + int(0.93 * rate * max(0.0, left))
            total = ctx.broadcast_int(max(step + 1, min(cap, fit)))
            warmup = min(args.warmup, max(1, total // 10))
            val_every = args.val_every or max(1, total // 10)
            calibrated = True
            if bar is not None:
                bar.total = total
            log(f"schedule: {rate:.2f} steps/s -> {total} steps to fit {args.budget or args.time_limit:g} min "
                f"({total / spe:.1f} epochs)")

        if bar is not None:
            if step % 10 == 0:
                loss_val = (log_loss / max(1, log_n)).item()
                bar.set_postfix(loss=f"{loss_val:.4f}", lr=f"{opt.param_groups[-1]['lr']:.1e}",
                                refresh=False)
                log_loss.zero_(); log_n = 0
            bar.update(1)
        elif ctx.main and time.monotonic() - last_log >= args.log_every:
            now = time.monotonic()
            loss_val = (log_loss / max(1, log_n)).item()
            ips = (step - log_step) * args.batch * ctx.world / (now - last_log)
            sps = (step - log_step) / (now - last_log)
            log(f"step {step}/{total}  epoch {step / spe:.1f}  loss {loss_val:.4f}  "
                f"lr {opt.param_groups[-1]['lr']:.2e}  {ips:.0f} img/s  ETA {_fmt_time((total - step) / max(sps, 1e-9))}")
            _append_jsonl(out / "log.jsonl", {"step": step, "loss": loss_val, "images_per_s": round(ips, 1)})
            last_log, log_step = now, step
            log_loss.zero_(); log_n = 0

        if ctx.main and truths and step % val_every == 0 and step < total:
            run_val(args.val_limit)
            checkpoint()
        elif ctx.main and args.save_every and step % args.save_every == 0:
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
            final_val, _ = run_val(None)
        save_final(model, out / "final.safetensors", args, info, final_val, step, total, finished,
                   train_seconds, ctx.world, log)
        checkpoint()                                      # history now holds the final validation
    ctx.barrier()
    ctx.close()
    return 0


def save_final(model, path, args, info, val, step, total, finished, seconds, world, log) -> None:
    from ..core.weights import save_weights
    meta = {"trained_with": "tint train", "args": _jsonable(vars(args)), "world_size": world,
            "data": {"folders": [_short(f) for f in args.data], "images": info["count"],
                     "skipped": len(info.get("skipped", [])), "pack_size": info["size"]},
            "data_terms": DATA_TERMS, "validation": val,
            "validation_protocol": "tint.train.validate: short side 256, working size "
                                   f"{args.val_size}, L1 ab / PSNR / colorfulness (see tint eval)",
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


def _jsonable(d: dict) -> dict:
    return {k: v for k, v in d.items() if not k.startswith("_") and
            isinstance(v, (str, int, float, bool, list, type(None)))}


def _append_jsonl(path: Path, rec: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
