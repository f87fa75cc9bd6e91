"""``FramePipeline``: host uint8 frames -> pinned memory -> device -> lightness -> network ->
join -> uint8 -> host, all device work of one batch in one graph, two slots overlapping."""
from __future__ import annotations

from collections import OrderedDict, deque

import numpy as np
import torch

from ..core.model import working_shape
from ..core.pixels import check_size
from . import kernels as K
from .graphs import Engine, capture


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
        self.size = check_size(size, engine.config.size)
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
        return cls(engine, check_size(size, runner.size), saturation=runner.saturation)

    def working_shape(self, H: int, W: int) -> tuple[int, int]:
        return working_shape(H, W, self.size, self.net.multiple)

    def _device_step(self, frames: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, C) -> uint8 (B, H, W, 3) on the device, no host sync."""
        from ..core.pipeline import resize_lightness
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
