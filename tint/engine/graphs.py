"""Fast inference: the same network, rewritten for the GPU it runs on.

``prepare(model)`` returns a callable ``L_work (B, 1, h, w) float32 -> ab (B, 2, h, w)``
that computes what ``model`` computes, faster:

* batch norm folded away where that is exact: into the Tiny-Darknet convs it follows
  (conv -> BN) and into the head's ``reduce`` 1x1 conv it precedes (BN -> 1x1 conv; a 1x1
  conv has no zero padding, so the shift folds into the bias exactly).  The taps' BNs
  before the 3x3 merges cannot fold (the zero padding would see the shift), so they run
  inside the fused head step (``kernels.head_step``) with the upsample and the add;
* fp16 (or bf16) weights and activations in channels_last, input channels padded to 8 and
  the final width to a multiple of 8 with zero weights (tensor-core friendly, exact);
* conv + bias + ReLU as one cuDNN call where cuDNN offers it (checked at start);
* the full-resolution tail in Triton (``triton_convs``): the last merge as two GEMMs and a
  tap sum (``kernels.merge_gemm``; the 64-channel head-step tensor is never written),
  refine as a narrow FMA conv, the gray add fused;
* the out conv and its readout fused (``kernels.head_out``): for "bins" models the Q
  logits per pixel live in registers only, softmax(logits / T) @ bins is written as ab;
* one CUDA graph per (batch bucket, h, w): static input/output buffers, warm-up on a
  side stream, batches rounded up to a power of two.

``FramePipeline`` runs the whole frame path on top: host uint8 frames -> pinned memory ->
async H2D -> lightness (full res) -> working-size L -> network -> upsample + Lab -> sRGB ->
uint8 -> async D2H, all device work of one batch in one graph, two slots so copies
overlap compute.  It produces the pixels of ``Runner.colorize_tensor``.

On the CPU (tests, CI) the same code runs eagerly in float32 with the PyTorch references
of every kernel, so folding and the pipeline logic are checked without a GPU.
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict, deque

import numpy as np
import torch
import torch.nn.functional as F

from . import kernels as K
from .model import LEAKY_SLOPE, Colorizer, TinyDarknetEncoder, VGG16Encoder, working_shape

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MAX_BATCH = 64          # largest graph; bigger batches run in chunks
MAX_GRAPHS = 16         # per engine; the least recently used is dropped past this
FINAL_PAD = 8           # the head's final width is padded to a multiple of this

# Engine options that ``scripts/engine_sweep.py`` compares on the GPU in one process; the
# winner of the 512x512 sweep is what stands here.  Every one is also an Engine argument.
#   fuse_conv_relu   None: cuDNN's conv+bias+ReLU when the start-up check passes; False: conv, then ReLU
#   cudnn_benchmark  autotune cuDNN's algorithms during the graph warm-up (off: heuristics)
#   gpu_layout       channels_last + channels padded to 8 (False: NCHW, unpadded; for comparison)
#   triton_convs     Triton for the convs cuDNN runs worst: the stem, conv1 built from L in
#                    registers (cuDNN: 1.13 ms at 512^2 B=32, Triton 0.40 ms), and the narrow
#                    full-res tail (last merge as two GEMMs + a tap sum, refine as FMAs, the
#                    gray add fused; see kernels section (g)); False: cuDNN
DEFAULTS = {"fuse_conv_relu": None, "cudnn_benchmark": True, "gpu_layout": None, "triton_convs": True}


# --------------------------------------------------------------------------- folding
def bn_affine(bn: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as y = x * scale + shift, (C,) each, computed in float64."""
    inv = 1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
    g = bn.weight.double() if bn.weight is not None else torch.ones_like(inv)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(inv)
    scale = g * inv
    return scale, beta - bn.running_mean.double() * scale


def fold_bn_after_conv(w: torch.Tensor, b: torch.Tensor | None, bn) -> tuple[torch.Tensor, torch.Tensor]:
    """conv(w, b) -> BN  ==  conv(w', b'): each output channel scaled and shifted (exact)."""
    s, t = bn_affine(bn)
    b = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device) if b is None else b.double()
    return (w.double() * s.view(-1, 1, 1, 1)).float(), (b * s + t).float()


