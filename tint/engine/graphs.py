"""``Engine`` / ``prepare``: the folded network replayed from CUDA graphs, one per
(batch bucket, h, w); what ``Runner`` runs on CUDA."""
from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from ..core.model import Colorizer
from . import kernels as K
from .fold import DEFAULTS, FastColorizer


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MAX_BATCH = 64          # largest graph; bigger batches run in chunks
MAX_GRAPHS = 16         # per engine; the least recently used is dropped past this

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

    def clear(self) -> None:
        """Drop every captured graph and their memory pool."""
        with self._lock:
            self._cache.clear()
            # Once its last graph is gone the pool is being freed: capturing into the same
            # handle again trips the caching allocator's "use_count > 0" assert (torch 2.11).
            self._pool = None

    def graph(self, Bb: int, h: int, w: int) -> _Graph:
        """The graph for batch bucket Bb at h x w, captured on first use: ``.inp`` (Bb, 1, h, w)
        and ``.out`` (Bb, 2, h, w) are its static buffers, ``.graph.replay()`` runs it."""
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
                g = self.graph(Bb, h, w)
                g.inp[: e - s].copy_(L[s:e])
                g.graph.replay()
                outs.append(g.out[: e - s].clone())     # the static buffer is reused next call
        return outs[0] if len(outs) == 1 else torch.cat(outs)


def prepare(model: Colorizer, precision: str = "fp16", **kw) -> Engine:
    """The fast callable for ``model`` (see module doc); ``Runner`` calls this on CUDA."""
    return Engine(model, precision, **kw)
