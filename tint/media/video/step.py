"""The colorize step of a film: luma batches in, packed Y'CbCr planes out, on the device
(``FrameColorizer``, ``PASSTHROUGH``, a plain function), and the pinned buffer pools."""
from __future__ import annotations

import contextlib
import threading

import numpy as np
import torch

from ...core.errors import TintError
from .formats import FrameLayout, gray_to_luma_lut, lightness_lut, luma_to_gray_lut, rgb_to_yuv


class FrameColorizer:
    """The default colorize step of ``tint video``: luma codes in, Y'CbCr planes out.

    ``submit(y, out)``: y uint8 (n, H, W) host luma (pinned on CUDA), out uint8
    (n, layout.frame_bytes) host (pinned on CUDA).  On the device, in order on one stream:

        y -> L = LUT[y] (full res) -> ``runner.pipeline``: L at the working size -> network
          -> temporal filter -> saturation -> join with L (``kernels.join_u8`` on CUDA)
          -> ``rgb_to_yuv`` -> async copy into ``out``

    The steps are ``Pipeline``'s (``to_work``, ``chroma``, ``join_u8``): ``Runner.colorize_frames``
    with luma in, Y'CbCr out and a filter that may hold frames back.

    The temporal filter is ``ChromaSmoother`` (``lookahead`` frames ahead, the default) or,
    with ``lookahead=0``, the causal ``ChromaStabilizer``.  With a lookahead, the frames that
    come out of a submit are the oldest ones whose lookahead is complete: none for the
    first ``lookahead`` frames, then as many as went in; ``flush(out)`` returns the held
    frames at the end.

    Returns (done, read, m): ``out[:m]`` holds the next m frames in order (m may be 0) once
    the CUDA event ``done`` has completed, and ``y`` may be refilled once ``read`` has;
    (None, None, m) on the CPU, where all of it is synchronous.  No host sync on CUDA, so
    decode, device and encode overlap.
    """

    def __init__(self, runner, layout: FrameLayout, *, size: int | None = None, stabilize: bool = True,
                 lookahead: int | None = None):
        from ..stabilize import LOOKAHEAD, ChromaSmoother, ChromaStabilizer, CodeHold
        self.runner, self.layout = runner, layout
        self.pipe = runner.pipeline
        self.size = size
        self.device = runner.device
        self.cuda = self.device.type == "cuda"
        self.pin_memory = self.cuda
        self.shape = self.pipe.working_shape(layout.height, layout.width, size)
        self.lut = lightness_lut(layout.full_range_in, self.device)
        self.lookahead = (LOOKAHEAD if lookahead is None else int(lookahead)) if stabilize else 0
        if not stabilize:
            self.stabilizer = None
        elif self.lookahead:
            self.stabilizer = ChromaSmoother(lookahead=self.lookahead)
        else:
            self.stabilizer = ChromaStabilizer()
        self.hold = CodeHold() if stabilize else None                        # on the Cb, Cr planes
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None

    def _planes(self, y: torch.Tensor, ab: torch.Tensor, L: torch.Tensor | None = None) -> torch.Tensor:
        """Luma y and its final chroma (filtered, saturation applied) -> packed planes."""
        if L is None:
            L = self.lut[y.int()].unsqueeze(1)                               # (n, 1, H, W) [0, 100]
        rgb = self.pipe.join_u8(L, ab.to(L.device))                          # (n, H, W, 3) uint8
        planes = rgb_to_yuv(rgb, self.layout.matrix, self.layout.pix_fmt == "yuv420p")
        if self.hold is not None:
            Y = self.layout.width * self.layout.height
            planes[:, Y:] = self.hold(planes[:, Y:])
        return planes

    @torch.no_grad()
    def _device(self, y: torch.Tensor) -> torch.Tensor | None:
        """Packed planes of the frames done now, (m, frame_bytes), or None if none is."""
        L = self.lut[y.int()].unsqueeze(1)                                   # (n, 1, H, W) [0, 100]
        L_work = self.pipe.to_work(L, self.size)
        if not self.lookahead:                                               # network, filter, saturation
            return self._planes(y, self.pipe.chroma(L_work, stabilizer=self.stabilizer), L)
        ab = self.pipe.network(L_work)
        ab, ys = self.stabilizer.push(ab, L_work.to(ab.device), y if self.cuda else y.clone())
        return None if ab is None else self._planes(torch.stack(ys), self.pipe.scale(ab))

    def _out(self, planes: torch.Tensor | None, out: torch.Tensor):
        """Copy the planes into ``out`` (async on CUDA); (done, frames)."""
        if planes is None:
            return None, 0
        m = planes.shape[0]
        if not self.cuda:
            out[:m].copy_(planes)
            return None, m
        out[:m].copy_(planes, non_blocking=True)
        done = torch.cuda.Event(blocking=True)
        done.record(self.stream)
        return done, m

    @torch.no_grad()
    def submit(self, y: torch.Tensor, out: torch.Tensor):
        if not self.cuda:
            _, m = self._out(self._device(y), out)
            return None, None, m
        # blocking events: a thread waiting on one sleeps instead of spinning a core that
        # the video encoder needs
        with torch.cuda.stream(self.stream):
            yd = y.to(self.device, non_blocking=True)
            read = torch.cuda.Event(blocking=True)
            read.record(self.stream)
            done, m = self._out(self._device(yd), out)
        return done, read, m

    @torch.no_grad()
    def flush(self, out: torch.Tensor):
        """Frames held back for their lookahead (at most len(out)): (done, m); m = 0 when none is left."""
        if not self.lookahead or not self.stabilizer.pending:
            return None, 0
        with torch.cuda.stream(self.stream) if self.cuda else contextlib.nullcontext():
            ab, ys = self.stabilizer.flush(out.shape[0])
            return self._out(self._planes(torch.stack(ys), self.pipe.scale(ab)), out)

    def close(self) -> None:
        pass