def fold_bn_before_conv1x1(bn, w: torch.Tensor, b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """BN -> conv1x1(w, b)  ==  conv1x1(w', b'): W (s x + t) + b = (W s) x + (W t + b).

    Exact only for 1x1 kernels (a 3x3 conv's zero padding would not see the shift)."""
    if w.shape[-2:] != (1, 1):
        raise ValueError(f"BN folds into a following conv only when it is 1x1, got {tuple(w.shape)}")
    s, t = bn_affine(bn)
    w2 = w.double()[:, :, 0, 0]                                   # (Cout, Cin)
    b = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device) if b is None else b.double()
    return (w2 * s.view(1, -1)).float()[:, :, None, None], (b + w2 @ t).float()


def pad_conv(w: torch.Tensor, b: torch.Tensor | None, cout: int | None = None, cin: int | None = None):
    """Zero-pad a conv's output and/or input channels (padded outputs are 0; padded inputs
    are ignored), so channel counts become tensor-core friendly without changing results."""
    co, ci = w.shape[:2]
    cout, cin = cout or co, cin or ci
    wp = w.new_zeros(cout, cin, *w.shape[2:])
    wp[:co, :ci] = w
    bp = w.new_zeros(cout)
    if b is not None:
        bp[:co] = b
    return wp, bp


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def batch_bucket(B: int, max_batch: int = MAX_BATCH) -> int:
    """The graph batch that serves a batch of B: the next power of two, at most max_batch."""
    if B < 1:
        raise ValueError(f"batch must be at least 1, got {B}")
    return min(max_batch, 1 << (B - 1).bit_length())


def batch_chunks(B: int, max_batch: int = MAX_BATCH) -> list[tuple[int, int, int]]:
    """[(start, stop, bucket), ...] covering range(B) in graphs of at most max_batch."""
    out = []
    for s in range(0, B, max_batch):
        e = min(B, s + max_batch)
        out.append((s, e, batch_bucket(e - s, max_batch)))
    return out


