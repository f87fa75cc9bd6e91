"""``FastColorizer``: a Colorizer folded (batch norm into convs), padded and laid out for the
GPU it runs on, eager; the options ``DEFAULTS`` that choose its kernels."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..core.model import LEAKY_SLOPE, Colorizer, Conv, Pool, Tap
from . import kernels as K


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
        plan = model.plan()                  # the model describes its layers; this compiles them
        self.in_channels = 8 if gpu_layout else plan.in_planes   # gray + ones (see VGG16Encoder)
        self.convs: list[tuple[torch.Tensor, torch.Tensor, int]] = []   # (weight, bias, padding)
        self.plan: list[tuple] = []     # ("conv", i, act) | ("pool",) | ("tap",)

        # encoder: a conv's BN (conv -> BN) folds into the conv exactly
        for step in plan.encoder:
            if isinstance(step, Pool):
                self.plan.append(("pool",))
            elif isinstance(step, Tap):
                self.plan.append(("tap",))
            elif isinstance(step, Conv):
                w, b = step.conv.weight, step.conv.bias
                if step.bn is not None:
                    w, b = fold_bn_after_conv(w, b, step.bn)
                if not self.convs:                           # the stem: input planes padded
                    w, b = pad_conv(w, b, cin=self.in_channels)
                self.plan.append(("conv", len(self.convs), step.act))
                self.convs.append(self._param(w, b))
            else:
                raise ValueError(f"engine: unknown encoder step {step!r}")

        # head: BN(deepest tap) folded into reduce; other taps' BN kept as (scale, shift)
        self.first_tap, self.out_stride = plan.first_tap, plan.out_stride
        w, b = fold_bn_before_conv1x1(plan.deep_bn, plan.reduce.weight, plan.reduce.bias)
        self.reduce = self._param(w, b)
        # global context: a few small ops on the deepest tap (BN applied explicitly, since
        # its 3x3 stride-2 convs see zero padding), in plain PyTorch inside the graph
        self.context = None
        if plan.context is not None:
            c = plan.context
            s_, t_ = bn_affine(plan.deep_bn)
            self.context = {"bn": (s_.to(dev, dtype).view(1, -1, 1, 1), t_.to(dev, dtype).view(1, -1, 1, 1)),
                            "conv1": self._param(c.conv1.weight, c.conv1.bias),
                            "conv2": self._param(c.conv2.weight, c.conv2.bias),
                            "fc": (c.fc.weight.detach().float(), c.fc.bias.detach().float()),
                            "film": (c.film.weight.detach().float(), c.film.bias.detach().float())}
        n_taps = len(plan.merges) + 1
        self.tap_affine: list = [None] * n_taps     # (scale, shift) of each tap's BN the merges read
        for m in plan.merges:
            self.tap_affine[m.tap] = tuple(t.float().to(dev) for t in bn_affine(m.bn))
        self.tap_affine[-1] = tuple(t.float().to(dev) for t in bn_affine(plan.deep_bn))
        fw = plan.refine.weight.shape[0]
        # Narrow tail (Triton convs, final width <= 4, full-resolution output): the last
        # merge and refine as kernels.merge_gemm / narrow_conv, the gray add fused, widths
        # padded to 4; else cuDNN convs with the final width padded to FINAL_PAD.
        self.narrow = bool(triton_convs) and gpu_layout and fw <= K.NARROW and self.out_stride == 1
        fwp = K.NARROW if self.narrow else round_up(fw, FINAL_PAD) if gpu_layout else fw
        self.merges = []
        self.merge_taps = [m.tap for m in plan.merges]
        for i, m in enumerate(plan.merges):
            conv = m.conv
            if i < len(plan.merges) - 1:
                self.merges.append(self._param(conv.weight, conv.bias))
            elif not self.narrow:
                self.merges.append(self._param(*pad_conv(conv.weight, conv.bias, cout=fwp)))
            elif conv.weight.shape[1] >= K.MERGE_GEMM_MIN:
                s, t = self.tap_affine[m.tap]
                self.merges.append(K.MergeParams(conv.weight.to(dev), conv.bias.to(dev), s, t, dtype))
            else:
                self.merges.append(K.NarrowParams(conv.weight.to(dev), conv.bias.to(dev), "relu"))
        wr, br = pad_conv(plan.refine.weight, plan.refine.bias, cout=fwp, cin=fwp)
        self.refine = K.NarrowParams(wr.to(dev), br.to(dev), "relu") if self.narrow else self._param(wr, br)
        wo, bo = pad_conv(plan.out.weight, plan.out.bias, cin=fwp)
        r = plan.readout
        bins = None
        if r.kind == "ab":
            wo, bo = wo * r.scale, bo * r.scale              # readout folded into the conv
        else:
            bins = r.bins.float() * r.gain                   # gain * sum_q p_q bins_q
        self.out = K.HeadOutParams(wo.to(dev), bo.to(dev), bins, r.temperature, dtype)
        # Triton replacements, used only where their kernel runs (CUDA, 16-bit, dense NHWC);
        # elsewhere the cuDNN/reference path above runs, so CPU tests check the same folding.
        self.triton_convs = bool(triton_convs) and gpu_layout
        # the stem kernel: a first step that is a 3x3 conv (the gray + ones planes it builds itself)
        self.stem = None
        if self.triton_convs and self.plan[0][0] == "conv" and self.convs[0][0].shape[-2:] == (3, 3):
            w0, b0, _ = self.convs[0]
            self.stem = K.StemParams(w0, b0, self.plan[0][2])
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
        for m, t in zip(self.merges, self.merge_taps):
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
