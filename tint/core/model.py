"""The colorization network: an encoder's taps, batch-normed, merged by a residual
upsampling head (Dahl, "Automatic Colorization", 2016) into chroma.

    L (B, 1, H, W) in [0, 100]
      -> encoder taps  t1 (s1) .. tK (s 2^(K-1))                  # vgg16: 64,128,256,512 ch
      -> x = conv1x1(BN(tK))                                        # (B, c_{K-1}, H/2^(K-1), W/2^(K-1))
      -> x = x * (1 + gamma(g)) + beta(g)     (config.context > 0)  # global context, below
      -> for i = K-1 .. s+1:  x = conv3x3(up2(x) + BN(ti))          # ... (B, c_{i-1}, H/2^(i-1), W/2^(i-1))
      -> x = conv3x3(conv3x3(x + gray))                             # (B, final_width, H/S, W/S)
      -> out conv: 2 chroma channels (regression) or Q bin logits (classification)
      -> readout, then bilinear x S up to the working size          # S = config.out_stride = 2^s
    ab (B, 2, H, W) in Lab units

Global context (Iizuka, Simo-Serra & Ishikawa 2016, "Let there be Color!"): the deepest
tap is reduced by two stride-2 convs and averaged over the whole image into one vector g;
g modulates every channel of the deepest head features.  One scene-level decision (indoor,
sky, snow) then colours every pixel, the usual cure for patchy, inconsistent colour.
Chroma at a coarser stride (``out_stride``) costs a quarter of the full-resolution head
per factor of 2; chroma is smooth, and the full-resolution lightness keeps every edge.

H and W must be multiples of ``Colorizer.multiple``.  Everything a model needs to be
rebuilt is in ``ColorizerConfig``; weights files carry it (see ``tint.core.weights``).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

LEAKY_SLOPE = 0.1        # Tiny Darknet's LeakyReLU (the engine and its stem kernel use it too)

AB_SCALE = 100.0   # regression output is ab / AB_SCALE


@dataclass(frozen=True)
class ColorizerConfig:
    backbone: str = "vgg16"          # key of BACKBONES
    output: str = "ab"               # "ab": regress chroma; "bins": classify quantized chroma
    final_width: int = 3             # channels after the last tap is merged (3 in the classic design)
    bin_step: float = 10.0           # ab grid spacing for output="bins"
    temperature: float = 0.38        # annealed-mean readout for output="bins" (Zhang et al. 2016)
    size: int = 256                  # default working size: the network sees about size*size pixels
    context: int = 0                 # width of the global-context branch (0: none, the classic design)
    out_stride: int = 1              # chroma is predicted at working size / out_stride (1, 2, 4)
    chroma_gain: float = 1.0         # bins readout x this: a calibration chosen on a tuning split,
                                     # since the perceptual losses leave the mean below true chroma
    width: int = 1                   # encoder channels x this (1: the published network, whose
                                     # weights import; wider ones grow from it, tint.training.grow)

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; known: {', '.join(BACKBONES)}")
        if self.output not in ("ab", "bins"):
            raise ValueError(f"output must be 'ab' or 'bins', got {self.output!r}")
        if self.out_stride not in (1, 2, 4):
            raise ValueError(f"out_stride must be 1, 2 or 4, got {self.out_stride!r}")
        if not 0.25 <= self.chroma_gain <= 4.0:
            raise ValueError(f"chroma_gain must be 0.25..4, got {self.chroma_gain!r}")
        if not 0 <= self.context <= 1024:
            raise ValueError(f"context must be 0..1024, got {self.context!r}")
        if not 1 <= self.width <= 8:
            raise ValueError(f"width must be 1..8, got {self.width!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ColorizerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)} (file from a newer tint?)")
        return cls(**d)


# --------------------------------------------------------------------------- the plan
# The network described as data: what the engine (tint.engine.fold) compiles, and what the
# encoders' own forward runs, so the two cannot drift.  Each step holds the modules it uses.
@dataclass(frozen=True, eq=False)
class Conv:
    """k x k conv (stride 1, zero 'same' padding, optional bias) -> optional BN -> act."""
    conv: nn.Conv2d
    bn: nn.BatchNorm2d | None = None
    act: str | None = "relu"              # "relu", "leaky" (LEAKY_SLOPE) or None

    @property
    def k(self) -> int:
        return self.conv.kernel_size[0]

    @property
    def cin(self) -> int:
        return self.conv.in_channels

    @property
    def cout(self) -> int:
        return self.conv.out_channels

    def __call__(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act == "relu":
            return F.relu(x)
        if self.act == "leaky":
            return F.leaky_relu(x, LEAKY_SLOPE)
        return x


@dataclass(frozen=True)
class Pool:
    """2x2 max-pool, stride 2."""

    def __call__(self, x):
        return F.max_pool2d(x, 2)


@dataclass(frozen=True)
class Tap:
    """The features here are a tap (taps come shallow to deep)."""


def run_encoder(plan, x) -> list:
    """Run an encoder plan (Conv, Pool, Tap steps) on x -> its taps, shallow to deep."""
    taps = []
    for step in plan:
        if isinstance(step, Tap):
            taps.append(x)
        else:
            x = step(x)
    return taps


@dataclass(frozen=True, eq=False)
class Merge:
    """One head step: x = act(conv(up2(x) + bn(tap)))."""
    tap: int                              # index into the taps the head reads
    bn: nn.BatchNorm2d
    conv: nn.Conv2d
    act: str = "relu"


@dataclass(frozen=True, eq=False)
class Readout:
    """Head output -> ab.  "ab": ab = scale * raw.  "bins": the annealed mean,
    ab = gain * sum_q softmax(raw / temperature)_q * bins_q."""
    kind: str                             # "ab" or "bins"
    scale: float = 1.0                    # "ab": AB_SCALE
    bins: torch.Tensor | None = None      # "bins": (Q, 2) ab centres
    temperature: float = 1.0
    gain: float = 1.0


@dataclass(frozen=True, eq=False)
class Plan:
    """The whole network, in the order it runs (``Colorizer.plan()``):

        x = [L / 100, 1]                                   input planes: gray, ones
        taps = run_encoder(encoder, x)[first_tap:]
        x = reduce(deep_bn(taps[-1]))                      1x1 conv
        x = x * scale + shift                              if context: context(deep_bn(taps[-1]))
        for m in merges: x = relu(m.conv(up2(x) + m.bn(taps[m.tap])))
        x = relu(refine(x + gray))                         gray avg-pooled to the out stride
        ab = readout(out(x)), bilinear x out_stride
    """
    encoder: tuple
    first_tap: int
    deep_bn: nn.BatchNorm2d
    reduce: nn.Conv2d
    context: nn.Module | None
    merges: tuple
    refine: nn.Conv2d
    out: nn.Conv2d
    readout: Readout
    out_stride: int
    in_planes: int = 2


# --------------------------------------------------------------------------- encoders
def _conv(cin, cout, k=3, bias=True):
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


class VGG16Encoder(nn.Module):
    """VGG16 conv1_1 .. conv4_3 (ReLU after each conv, 2x2 max-pool between blocks).

    The input is two planes: gray in [0, 1] and a plane of ones.  The ones plane lets an
    imported first conv carry Caffe's per-channel mean exactly, zero padding included
    (see ``tint.training.importers.fold_rgb_conv``).
    """
    blocks = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512))
    multiple = 8

    def __init__(self, in_channels: int = 2, width: int = 1):
        super().__init__()
        self.tap_channels = tuple(b[-1] * width for b in self.blocks)   # conv1_2, conv2_2, conv3_3, conv4_3
        cin = in_channels
        for b, widths in enumerate(self.blocks, 1):
            for i, w in enumerate(widths, 1):
                setattr(self, f"conv{b}_{i}", _conv(cin, w * width))
                cin = w * width

    def plan(self) -> tuple:
        steps = []
        for b, widths in enumerate(self.blocks, 1):
            if b > 1:
                steps.append(Pool())
            steps += [Conv(getattr(self, f"conv{b}_{i}"), None, "relu") for i in range(1, len(widths) + 1)]
            steps.append(Tap())             # (B, tap_channels[b-1], H/2^(b-1), W/2^(b-1))
        return tuple(steps)

    def forward(self, x):
        return run_encoder(self.plan(), x)


class TinyDarknetEncoder(nn.Module):
    """Darknet "tiny" (pjreddie cfg/tiny.cfg) up to its 14x14x128 feature map.

    15 bias-free convs, each BN (eps 1e-3) + LeakyReLU(0.1); taps at the end of each of
    the five stages (strides 1, 2, 4, 8, 16).  ``classifier`` (conv1x1 to 1000 classes +
    global average pool) exists only for checking an import against ImageNet.
    """
    # (kernel, width) per conv; None marks a 2x2 max-pool; "tap" the end of a stage.
    layers = ((3, 16), "tap", None, (3, 32), "tap", None,
              (1, 16), (3, 128), (1, 16), (3, 128), "tap", None,
              (1, 32), (3, 256), (1, 32), (3, 256), "tap", None,
              (1, 64), (3, 512), (1, 64), (3, 512), (1, 128), "tap")
    multiple = 16
    bn_eps = 1e-3

    def __init__(self, in_channels: int = 2, classifier: bool = False, width: int = 1):
        super().__init__()
        self.tap_channels = tuple(c * width for c in (16, 32, 128, 256, 128))
        cin, n = in_channels, 0
        for layer in self.layers:
            if isinstance(layer, tuple):
                n += 1
                k, w = layer
                setattr(self, f"conv{n}", _conv(cin, w * width, k, bias=False))
                setattr(self, f"bn{n}", nn.BatchNorm2d(w * width, eps=self.bn_eps))
                cin = w * width
        self.n_convs = n
        self.classifier = nn.Conv2d(cin, 1000, 1) if classifier else None

    def plan(self) -> tuple:
        steps, n = [], 0
        for layer in self.layers:
            if layer is None:
                steps.append(Pool())
            elif layer == "tap":
                steps.append(Tap())
            else:
                n += 1
                steps.append(Conv(getattr(self, f"conv{n}"), getattr(self, f"bn{n}"), "leaky"))
        return tuple(steps)

    def forward(self, x):
        return run_encoder(self.plan(), x)

    def classify(self, rgb):
        """ImageNet logits (B, 1000) in darknet's class order, from RGB in [0, 1]."""
        return self.classifier(self.forward(rgb)[-1]).mean((2, 3))