# --------------------------------------------------------------------------- network
class FastColorizer(torch.nn.Module):
    """A folded, padded copy of a Colorizer: ``forward(L) -> ab`` float32, eager.

    Holds plain tensors on the model's device in ``dtype``; built once, never trained.
    """

    def __init__(self, model: Colorizer, dtype: torch.dtype = torch.float32, fuse_conv_relu: bool | None = None,
                 gpu_layout: bool | None = None, triton_convs: bool = DEFAULTS["triton_convs"]):
        super().__init__()
        model = copy.deepcopy(model).float().eval()
        dev = next(model.parameters()).device
        self.device, self.dtype, self.multiple = dev, dtype, model.multiple
        self.config = model.config
        # GPU layout: channels_last, channel counts padded to 8 (default on CUDA; CPU tests
        # turn it on to check that padding changes nothing).
        gpu_layout = dev.type == "cuda" if gpu_layout is None else gpu_layout
        self.memory_format = torch.channels_last if gpu_layout else torch.contiguous_format
        enc, head = model.encoder, model.head
        self.in_channels = 8 if gpu_layout else 2              # 2 = gray + ones (see VGG16Encoder)
        self.convs: list[tuple[torch.Tensor, torch.Tensor, int]] = []   # (weight, bias, padding)
        self.plan: list[tuple] = []     # ("conv", i, act) | ("pool",) | ("tap",)

        def add_conv(w, b, act, cin=None):
            if cin is not None:
                w, b = pad_conv(w, b, cin=cin)
            self.plan.append(("conv", len(self.convs), act))
            self.convs.append(self._param(w, b))

        if isinstance(enc, VGG16Encoder):
            first = True
            for bi, widths in enumerate(enc.blocks, 1):
                if bi > 1:
                    self.plan.append(("pool",))
                for i in range(1, len(widths) + 1):
                    c = getattr(enc, f"conv{bi}_{i}")
                    add_conv(c.weight, c.bias, "relu", self.in_channels if first else None)
                    first = False
                self.plan.append(("tap",))
        elif isinstance(enc, TinyDarknetEncoder):
            n = 0
            for layer in enc.layers:
                if layer is None:
                    self.plan.append(("pool",))
                elif layer == "tap":
                    self.plan.append(("tap",))
                else:
                    n += 1
                    c, bn = getattr(enc, f"conv{n}"), getattr(enc, f"bn{n}")
                    w, b = fold_bn_after_conv(c.weight, c.bias, bn)
                    add_conv(w, b, "leaky", self.in_channels if n == 1 else None)
        else:
            raise ValueError(f"engine: no plan for encoder {type(enc).__name__}")

        # head: BN(deepest tap) folded into reduce; other taps' BN kept as (scale, shift)
        self.first_tap, self.out_stride = model.first_tap, model.config.out_stride
        w, b = fold_bn_before_conv1x1(head.bns[-1], head.reduce.weight, head.reduce.bias)
        self.reduce = self._param(w, b)
        # global context: a few small ops on the deepest tap (BN applied explicitly, since
        # its 3x3 stride-2 convs see zero padding), in plain PyTorch inside the graph
        self.context = None
        if head.context is not None:
            c = head.context
            s_, t_ = bn_affine(head.bns[-1])
            self.context = {"bn": (s_.to(dev, dtype).view(1, -1, 1, 1), t_.to(dev, dtype).view(1, -1, 1, 1)),
                            "conv1": self._param(c.conv1.weight, c.conv1.bias),
                            "conv2": self._param(c.conv2.weight, c.conv2.bias),
                            "fc": (c.fc.weight.detach().float(), c.fc.bias.detach().float()),
                            "film": (c.film.weight.detach().float(), c.film.bias.detach().float())}
        self.tap_affine = [tuple(t.float().to(dev) for t in bn_affine(bn)) for bn in head.bns]
        fw = head.refine.weight.shape[0]
        # Narrow tail (Triton convs, final width <= 4, full-resolution output): the last
        # merge and refine as kernels.merge_gemm / narrow_conv, the gray add fused, widths
        # padded to 4; else cuDNN convs with the final width padded to FINAL_PAD.
        self.narrow = bool(triton_convs) and gpu_layout and fw <= K.NARROW and self.out_stride == 1
        fwp = K.NARROW if self.narrow else round_up(fw, FINAL_PAD) if gpu_layout else fw
        self.merges = []
        for i, conv in enumerate(head.merges):
            if i < len(head.merges) - 1:
                self.merges.append(self._param(conv.weight, conv.bias))
            elif not self.narrow:
                self.merges.append(self._param(*pad_conv(conv.weight, conv.bias, cout=fwp)))
            elif conv.weight.shape[1] >= K.MERGE_GEMM_MIN:
                s, t = self.tap_affine[0]
                self.merges.append(K.MergeParams(conv.weight.to(dev), conv.bias.to(dev), s, t, dtype))
            else:
                self.merges.append(K.NarrowParams(conv.weight.to(dev), conv.bias.to(dev), "relu"))
        wr, br = pad_conv(head.refine.weight, head.refine.bias, cout=fwp, cin=fwp)
        self.refine = K.NarrowParams(wr.to(dev), br.to(dev), "relu") if self.narrow else self._param(wr, br)
        wo, bo = pad_conv(head.out.weight, head.out.bias, cin=fwp)
        bins = None
        if model.config.output == "ab":
            from .model import AB_SCALE
            wo, bo = wo * AB_SCALE, bo * AB_SCALE            # readout folded into the conv
        else:
            bins = model.bins.float()
        self.out = K.HeadOutParams(wo.to(dev), bo.to(dev), bins, model.config.temperature, dtype)
        # Triton replacements, used only where their kernel runs (CUDA, 16-bit, dense NHWC);
        # elsewhere the cuDNN/reference path above runs, so CPU tests check the same folding.
        self.triton_convs = bool(triton_convs) and gpu_layout
        act0 = self.plan[0][2]
        w0, b0, _ = self.convs[0]
        self.stem = K.StemParams(w0, b0, act0) if self.triton_convs else None
        self.fuse_conv_relu = self._check_fused_relu() if fuse_conv_relu is None else fuse_conv_relu

    def _param(self, w, b):
        w = w.detach().to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        return w, b.detach().to(self.device, self.dtype), w.shape[-1] // 2

    def _check_fused_relu(self) -> bool:
        """cuDNN's conv+bias+ReLU, if this build has it and it agrees with conv then ReLU."""
        if self.device.type != "cuda" or self.dtype == torch.float32:
            return False
        try:
            g = torch.Generator(device=self.device).manual_seed(0)
            x = torch.randn(2, 64, 24, 20, device=self.device, generator=g).to(self.dtype)
            x = x.contiguous(memory_format=torch.channels_last)
            w = (torch.randn(32, 64, 3, 3, device=self.device, generator=g) * 0.05).to(self.dtype)
            w = w.contiguous(memory_format=torch.channels_last)
            b = torch.randn(32, device=self.device, generator=g).to(self.dtype)
            y = torch.cudnn_convolution_relu(x, w, b, (1, 1), (1, 1), (1, 1), 1)
            r = F.relu(F.conv2d(x, w, b, padding=1))
            return bool(((y.float() - r.float()).norm() / r.float().norm()).item() < 1e-2)
        except Exception:
            return False

    def conv(self, x, i_or_param, act=None, stride: int = 1):
        w, b, pad = self.convs[i_or_param] if isinstance(i_or_param, int) else i_or_param
        if act == "relu" and self.fuse_conv_relu:
            return torch.cudnn_convolution_relu(x, w, b, (stride, stride), (pad, pad), (1, 1), 1)
        y = F.conv2d(x, w, b, stride=stride, padding=pad)
        if act == "relu":
            return F.relu_(y)
        if act == "leaky":
            return F.leaky_relu_(y, LEAKY_SLOPE)
        return y

    def global_context(self, deep: torch.Tensor):
        """GlobalContext on the deepest tap: (1 + gamma, beta), (B, C, 1, 1) each."""
        c = self.context
        s, t = c["bn"]
        g = self.conv(self.conv(deep * s + t, c["conv1"], "relu", stride=2), c["conv2"], "relu", stride=2)
        g = F.relu(F.linear(g.float().mean((2, 3)), *c["fc"]))
        gamma, beta = F.linear(g, *c["film"])[:, :, None, None].chunk(2, 1)
        return (1 + gamma).to(deep.dtype), beta.to(deep.dtype)

    def encode(self, x, start: int = 0):
        taps = []
        for op in self.plan[start:]:
            if op[0] == "conv":
                x = self.conv(x, op[1], op[2])
            elif op[0] == "pool":
                x = K.max_pool2x2(x)             # Triton on CUDA (NHWC); F.max_pool2d elsewhere
            else:
                taps.append(x)
        return taps

    @torch.no_grad()
    def forward(self, L: torch.Tensor) -> torch.Tensor:
        """L (B, 1, h, w) float in [0, 100] -> ab (B, 2, h, w) float32."""
        B, _, h, w = L.shape
        fast_stem = self._fast(self.stem, L)
        # gray for the cuDNN stem's input planes and the unfused refine add; the Triton stem
        # and the narrow tail read L themselves
        gray = None if fast_stem and self.narrow else (L / 100.0).to(self.dtype)
        if fast_stem:
            taps = self.encode(K.stem_conv(L, self.stem), start=1)      # conv1 from L in registers
        else:
            x = torch.zeros(B, self.in_channels, h, w, device=L.device, dtype=self.dtype)
            x = x.contiguous(memory_format=self.memory_format)
            x[:, 0:1] = gray
            x[:, 1] = 1.0                                        # the ones plane
            taps = self.encode(x)                                # shallow .. deep
        taps = taps[self.first_tap:]                             # those the head reads
        x = self.conv(taps[-1], self.reduce)                     # BN folded in
        if self.context is not None:
            scale, shift = self.global_context(taps[-1])
            x = x * scale + shift
        for i, m in enumerate(self.merges):
            t = len(taps) - 2 - i
            if isinstance(m, K.MergeParams):                     # + gray, fused
                x = K.merge_gemm(x, taps[t], m, L)
            elif isinstance(m, K.NarrowParams):
                x = K.narrow_conv(K.head_step(x, taps[t], *self.tap_affine[t]), m, L)
            else:
                x = self.conv(K.head_step(x, taps[t], *self.tap_affine[t]), m, "relu")
        if self.narrow:
            x = K.narrow_conv(x, self.refine)                    # (B, 4, h, w)
        else:
            if self.out_stride > 1:
                gray = F.avg_pool2d(gray, self.out_stride)
            x = self.conv(x + gray, self.refine, "relu")         # (B, final_width (padded), h/S, w/S)
        ab = K.head_out(x, self.out)                             # (B, 2, h/S, w/S) float32
        if self.out_stride > 1:
            ab = F.interpolate(ab, scale_factor=float(self.out_stride), mode="bilinear", align_corners=False)
        return ab

    @staticmethod
    def _fast(p, t: torch.Tensor) -> bool:
        """Whether the Triton stem ``p`` runs here (else the cuDNN path)."""
        return p is not None and K.triton_enabled(t, p.w_packed) and K.stem_fast_ok(p)