class Passthrough:
    """The ceiling's colorize step: the same pixel path without the network.  Luma is kept
    (mapped to tv range if the input is full range), chroma is neutral (128)."""
    stabilizer = None
    pin_memory = False

    def __init__(self, layout: FrameLayout):
        self.layout = layout
        full = layout.full_range_in
        self.lut = None if not full else gray_to_luma_lut(False)[luma_to_gray_lut(True)]

    def submit(self, y: torch.Tensor, out: torch.Tensor):
        Y = self.layout.height * self.layout.width
        o, yy = out.numpy(), y.numpy().reshape(y.shape[0], Y)
        if self.lut is None:
            o[:, :Y] = yy
        else:
            o[:, :Y] = self.lut[yy]
        o[:, Y:] = 128
        return None, None

    def close(self) -> None:
        pass


class _CallableStep:
    """A plain ``f(y uint8 (n, H, W), layout) -> uint8 (n, layout.frame_bytes)`` as a step."""
    stabilizer = None
    pin_memory = False

    def __init__(self, fn, layout: FrameLayout):
        self.fn, self.layout = fn, layout

    def submit(self, y, out):
        r = np.asarray(self.fn(y.numpy(), self.layout))
        if r.shape != tuple(out.shape) or r.dtype != np.uint8:
            raise RuntimeError(f"colorize_batch returned {r.dtype} {r.shape}, expected uint8 {tuple(out.shape)}")
        out.numpy()[...] = r
        return None, None

    def close(self) -> None:
        getattr(self.fn, "close", lambda: None)()


PASSTHROUGH = "passthrough"


def make_step(colorize_batch, layout: FrameLayout, runner=None, *, size=None, stabilize=True, lookahead=None):
    """The colorize step for one film: ``None`` (the model, ``FrameColorizer``),
    ``PASSTHROUGH`` (no network: the ceiling), an object with ``submit``, or a callable."""
    if colorize_batch is None:
        if runner is None:
            raise TintError("colorize_video needs a runner or a colorize_batch")
        return FrameColorizer(runner, layout, size=size, stabilize=stabilize, lookahead=lookahead)
    if isinstance(colorize_batch, str):
        if colorize_batch != PASSTHROUGH:
            raise ValueError(f"unknown colorize_batch {colorize_batch!r}")
        return Passthrough(layout)
    if hasattr(colorize_batch, "submit"):
        return colorize_batch
    return _CallableStep(colorize_batch, layout)


IN_BUFFERS, OUT_BUFFERS = 5, 4    # batches of luma / of planes in flight (>= 2 per stage boundary)
_POOLS: dict = {}                   # (shape, pinned) -> idle buffers, most recent last
_POOLS_LOCK = threading.Lock()


def _pool_tensor(shape, pinned: bool) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.uint8, pin_memory=pinned)


def acquire_buffers(shape, count: int, pinned: bool) -> list[torch.Tensor]:
    """``count`` host buffers of one shape, reused across films: pinning hundreds of MB
    costs tens of ms, which would be paid again by every film of a folder."""
    key = (tuple(shape), bool(pinned))
    with _POOLS_LOCK:
        have = _POOLS.pop(key, [])
    while len(have) < count:
        have.append(_pool_tensor(shape, pinned))
    return have[:count]


def release_buffers(buffers: list[torch.Tensor], pinned: bool) -> None:
    if not buffers:
        return
    key = (tuple(buffers[0].shape), bool(pinned))
    with _POOLS_LOCK:
        _POOLS[key] = buffers
        while len(_POOLS) > 4:                          # idle memory stays bounded
            _POOLS.pop(next(iter(_POOLS)))


def warm_up(runner, layout: FrameLayout, batch: int, size: int | None = None) -> None:
    """Run the device path once per batch size a film will use (full batches and a short
    last one), so CUDA graphs, cuDNN plans and the pinned buffers exist before a clock
    starts (the bench calls this)."""
    step = FrameColorizer(runner, layout, size=size, stabilize=False)
    ins = acquire_buffers((batch, layout.height, layout.width), IN_BUFFERS, step.pin_memory)
    outs = acquire_buffers((batch, layout.frame_bytes), OUT_BUFFERS, step.pin_memory)
    try:
        for n in sorted({batch, *(1 << k for k in range(batch.bit_length()) if 1 << k < batch)}):
            done = step.submit(ins[0][:n], outs[0][:n])[0]
            if done is not None:
                done.synchronize()
    finally:
        release_buffers(ins, step.pin_memory)
        release_buffers(outs, step.pin_memory)