# An encoder: built as Encoder(in_channels, width=m); has .tap_channels, .multiple, .plan().
BACKBONES = {"vgg16": VGG16Encoder, "tiny-darknet": TinyDarknetEncoder}


def default_backbone(found: str | None = None) -> str:
    """The one default of every ``--backbone``: the backbone of the weights a command starts
    from (``found``: a converted source, a training run's --init), else the table's default."""
    return found or ColorizerConfig.backbone


# --------------------------------------------------------------------------- head
class GlobalContext(nn.Module):
    """Deepest tap (B, C, h, w) -> per-channel (1 + gamma, beta) of shape (B, width_out, 1, 1).

    Two stride-2 convs widen the receptive field to the whole image before the mean; the
    last linear layer starts at zero, so a new branch begins as the identity."""

    def __init__(self, in_channels: int, width: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.fc = nn.Linear(width, width)
        self.film = nn.Linear(width, 2 * out_channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, tap):
        g = F.relu(self.conv2(F.relu(self.conv1(tap))))         # (B, width, h/4, w/4)
        g = F.relu(self.fc(g.mean((2, 3))))                     # (B, width): one vector per image
        gamma, beta = self.film(g)[:, :, None, None].chunk(2, 1)   # (B, out, 1, 1) each
        return 1 + gamma, beta


class ResidualHead(nn.Module):
    """Dahl's residual upsampling head over taps ordered shallow to deep (the shallowest
    one sets the output stride), with optional global context."""

    def __init__(self, tap_channels, final_width: int, out_channels: int, context: int = 0):
        super().__init__()
        c = tap_channels
        k = len(c)
        self.bns = nn.ModuleList(nn.BatchNorm2d(ch) for ch in c)
        self.reduce = nn.Conv2d(c[-1], c[-2], 1)
        self.context = GlobalContext(c[-1], context, c[-2]) if context else None
        widths = list(c[:-1][::-1][1:]) + [final_width]        # vgg16: 128, 64, 3
        self.merges = nn.ModuleList(_conv(c[-2 - i], widths[i]) for i in range(k - 1))
        self.refine = _conv(final_width, final_width)
        self.out = _conv(final_width, out_channels)

    def forward(self, taps, gray):
        deep = self.bns[-1](taps[-1])
        x = self.reduce(deep)                                   # (B, c[K-2], H/2^(K-1), W/2^(K-1))
        if self.context is not None:
            scale, shift = self.context(deep)
            x = x * scale + shift
        for i, conv in enumerate(self.merges):
            tap = len(taps) - 2 - i
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = F.relu(conv(x + self.bns[tap](taps[tap])))      # (B, widths[i], H/2^tap, W/2^tap)
        x = F.relu(self.refine(x + gray))                       # (B, final_width, H/S, W/S)
        return self.out(x)                                      # (B, 2 or Q, H/S, W/S)


def ab_bins(step: float = 10.0) -> torch.Tensor:
    return _ab_bins(float(step)).clone()


@functools.lru_cache(maxsize=4)
def _ab_bins(step: float) -> torch.Tensor:
    """Centres (Q, 2) of the ab grid cells that hold some in-gamut sRGB colour.

    Computed, not downloaded: every sRGB colour on a 64^3 lattice is binned and the
    occupied cells kept (step 10 gives about 300 bins, like Zhang's 313).
    """
    from .color import rgb_to_lab
    v = torch.linspace(0, 1, 64, dtype=torch.float64)
    rgb = torch.stack(torch.meshgrid(v, v, v, indexing="ij")).reshape(3, -1, 1)
    ab = rgb_to_lab(rgb)[1:].reshape(2, -1).T
    cells = torch.unique(torch.round(ab / step), dim=0)
    return (cells * step).float()


class Colorizer(nn.Module):
    """Lightness in, chroma out.  ``forward(L) -> ab`` at the same (working) size."""

    def __init__(self, config: ColorizerConfig = ColorizerConfig()):
        super().__init__()
        self.config = config
        self.encoder = BACKBONES[config.backbone](in_channels=2, width=config.width)
        self.multiple = self.encoder.multiple
        if config.output == "bins":
            self.register_buffer("bins", ab_bins(config.bin_step))   # (Q, 2)
            out_channels = self.bins.shape[0]
        else:
            out_channels = 2
        # taps finer than the output stride are not used
        self.first_tap = int(math.log2(config.out_stride))
        if self.first_tap > len(self.encoder.tap_channels) - 2:
            raise ValueError(f"out_stride {config.out_stride} is too coarse for {config.backbone}")
        self.head = ResidualHead(self.encoder.tap_channels[self.first_tap:], config.final_width,
                                 out_channels, config.context)

    def _check(self, L):
        if L.dim() != 4 or L.shape[1] != 1:
            raise ValueError(f"expected L of shape (B, 1, H, W), got {tuple(L.shape)}")
        h, w = L.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"H and W must be multiples of {self.multiple}, got {h}x{w}")

    def raw(self, L: torch.Tensor) -> torch.Tensor:
        """Head output at the output stride S: (B, 2, H/S, W/S) ab/AB_SCALE for regression,
        (B, Q, H/S, W/S) logits for bins."""
        self._check(L)
        gray = L / 100.0
        x = torch.cat((gray, torch.ones_like(gray)), 1)        # (B, 2, H, W)
        taps = self.encoder(x)[self.first_tap:]
        S = self.config.out_stride
        return self.head(taps, F.avg_pool2d(gray, S) if S > 1 else gray)

    def readout(self, raw: torch.Tensor) -> torch.Tensor:
        """Head output -> ab (B, 2, H/S, W/S) in Lab units (at the output stride)."""
        if self.config.output == "ab":
            return raw * AB_SCALE
        # Annealed mean: sharpen the distribution, then take its mean, which keeps
        # colours vivid (mode-like) without the mode's spatial speckle.
        p = torch.softmax(raw.float() / self.config.temperature, dim=1)
        return torch.einsum("bqhw,qc->bchw", p, self.bins.float() * self.config.chroma_gain).to(raw.dtype)

    def upsample(self, ab: torch.Tensor) -> torch.Tensor:
        """ab at the output stride -> ab at the working size (bilinear)."""
        S = self.config.out_stride
        if S == 1:
            return ab
        return F.interpolate(ab, scale_factor=float(S), mode="bilinear", align_corners=False)

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        """L (B, 1, H, W) in [0, 100] -> ab (B, 2, H, W) in Lab units."""
        return self.upsample(self.readout(self.raw(L)))

    def plan(self) -> Plan:
        """The network as data (see ``Plan``): what ``tint.engine`` compiles."""
        head, cfg = self.head, self.config
        k = len(head.bns)
        if cfg.output == "ab":
            readout = Readout("ab", scale=AB_SCALE)
        else:
            readout = Readout("bins", bins=self.bins, temperature=cfg.temperature, gain=cfg.chroma_gain)
        merges = tuple(Merge(k - 2 - i, head.bns[k - 2 - i], conv) for i, conv in enumerate(head.merges))
        return Plan(encoder=self.encoder.plan(), first_tap=self.first_tap, deep_bn=head.bns[-1],
                    reduce=head.reduce, context=head.context, merges=merges, refine=head.refine,
                    out=head.out, readout=readout, out_stride=cfg.out_stride)


def working_shape(h: int, w: int, size: int, multiple: int) -> tuple[int, int]:
    """The (h, w) the network runs at: about size*size pixels, the input's aspect kept,
    each side a multiple of ``multiple`` and at least ``multiple``; bounded for extreme
    aspect ratios.  Defined in ``tint.core.pixels`` (with the size check), re-exported here."""
    from .pixels import working_shape as shape
    return shape(h, w, size, multiple)