# --------------------------------------------------------------------------- engine
class _Graph:
    __slots__ = ("graph", "inp", "out")

    def __init__(self, graph, inp, out):
        self.graph, self.inp, self.out = graph, inp, out


def capture(fn, *static_inputs, pool=None, warmup: int = 3, benchmark: bool = True):
    """Warm ``fn(*static_inputs)`` up on a side stream, then capture it; returns (graph, output).

    cuDNN's autotuner runs during the warm-up (benchmark mode only here, restored after), so
    the graph records the fastest algorithms for these shapes.
    """
    dev = static_inputs[0].device
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark
    try:
        s = torch.cuda.Stream(dev)
        s.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(s):
            for _ in range(warmup):
                fn(*static_inputs)
        torch.cuda.current_stream(dev).wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=pool):
            out = fn(*static_inputs)
    finally:
        torch.backends.cudnn.benchmark = old
    return g, out


class Engine:
    """``engine(L_work) -> ab``: FastColorizer replayed from CUDA graphs, one per
    (batch bucket, h, w); eager when graphs are off (CPU)."""

    def __init__(self, model: Colorizer, precision: str = "fp16", graphs: bool | None = None,
                 max_batch: int = MAX_BATCH, fuse_conv_relu: bool | None = DEFAULTS["fuse_conv_relu"],
                 cudnn_benchmark: bool = DEFAULTS["cudnn_benchmark"], gpu_layout: bool | None = DEFAULTS["gpu_layout"],
                 triton_convs: bool = DEFAULTS["triton_convs"]):
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}, got {precision!r}")
        self.precision = precision
        self.cudnn_benchmark = bool(cudnn_benchmark)
        self.net = FastColorizer(model, DTYPES[precision], fuse_conv_relu, gpu_layout, triton_convs)
        self.device = self.net.device
        self.multiple = self.net.multiple
        self.config = self.net.config
        self.graphs = (self.device.type == "cuda") if graphs is None else bool(graphs)
        self.max_batch = max_batch
        self._cache: OrderedDict = OrderedDict()
        self._pool = None
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"precision": self.precision, "graphs": self.graphs,
                "fused_conv_relu": self.net.fuse_conv_relu, "cudnn_benchmark": self.cudnn_benchmark,
                "triton_convs": self.net.triton_convs,
                "channels_last": self.net.memory_format == torch.channels_last,
                "triton": K.triton_enabled(torch.empty(0, device=self.device)),
                "graphs_cached": [list(k) for k in self._cache]}

    def _entry(self, Bb: int, h: int, w: int) -> _Graph:
        key = (Bb, h, w)
        e = self._cache.get(key)
        if e is not None:
            self._cache.move_to_end(key)
            return e
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        inp = torch.full((Bb, 1, h, w), 50.0, device=self.device)
        try:
            g, out = capture(self.net, inp, pool=self._pool, benchmark=self.cudnn_benchmark)
        except RuntimeError:
            if not self.net.fuse_conv_relu:
                raise
            # cuDNN's fused conv+ReLU passed the start-up check but not capture: drop it.
            self.net.fuse_conv_relu = False
            g, out = capture(self.net, inp, pool=self._pool, benchmark=self.cudnn_benchmark)
        e = self._cache[key] = _Graph(g, inp, out)
        while len(self._cache) > MAX_GRAPHS:
            self._cache.popitem(last=False)
        return e

    @torch.no_grad()
    def __call__(self, L: torch.Tensor) -> torch.Tensor:
        if L.dim() != 4 or L.shape[1] != 1:
            raise ValueError(f"expected L of shape (B, 1, H, W), got {tuple(L.shape)}")
        B, _, h, w = L.shape
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"H and W must be multiples of {self.multiple}, got {h}x{w}")
        L = L.to(self.device, torch.float32)
        if not self.graphs:
            return self.net(L)
        outs = []
        with self._lock:
            for s, e, Bb in batch_chunks(B, self.max_batch):
                g = self._entry(Bb, h, w)
                g.inp[: e - s].copy_(L[s:e])
                g.graph.replay()
                outs.append(g.out[: e - s].clone())     # the static buffer is reused next call
        return outs[0] if len(outs) == 1 else torch.cat(outs)


def prepare(model: Colorizer, precision: str = "fp16", **kw) -> Engine:
    """The fast callable for ``model`` (see module doc); ``Runner`` calls this on CUDA."""
    return Engine(model, precision, **kw)


# --------------------------------------------------------------------------- frames
class _Slot:
    """One of the two buffer sets of a frame shape: pinned host in/out, device in/out,
    the graph from device in to device out, and the events that order their reuse."""

    def __init__(self, pipe: "FramePipeline", B, H, W, C):
        dev, cuda = pipe.device, pipe.device.type == "cuda"
        self.dev_in = torch.empty(B, H, W, C, dtype=torch.uint8, device=dev)
        self.dev_out = torch.empty(B, H, W, 3, dtype=torch.uint8, device=dev)
        self.host_in = torch.empty(B, H, W, C, dtype=torch.uint8, pin_memory=cuda) if cuda else None
        self.host_out = torch.empty(B, H, W, 3, dtype=torch.uint8, pin_memory=cuda) if cuda else None
        self.graph = None
        if cuda:
            self.ev_in, self.ev_comp, self.ev_out = (torch.cuda.Event() for _ in range(3))
            # random bytes, not zeros: the warm-up must exercise real paths
            self.dev_in.copy_(torch.randint(0, 256, self.dev_in.shape, dtype=torch.uint8, device=dev))
            if pipe.graphs:
                with torch.cuda.stream(pipe.compute):
                    self.graph, _ = capture(pipe._device_step, self.dev_in, self.dev_out, pool=pipe._pool,
                                            benchmark=pipe.engine.cudnn_benchmark)
                pipe.compute.synchronize()

    def replay(self, pipe):
        if self.graph is not None:
            self.graph.replay()
        else:
            pipe._device_step(self.dev_in, self.dev_out)


class FramePipeline:
    """Colorize batches of uint8 frames (B, H, W, 1|3) host -> host (or device -> device).

    ``run(frames)``: one batch, synchronous (latency).  ``stream(batches)``: an iterator of
    outputs, double buffered: batch k+1 is copied in while batch k computes and k-1 is
    copied out.  The same pixels as ``Runner.colorize_tensor`` (within fp16 rounding).
    """

    def __init__(self, engine: Engine, size: int | None = None, graphs: bool | None = None,
                 saturation: float = 1.0):
        self.engine = engine
        self.saturation = saturation             # ab is scaled by it before the join
        self.net = engine.net
        self.device = engine.device
        self.size = int(size or engine.config.size)
        self.graphs = engine.graphs if graphs is None else graphs
        self._states: OrderedDict = OrderedDict()
        self._next = 0
        self._pool = None
        if self.device.type == "cuda":
            self.compute = torch.cuda.Stream(self.device)
            self.h2d = torch.cuda.Stream(self.device)
            self.d2h = torch.cuda.Stream(self.device)
            if self.graphs:
                self._pool = torch.cuda.graph_pool_handle()

    @classmethod
    def from_runner(cls, runner, size: int | None = None) -> "FramePipeline":
        net = runner._network
        engine = net if isinstance(net, Engine) else Engine(runner.model, "fp32" if runner.device.type == "cpu"
                                                            else runner.precision)
        return cls(engine, size or runner.size, saturation=runner.saturation)

    def working_shape(self, H: int, W: int) -> tuple[int, int]:
        return working_shape(H, W, self.size, self.net.multiple)

    def _device_step(self, frames: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, C) -> uint8 (B, H, W, 3) on the device, no host sync."""
        from .api import resize_lightness
        H, W = frames.shape[1:3]
        L = K.lightness_u8(frames)                                  # (B, 1, H, W) float32
        ab = self.net(resize_lightness(L, self.working_shape(H, W)))  # (B, 2, h, w) float32
        if self.saturation != 1.0:
            ab = ab * self.saturation
        return K.join_u8(L, ab, out=out)

    def _state(self, shape) -> list[_Slot]:
        st = self._states.get(shape)
        if st is None:
            st = self._states[shape] = [_Slot(self, *shape) for _ in range(2)]
            while len(self._states) > 4:
                self._states.popitem(last=False)
        return st

    @staticmethod
    def _as_tensor(frames) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if t.dim() == 3:
            t = t[None]
        if t.dtype != torch.uint8 or t.dim() != 4 or t.shape[3] not in (1, 3):
            raise ValueError(f"expected uint8 frames (B, H, W, 1|3), got {t.dtype} {tuple(t.shape)}")
        return t

    # ---- device to device: the engine's share of the bench --------------------------
    def device_slot(self, B: int, H: int, W: int, C: int = 3) -> _Slot:
        """Slot 0 of this shape: fill ``slot.dev_in``, call ``slot.replay(pipe)``, read ``slot.dev_out``."""
        return self._state((B, H, W, C))[0]

    # ---- host to host ----------------------------------------------------------------
    def _submit(self, frames: torch.Tensor):
        t = self._as_tensor(frames)
        if self.device.type != "cuda":
            out = torch.empty(*t.shape[:3], 3, dtype=torch.uint8)
            return None, self._device_step(t.to(self.device), out)
        slot = self._state(tuple(t.shape))[self._next]
        self._next ^= 1
        if t.is_pinned() and t.is_contiguous():
            src = t                                     # already pinned: no host copy
        else:
            slot.ev_in.synchronize()                    # the last H2D from host_in is done
            slot.host_in.copy_(t)
            src = slot.host_in
        with torch.cuda.stream(self.h2d):
            self.h2d.wait_event(slot.ev_comp)           # the last compute has read dev_in
            slot.dev_in.copy_(src, non_blocking=True)
            slot.ev_in.record(self.h2d)
        with torch.cuda.stream(self.compute):
            self.compute.wait_event(slot.ev_in)
            self.compute.wait_event(slot.ev_out)        # the last D2H has read dev_out
            slot.replay(self)
            slot.ev_comp.record(self.compute)
        return slot, None

    def _collect(self, pending, out: torch.Tensor | None = None) -> torch.Tensor:
        slot, ready = pending
        if slot is None:
            return ready if out is None else out.copy_(ready)
        dst = slot.host_out if out is None else out
        with torch.cuda.stream(self.d2h):
            self.d2h.wait_event(slot.ev_comp)
            dst.copy_(slot.dev_out, non_blocking=dst.is_pinned())
            slot.ev_out.record(self.d2h)
        slot.ev_out.synchronize()
        return dst

    @torch.no_grad()
    def run(self, frames, out: torch.Tensor | None = None) -> torch.Tensor:
        """One batch host -> host.  Returns ``out`` if given (pinned: fastest), else a new tensor."""
        r = self._collect(self._submit(frames), out)
        return r if out is not None or self.device.type != "cuda" else r.clone()

    @torch.no_grad()
    def stream(self, batches):
        """Yield the colorized batch for each input batch, in order, two in flight.

        A yielded tensor is pinned memory that is reused two batches later: use or copy it
        before asking for the next one."""
        pending = deque()
        for frames in batches:
            pending.append(self._submit(frames))
            if len(pending) == 2:
                yield self._collect(pending.popleft())
        while pending:
            yield self._collect(pending.popleft())
