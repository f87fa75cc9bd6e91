"""``tint video``: colorize a film; frame count, timestamps, audio and subtitles kept.

    decode thread: luma (Y plane) of each frame -> pinned batch buffers
      -> device thread: async H2D, LUT -> L, network, temporal filter (flow, running means over
         the last and next frames: output lags 24 frames), join, -> yuv420p planes (CodeHold on
         Cb/Cr), async D2H into pinned buffers (one CUDA stream, no host sync)
      -> encode thread: planes straight into the encoder -> closed segments in a work dir
    at the end: segments + the input's audio/subtitle packets, remuxed (no re-encode) ──> OUT

No swscale anywhere on the common path: a gray film's luma *is* its lightness (one
256-entry table, range-aware), and the output leaves the device as limited-range Y'CbCr
(BT.709 for HD/4K, BT.601 for SD) with the stream tagged to match.  Frames stay in memory
from decoder to encoder; host buffers circulate through free lists, which bound memory.
Every output frame carries its input frame's pts in the input's time base, so variable
frame rate survives.  The video is encoded in segments of about ``segment_seconds``, each
one a complete file that starts with a keyframe and is renamed into place only once
finished; a killed job restarted with ``--resume`` keeps the finished segments and seeks
to the first unfinished frame.

The colorize step is swappable (``colorize_batch``): ``FrameColorizer`` (default),
``PASSTHROUGH`` (the bench's ceiling: same path, no network) or a plain function
``f(luma uint8 (B, H, W), layout) -> packed planes uint8 (B, layout.frame_bytes)``.
``colorize_frames`` (RGB in, RGB out) remains the reference and the camera's path.

Folders shard across processes: ``torchrun --nproc_per_node=N -m tint.video IN_DIR -o OUT_DIR``
gives film i to rank i mod N on cuda:LOCAL_RANK.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import TintError
from .weights import atomic_write

SEGMENT_SECONDS = 10.0
STATE_VERSION = 1
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                  ".mts", ".m2ts", ".wmv", ".flv", ".ogv", ".3gp", ".dv", ".mxf", ".y4m")

# output extension -> (FFmpeg muxer, video encoders in order of preference, audio fallback encoders)
CONTAINERS = {
    ".mp4":  ("mp4", ("libx264", "mpeg4"), ("aac",)),
    ".m4v":  ("mp4", ("libx264", "mpeg4"), ("aac",)),
    ".mov":  ("mov", ("libx264", "mpeg4"), ("aac",)),
    ".mkv":  ("matroska", ("libx264", "mpeg4"), ("aac",)),
    ".webm": ("webm", ("libvpx-vp9",), ("libopus", "opus")),
}
# what each container can hold, for PyAV builds without OutputContainer.supported_codecs
_FALLBACK_SUPPORT = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus", "mov_text", "h264", "hevc", "mpeg4", "vp9", "av1"},
    "mov": {"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus", "pcm_s16le", "pcm_s24le", "mov_text",
            "h264", "hevc", "mpeg4", "vp9", "av1", "prores"},
    "matroska": {"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus", "vorbis", "pcm_s16le", "pcm_s24le",
                 "dts", "truehd", "subrip", "ass", "ssa", "webvtt", "dvd_subtitle", "hdmv_pgs_subtitle",
                 "h264", "hevc", "mpeg4", "vp9", "av1", "ffv1"},
    "webm": {"opus", "vorbis", "webvtt", "vp8", "vp9", "av1"},
}
# encoder -> (option holding the quality, default quality, fixed options)
ENCODERS = {
    # no B-frames: dts == pts, so segments concatenate with monotonic dts by construction
    "libx264": ("crf", 20, {"bf": "0", "preset": "medium"}),
    "libx265": ("crf", 24, {"x265-params": "bframes=0:log-level=error", "preset": "medium"}),
    "libvpx-vp9": ("crf", 32, {"b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}),
    "mpeg4": ("qscale", 3, {}),
    "ffv1": (None, None, {}),
}
# encoders that take x264-style speed presets (``--preset``)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")


def import_av():
    """PyAV, or a one-line error naming the extra to install."""
    try:
        import av
    except ImportError:
        raise TintError('video needs PyAV, which is not installed: pip install "tint[video]"') from None
    return av


def _log(msg: str) -> None:
    print(f"tint video: {msg}", file=sys.stderr, flush=True)


def _av_reason(e: BaseException) -> str:
    """FFmpeg errors carry the path and errno in their str(); keep the reason only."""
    s = getattr(e, "strerror", None) or str(e)
    return s.splitlines()[0] if s else type(e).__name__


# ----------------------------------------------------------------------------- pixel formats
# 8-bit formats whose first plane is the full-size luma: the decoder's Y is taken as is.
Y_PLANE_FORMATS = frozenset({
    "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p",
    "yuv411p", "yuvj411p", "yuv410p", "yuva420p", "yuva422p", "yuva444p", "nv12", "nv21", "nv16",
    "gray"})
# Kr, Kb of the Y'CbCr matrices (ITU-R BT.709 / BT.601)
YUV_MATRICES = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}
# FFmpeg's AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic codes for each:
# BT.709 = 1, 1, 1; BT.601 (525-line, SMPTE 170M) = 6, 6, 6.  Range: 1 = MPEG ("tv", limited).
COLOR_TAGS = {"bt709": (1, 1, 1), "bt601": (6, 6, 6)}
RANGE_MPEG, RANGE_JPEG = 1, 2


def full_range_luma(pix_fmt: str | None, color_range) -> bool:
    """True when 8-bit luma spans 0..255 (JPEG / "pc" range), False for 16..235 (MPEG / "tv").
    Unspecified range means tv, as FFmpeg assumes, except for the yuvj* and gray formats."""
    r = int(color_range or 0)
    if r in (RANGE_MPEG, RANGE_JPEG):
        return r == RANGE_JPEG
    return bool(pix_fmt) and (pix_fmt.startswith("yuvj") or pix_fmt == "gray")


def luma_to_gray_lut(full_range: bool) -> np.ndarray:
    """(256,) uint8: luma code -> full-range gray, as swscale converts it (tv range:
    round((Y - 16) * 255 / 219), clipped; the tests check all 256 codes against swscale)."""
    v = np.arange(256, dtype=np.float64)
    if full_range:
        return v.astype(np.uint8)
    return np.clip(np.floor((v - 16.0) * 255.0 / 219.0 + 0.5), 0, 255).astype(np.uint8)


def gray_to_luma_lut(full_range: bool) -> np.ndarray:
    """(256,) uint8: full-range gray -> luma code of the given range (the inverse mapping)."""
    v = np.arange(256, dtype=np.float64)
    return v.astype(np.uint8) if full_range else np.floor(16.0 + v * 219.0 / 255.0 + 0.5).astype(np.uint8)


def lightness_lut(full_range: bool, device="cpu") -> torch.Tensor:
    """(256,) float32: luma code -> L in [0, 100], by the very ops ``Runner.colorize_tensor``
    runs on a gray uint8 pixel, so a gray film's L is the rgb24 path's (where swscale
    rounds the same way)."""
    from .color import gray_to_lightness
    g = torch.from_numpy(luma_to_gray_lut(full_range)).float().view(1, 1, 256) / 255.0
    return gray_to_lightness(g).view(256).to(device).contiguous()


def output_matrix(width: int, height: int) -> str:
    """BT.709 for HD and larger, BT.601 for SD: what players assume for untagged video,
    so the tags we write agree with the guess of players that ignore them."""
    return "bt709" if height >= 720 or width >= 1280 else "bt601"


def rgb_to_yuv(rgb: torch.Tensor, matrix: str = "bt709", subsample: bool = True) -> torch.Tensor:
    """uint8 sRGB (B, H, W, 3), any device -> limited-range Y'CbCr planes, packed per frame:
    (B, H*W + 2 * (H/2)*(W/2)) for yuv420p (``subsample``, H and W even), else (B, 3*H*W)
    for yuv444p; each plane row-major, Y then Cb then Cr.

        Y  = 16 + 219 E_y,   E_y = Kr R + Kg G + Kb B              (R, G, B in [0, 1])
        Cb = 128 + 224 (B - E_y) / (2 (1 - Kb)),   Cr = 128 + 224 (R - E_y) / (2 (1 - Kr))

    4:2:0 chroma is that of the 2x2 mean of RGB (the same as the mean of the chroma: it is
    linear).  Reference: swscale (``VideoFrame.reformat``), compared in tests/test_video.py.
    """
    if rgb.dim() != 4 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
        raise ValueError(f"expected uint8 (B, H, W, 3), got {rgb.dtype} {tuple(rgb.shape)}")
    kr, kb = YUV_MATRICES[matrix]
    kg = 1.0 - kr - kb
    B, H, W, _ = rgb.shape
    x = rgb.permute(0, 3, 1, 2).float()                                  # (B, 3, H, W) in [0, 255]

    def luma(t):
        return kr * t[:, 0] + kg * t[:, 1] + kb * t[:, 2]
    y = luma(x) * (219.0 / 255.0) + 16.0
    if subsample:
        if H % 2 or W % 2:
            raise ValueError(f"4:2:0 needs even sides, got {W}x{H}")
        x = F.avg_pool2d(x, 2)
    ey = luma(x)
    cb = (x[:, 2] - ey) * (224.0 / 255.0 / (2.0 * (1.0 - kb))) + 128.0
    cr = (x[:, 0] - ey) * (224.0 / 255.0 / (2.0 * (1.0 - kr))) + 128.0
    return torch.cat([p.round_().clamp_(0, 255).to(torch.uint8).reshape(B, -1) for p in (y, cb, cr)], 1)


@dataclass(frozen=True)
class FrameLayout:
    """What flows through the pipeline for one film: luma in, packed Y'CbCr planes out."""
    width: int
    height: int
    pix_fmt: str                     # output: "yuv420p", or "yuv444p" when a side is odd
    matrix: str                      # output matrix, "bt709" | "bt601"
    full_range_in: bool              # input luma codes span 0..255 (else 16..235)

    @property
    def planes(self) -> list[tuple[int, int]]:
        H, W = self.height, self.width
        c = (H // 2, W // 2) if self.pix_fmt == "yuv420p" else (H, W)
        return [(H, W), c, c]

    @property
    def frame_bytes(self) -> int:
        return sum(h * w for h, w in self.planes)

    def split(self, packed: np.ndarray) -> list[np.ndarray]:
        """One frame's packed planes (frame_bytes,) -> [Y, Cb, Cr] 2-D views."""
        out, o = [], 0
        for h, w in self.planes:
            out.append(packed[o:o + h * w].reshape(h, w))
            o += h * w
        return out


# ----------------------------------------------------------------------------- the colorize step
@torch.no_grad()
def colorize_frames(runner, frames: np.ndarray, *, size: int | None = None, stabilizer=None) -> np.ndarray:
    """Colorize B consecutive frames: uint8 (B, H, W, 3) RGB (or gray in all 3) -> uint8 (B, H, W, 3).

    The same building blocks as ``Runner.colorize_tensor`` (lightness, working size,
    ``Runner.chroma``, ``join_chroma``), with the stabilizer, if any, applied to the
    working-size chroma on the same device.
    """
    from .api import join_chroma, resize_lightness
    from .color import rgb_to_lightness
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (B, H, W, 3), got {frames.dtype} {frames.shape}")
    H, W = frames.shape[1:3]
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(runner.device)
    L = rgb_to_lightness(x.permute(0, 3, 1, 2).float() / 255.0)                   # (B, 1, H, W)
    L_work = resize_lightness(L, runner.working_shape(H, W, size))                 # (B, 1, h, w)
    ab = runner.chroma(L_work)
    if stabilizer is not None:
        ab = stabilizer(ab, L_work.to(ab.device))
    ab = ab * runner.saturation if runner.saturation != 1.0 else ab               # colourfulness
    rgb = join_chroma(L, ab.to(L.device))                                          # (B, 3, H, W)
    return (rgb * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class FrameColorizer:
    """The default colorize step of ``tint video``: luma codes in, Y'CbCr planes out.

    ``submit(y, out)``: y uint8 (n, H, W) host luma (pinned on CUDA), out uint8
    (n, layout.frame_bytes) host (pinned on CUDA).  On the device, in order on one stream:

        y -> L = LUT[y] (full res) -> L at the working size -> network -> temporal filter
          -> join with L (``kernels.join_u8``: the pixels of ``Runner.colorize_tensor``)
          -> ``rgb_to_yuv`` -> async copy into ``out``

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
        from .stabilize import LOOKAHEAD, ChromaSmoother, ChromaStabilizer, CodeHold
        self.runner, self.layout = runner, layout
        self.device = runner.device
        self.cuda = self.device.type == "cuda"
        self.pin_memory = self.cuda
        self.shape = runner.working_shape(layout.height, layout.width, size)
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
        from . import kernels as K
        if L is None:
            L = self.lut[y.int()].unsqueeze(1)                               # (n, 1, H, W) [0, 100]
        if self.runner.saturation != 1.0:                                    # colourfulness
            ab = ab * self.runner.saturation
        rgb = K.join_u8(L, ab.to(L.device))                                  # (n, H, W, 3) uint8
        planes = rgb_to_yuv(rgb, self.layout.matrix, self.layout.pix_fmt == "yuv420p")
        if self.hold is not None:
            Y = self.layout.width * self.layout.height
            planes[:, Y:] = self.hold(planes[:, Y:])
        return planes

    @torch.no_grad()
    def _device(self, y: torch.Tensor) -> torch.Tensor | None:
        """Packed planes of the frames done now, (m, frame_bytes), or None if none is."""
        from .api import resize_lightness
        L = self.lut[y.int()].unsqueeze(1)                                   # (n, 1, H, W) [0, 100]
        L_work = resize_lightness(L, self.shape)
        ab = self.runner.chroma(L_work)
        if self.lookahead:
            ab, ys = self.stabilizer.push(ab, L_work.to(ab.device), y if self.cuda else y.clone())
            return None if ab is None else self._planes(torch.stack(ys), ab)
        if self.stabilizer is not None:
            ab = self.stabilizer(ab, L_work.to(ab.device))
        return self._planes(y, ab, L)

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
            return self._out(self._planes(torch.stack(ys), ab), out)

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


# ----------------------------------------------------------------------------- input
@dataclass
class VideoInput:
    path: Path
    container: object
    stream: object                   # the first video stream
    time_base: Fraction
    rate: Fraction                   # nominal frame rate (average, else guessed, else 24)
    frames: int                      # estimate for the progress bar (0: unknown)
    width: int
    height: int
    full_range: bool = False         # luma codes span 0..255 (else 16..235)

    def close(self):
        self.container.close()

    def layout(self, codec: str) -> FrameLayout:
        """The pipeline's frame layout for this film and the output encoder."""
        even = self.width % 2 == 0 and self.height % 2 == 0
        if not even and codec == "mpeg4":
            raise TintError(f"{self.width}x{self.height} has an odd side; mpeg4 needs even sizes (use --codec libx264)")
        return FrameLayout(self.width, self.height, "yuv420p" if even else "yuv444p",
                           output_matrix(self.width, self.height), self.full_range)


def open_input(path) -> VideoInput:
    """Open a film and check it has a decodable video stream; one-line TintError if not."""
    av = import_av()
    path = Path(path)
    if not path.exists():
        raise TintError(f"{path}: no such file")
    if path.is_dir():
        raise TintError(f"{path}: is a folder (give -o a folder too to colorize every film in it)")
    if path.stat().st_size == 0:
        raise TintError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise TintError(f"{path}: not a readable video ({_av_reason(e)}; truncated, or not a film?)") from None
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["nothing"]
            raise TintError(f"{path}: no video stream (it holds {', '.join(kinds)})")
        vs = container.streams.video[0]
        cc = vs.codec_context
        if cc is None or not vs.codec_context.name or not _has_codec(av, cc.name, "r"):
            name = getattr(getattr(vs, "codec", None), "name", None) or "unknown"
            raise TintError(f"{path}: video codec {name!r} cannot be decoded by this FFmpeg build")
        if not vs.width or not vs.height:
            raise TintError(f"{path}: video stream has no frame size (damaged header?)")
        vs.thread_type = "AUTO"
        rate = vs.average_rate or getattr(vs, "guessed_rate", None) or Fraction(24)
        tb = vs.time_base or Fraction(1, 90000)
        frames = int(vs.frames or 0)
        if not frames and vs.duration:
            frames = int(round(float(vs.duration * tb * rate)))
        elif not frames and container.duration:
            frames = int(round(container.duration / 1e6 * float(rate)))
        full = full_range_luma(getattr(cc, "pix_fmt", None), getattr(cc, "color_range", 0))
        return VideoInput(path, container, vs, Fraction(tb), Fraction(rate), frames, vs.width, vs.height, full)
    except BaseException:
        container.close()
        raise


def _has_codec(av, name: str, mode: str) -> bool:
    """Whether this FFmpeg build has the decoder (mode "r") or encoder ("w") ``name``."""
    try:
        av.codec.Codec(name, mode)
        return True
    except Exception:
        return False


@dataclass
class Frame:
    y: np.ndarray                    # (H, W) uint8 luma codes, in VideoInput.full_range's range
    pts: int                         # in VideoInput.time_base


def luma_into(frame, dst: np.ndarray, full_range: bool) -> None:
    """Copy a decoded frame's luma into ``dst`` (H, W) uint8, as codes of ``full_range``.

    The usual case (8-bit planar YUV of the film's size and range) is one copy of the Y
    plane, row stride honoured: no swscale, no colour conversion.  Anything else (10-bit,
    RGB, palette, another size or range mid-stream) goes through swscale to full-range
    gray and, for a tv-range film, back to tv codes."""
    H, W = dst.shape
    fmt = frame.format.name
    if (fmt in Y_PLANE_FORMATS and frame.width == W and frame.height == H
            and full_range_luma(fmt, frame.color_range) == full_range):
        p = frame.planes[0]
        src = np.frombuffer(p, np.uint8, count=p.line_size * H).reshape(H, p.line_size)
        np.copyto(dst, src[:, :W])
        return
    if frame.width != W or frame.height != H:
        frame = frame.reformat(width=W, height=H)
    g = frame.to_ndarray(format="gray")
    np.copyto(dst, g if full_range else gray_to_luma_lut(False)[g])


def decode_frames(inp: VideoInput, after_pts: int | None = None, warn=_log):
    """Yield ``Frame``s (luma and pts) in presentation order, after ``after_pts`` only."""
    for frame, pts in decoded(inp, after_pts, warn):
        y = np.empty((inp.height, inp.width), np.uint8)
        luma_into(frame, y, inp.full_range)
        yield Frame(y, pts)


def decoded(inp: VideoInput, after_pts: int | None = None, warn=_log):
    """Yield (av frame, pts) in presentation order, those after ``after_pts`` only (resume).

    Missing pts are filled in from the frame rate; frames whose pts does not increase are
    dropped (a muxer would reject them).  A read or decode error ends the stream with a
    warning: a truncated film yields what could be decoded.
    """
    av = import_av()
    vs = inp.stream
    frames = _raw_frames(inp, warn)
    if after_pts is not None:
        try:
            inp.container.seek(after_pts, stream=vs, backward=True, any_frame=False)
            frames = _raw_frames(inp, warn)
            first = next(frames, None)
            if first is None or not first[2] or first[1] > after_pts:
                raise EOFError      # no timestamps, or the demuxer landed past the point
            frames = _chain(first, frames)
        except (av.error.FFmpegError, EOFError):
            frames.close()
            inp.container.seek(0, stream=vs, backward=True, any_frame=False)
            frames = _raw_frames(inp, warn)                 # decode from the start instead
    last, dropped = None, 0
    for frame, pts, _ in frames:
        if after_pts is not None and pts <= after_pts:     # done by an earlier run
            continue
        if last is not None and pts <= last:
            dropped += 1
            continue
        last = pts
        yield frame, pts
    if dropped:
        warn(f"{inp.path.name}: dropped {dropped} frame(s) whose timestamp did not increase")


def _chain(first, rest):
    yield first
    yield from rest


def _raw_frames(inp: VideoInput, warn):
    """(av frame, pts, pts came from the file) until the end or the first error."""
    av = import_av()
    step = max(1, int(round(1 / (inp.rate * inp.time_base))))
    last = None
    try:
        for frame in inp.container.decode(inp.stream):
            real = frame.pts is not None
            pts = frame.pts if real else (0 if last is None else last + step)
            last = pts
            yield frame, pts, real
    except (av.error.FFmpegError, EOFError) as e:
        warn(f"{inp.path.name}: input ends early ({_av_reason(e)}); keeping the frames decoded so far")


# ----------------------------------------------------------------------------- output settings
@dataclass
class OutputSpec:
    format: str                      # FFmpeg muxer
    codec: str                       # video encoder
    options: dict                    # encoder options (quality included)
    audio_fallback: tuple

    def as_dict(self):
        return {"format": self.format, "codec": self.codec, "options": self.options}


def output_spec(out: Path, codec: str | None = None, quality: int | None = None,
                preset: str | None = None) -> OutputSpec:
    av = import_av()
    suffix = out.suffix.lower()
    if suffix not in CONTAINERS:
        raise TintError(f"{out}: unsupported output type {suffix or '(none)'!r}; use one of "
                        f"{', '.join(CONTAINERS)}")
    fmt, preferred, audio = CONTAINERS[suffix]
    if codec is None:
        codec = next((c for c in preferred if _has_codec(av, c, "w")), None)
        if codec is None:
            raise TintError(f"this FFmpeg build has none of the encoders {', '.join(preferred)} for {suffix}")
    elif not _has_codec(av, codec, "w"):
        raise TintError(f"video encoder {codec!r} is not in this FFmpeg build")
    key, default_q, fixed = ENCODERS.get(codec, (None, None, {}))
    options = dict(fixed)
    if quality is not None and key is None:
        raise TintError(f"--quality has no meaning for {codec}")
    if key is not None:
        q = default_q if quality is None else int(quality)
        if q < 0:
            raise TintError(f"--quality must be >= 0, got {q}")
        options[key] = str(q)
    if preset is not None:
        if "preset" not in options:
            raise TintError(f"--preset has no meaning for {codec} (it is for libx264 / libx265)")
        if preset not in X264_PRESETS:
            raise TintError(f"unknown --preset {preset!r}; use one of {', '.join(X264_PRESETS)}")
        options["preset"] = preset
    return OutputSpec(fmt, codec, options, audio)


def _supported(av_container, fmt: str) -> set:
    got = getattr(av_container, "supported_codecs", None)
    return set(got) if got else _FALLBACK_SUPPORT.get(fmt, set())


def _encoder_time_base(codec: str, tb: Fraction, rate: Fraction) -> Fraction:
    """MPEG-4 part 2 cannot take a time base denominator above 65535."""
    if codec == "mpeg4" and tb.denominator > 65535:
        return Fraction(1, min(65535, max(1, int(round(rate * 100)))))
    return tb


class _VideoEncoder:
    """One output file of video only: packed Y'CbCr frames with pts in ``tb`` in, packets
    muxed.  The planes go to the encoder as they are (no swscale); the stream is tagged
    with the range and matrix they were made with."""

    def __init__(self, path, spec: OutputSpec, inp: VideoInput, layout: FrameLayout):
        av = import_av()
        self.container = av.open(str(path), "w", format=spec.format,
                                 options=_muxer_options(spec.format, inp.time_base))
        self.tb = inp.time_base
        self.enc_tb = _encoder_time_base(spec.codec, inp.time_base, inp.rate)
        self.layout = layout
        s = self.container.add_stream(spec.codec, rate=inp.rate)
        s.width, s.height = layout.width, layout.height
        s.pix_fmt = layout.pix_fmt
        s.time_base = self.enc_tb
        cc = s.codec_context
        cc.time_base = self.enc_tb
        self.tags = COLOR_TAGS[layout.matrix]
        cc.color_range = RANGE_MPEG
        cc.colorspace, cc.color_primaries, cc.color_trc = self.tags
        sar = inp.stream.sample_aspect_ratio
        if sar:
            cc.sample_aspect_ratio = sar
        opts = dict(spec.options)
        if "qscale" in opts:                          # mpeg4: fixed quantizer, like ffmpeg -q:v
            q = int(opts.pop("qscale"))
            cc.qscale = True
            cc.global_quality = q * 118  # FF_QP2LAMBDA
        s.options = opts
        s.thread_type = "AUTO"                        # frame + slice threads, one per core
        self.stream = s
        self._av = av
        self.last_pts = None

    def encode(self, packed: np.ndarray, pts: int):
        L = self.layout
        frame = self._av.VideoFrame(L.width, L.height, L.pix_fmt)
        for plane, src in zip(frame.planes, L.split(packed)):
            h, w = src.shape
            dst = np.frombuffer(plane, np.uint8, count=plane.line_size * h).reshape(h, plane.line_size)
            np.copyto(dst[:, :w], src)
        frame.color_range = RANGE_MPEG
        frame.colorspace, frame.color_primaries, frame.color_trc = self.tags
        if self.enc_tb != self.tb:
            pts = int(round(pts * self.tb / self.enc_tb))
            if self.last_pts is not None and pts <= self.last_pts:
                pts = self.last_pts + 1
        self.last_pts = pts
        frame.pts = pts
        frame.time_base = self.enc_tb
        self.container.mux(self.stream.encode(frame))

    def close(self):
        self.container.mux(self.stream.encode(None))
        self.container.close()


def _muxer_options(fmt: str, tb: Fraction) -> dict:
    if fmt in ("mp4", "mov"):
        # a movie time scale equal to the video's keeps a non-zero start time exact
        return {"movie_timescale": str(min(tb.denominator, 2 ** 31 - 1))}
    return {}


# ----------------------------------------------------------------------------- work dir / resume
class WorkDir:
    """Finished segments and a manifest, next to OUT: ``.OUT.tint-work/``.

    A segment file is complete when it is listed in ``state.json``: it is encoded under a
    ``.part`` name, renamed, and only then recorded (both steps atomic).
    """

    def __init__(self, out: Path):
        self.out = out
        self.path = out.parent / f".{out.name}.tint-work"
        self.state_path = self.path / "state.json"
        self.state: dict = {}

    def exists(self) -> bool:
        return self.state_path.is_file()

    def start(self, key: dict) -> None:
        self.remove()
        self.path.mkdir(parents=True)
        self.state = {"version": STATE_VERSION, "key": key, "segments": [], "complete": False}
        self.save()

    def load(self, key: dict) -> None:
        try:
            self.state = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as e:
            raise TintError(f"{self.path}: unreadable resume state ({e}); use --overwrite to start over") from None
        if self.state.get("version") != STATE_VERSION or self.state.get("key") != key:
            raise TintError(f"{self.path} was made from another input or other settings; "
                            "use --overwrite to start over")
        listed = {s["file"] for s in self.state["segments"]}
        for p in self.path.iterdir():                 # a half-written segment from the killed run
            if p.name != "state.json" and p.name not in listed:
                p.unlink()
        for s in self.state["segments"]:
            if not (self.path / s["file"]).is_file():
                raise TintError(f"{self.path}: segment {s['file']} is missing; use --overwrite to start over")

    def save(self) -> None:
        text = json.dumps(self.state, indent=1)
        atomic_write(self.state_path, lambda tmp: Path(tmp).write_text(text))

    def add_segment(self, record: dict) -> None:
        self.state["segments"].append(record)
        self.save()

    def remove(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)

    @property
    def frames_done(self) -> int:
        return sum(s["frames"] for s in self.state.get("segments", []))


class SegmentWriter:
    """Cuts the colorized stream into closed files of about ``seconds`` each."""

    def __init__(self, work: WorkDir, spec: OutputSpec, inp: VideoInput, seconds: float,
                 on_segment: Callable[[int], None] | None = None, layout: FrameLayout | None = None):
        self.work, self.spec, self.inp = work, spec, inp
        self.layout = layout or inp.layout(spec.codec)
        self.ticks = max(1, int(seconds / inp.time_base))
        self.index = len(work.state["segments"])
        self.ext = "." + {"matroska": "mkv"}.get(spec.format, spec.format)
        self.enc: _VideoEncoder | None = None
        self.on_segment = on_segment

    def write(self, packed: np.ndarray, pts: int) -> None:
        if self.enc is not None and pts - self.first >= self.ticks:
            self.close_segment()
        if self.enc is None:
            self.name = f"seg_{self.index:05d}{self.ext}"
            self.tmp = self.work.path / (self.name + ".part")
            self.enc = _VideoEncoder(self.tmp, self.spec, self.inp, self.layout)
            self.first, self.count = pts, 0
        self.enc.encode(packed, pts)
        self.last, self.count = pts, self.count + 1

    def close_segment(self) -> None:
        if self.enc is None:
            return
        self.enc.close()
        self.enc = None
        os.replace(self.tmp, self.work.path / self.name)
        self.work.add_segment({"file": self.name, "frames": self.count,
                               "first_pts": self.first, "last_pts": self.last})
        self.index += 1
        if self.on_segment is not None:
            self.on_segment(self.index)

    def abort(self) -> None:
        if self.enc is not None:
            try:
                self.enc.container.close()
            except Exception:
                pass
            self.enc = None
            Path(self.tmp).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- final remux
def assemble(work: WorkDir, src: Path, dst: Path, spec: OutputSpec, warn=_log) -> dict:
    """Concatenate the segments' video packets and copy the input's audio and subtitle
    packets untouched into ``dst`` (atomically).  Audio the container cannot hold is
    re-encoded (and said so); subtitles it cannot hold are dropped (and said so)."""
    av = import_av()
    segs = [work.path / s["file"] for s in work.state["segments"]]
    if not segs:
        raise TintError(f"{src}: no video frame could be decoded")
    summary = {"audio_copied": 0, "audio_reencoded": 0, "subtitles_copied": 0, "dropped": 0}

    def write(tmp):
        inp = av.open(str(src), "r")
        out = av.open(str(tmp), "w", format=spec.format,
                      options=_movflags(spec.format) | _muxer_options(spec.format, _seg_tb(segs[0])))
        try:
            first = av.open(str(segs[0]), "r")
            vout = out.add_stream_from_template(first.streams.video[0])
            first.close()
            # the input's frame rate as the container's (Matroska read a segment's 1/1000 s
            # time base back as 1000 fps; timestamps were right either way)
            vin = inp.streams.video[0]
            rate = vin.average_rate or getattr(vin, "guessed_rate", None)
            if rate:
                vout.codec_context.framerate = rate
            supported = _supported(out, spec.format)
            copies, transcoders = {}, {}
            for s in inp.streams:
                if s.type not in ("audio", "subtitle"):
                    if s.type != "video" or s.index != inp.streams.video[0].index:
                        warn(f"{src.name}: {s.type} stream #{s.index} ({_codec_name(s)}) not carried over")
                        summary["dropped"] += 1
                    continue
                name = _codec_name(s)
                if name in supported and _copy_ok(av, spec.format, src, s.index):
                    copies[s.index] = out.add_stream_from_template(s)
                    summary["audio_copied" if s.type == "audio" else "subtitles_copied"] += 1
                elif s.type == "audio":
                    transcoders[s.index] = _AudioTranscoder(av, out, s, spec.audio_fallback)
                    warn(f"{src.name}: audio stream #{s.index} ({name}) cannot go into "
                         f"{dst.suffix}; re-encoding it to {transcoders[s.index].codec}")
                    summary["audio_reencoded"] += 1
                else:
                    warn(f"{src.name}: subtitle stream #{s.index} ({name}) cannot go into "
                         f"{dst.suffix}; dropped (use .mkv to keep it)")
                    summary["dropped"] += 1
            streams = [inp.streams[i] for i in (*copies, *transcoders)]
            last_dts: dict = {}
            for pkt, ostream in _interleave(_segment_packets(av, segs, vout),
                                            _input_packets(av, inp, streams, copies, transcoders, warn)):
                if ostream is None:                   # already encoded and muxed by a transcoder
                    continue
                _fix_dts(pkt, ostream, last_dts)
                pkt.stream = ostream
                out.mux(pkt)
            for t in transcoders.values():
                t.flush()
        finally:
            out.close()
            inp.close()
    atomic_write(dst, write)
    return summary


def _copy_ok(av, fmt: str, src: Path, index: int, scan: int = 2000) -> bool:
    """Can stream ``index`` of ``src`` be copied into a ``fmt`` file?  Tried for real with
    its first packet in memory: the codec list alone misses cases such as PCM without a
    channel layout in MP4."""
    import io
    try:
        with av.open(str(src), "r") as probe:
            s = probe.streams[index]
            pkt = None
            for i, p in enumerate(probe.demux(s)):
                if p.size:
                    pkt = p
                    break
                if i >= scan:
                    break
            out = av.open(io.BytesIO(), "w", format=fmt)
            try:
                o = out.add_stream_from_template(s)
                if pkt is not None:
                    pkt.stream = o
                    out.mux(pkt)
            finally:
                out.close()
        return True
    except (av.error.FFmpegError, ValueError, EOFError):
        return False


def _movflags(fmt: str) -> dict:
    # moov at the front: the file plays while it downloads
    return {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}


def _seg_tb(seg: Path) -> Fraction:
    av = import_av()
    with av.open(str(seg), "r") as c:
        return Fraction(c.streams.video[0].time_base)


def _codec_name(s) -> str:
    """The codec's canonical name (``mp3``, ``subrip``), not its decoder's (``mp3float``, ``srt``)."""
    cc = getattr(s, "codec_context", None)
    codec = getattr(cc, "codec", None) if cc is not None else None
    return (getattr(codec, "canonical_name", None) or getattr(codec, "name", None)
            or (cc.name if cc is not None else None) or "unknown")


def _time(pkt) -> float:
    t = pkt.dts if pkt.dts is not None else pkt.pts
    return float(t * pkt.time_base) if t is not None and pkt.time_base else 0.0


def _segment_packets(av, segs, vout):
    for seg in segs:
        with av.open(str(seg), "r") as c:
            vs = c.streams.video[0]
            for pkt in c.demux(vs):
                if pkt.size:
                    yield _time(pkt), pkt, vout


def _input_packets(av, inp, streams, copies, transcoders, warn):
    if not streams:
        return
    packets = inp.demux(streams)
    while True:
        try:
            pkt = next(packets)
        except StopIteration:
            return
        except (av.error.FFmpegError, EOFError) as e:     # a truncated input: keep what was read
            warn(f"{Path(inp.name).name}: audio/subtitles end early ({_av_reason(e)})")
            return
        if not pkt.size:                                   # end-of-stream marker; flush() handles it
            continue
        i = pkt.stream.index
        if i in copies:
            yield _time(pkt), pkt, copies[i]
        else:
            transcoders[i].feed(pkt)
            yield _time(pkt), pkt, None


def _interleave(a, b):
    """Merge two time-ordered (time, packet, stream) iterators, earliest first."""
    import heapq
    for t, pkt, stream in heapq.merge(a, b, key=lambda x: x[0]):
        yield pkt, stream


def _fix_dts(pkt, ostream, last: dict) -> None:
    """Guard against a non-increasing dts (broken inputs): the muxer would refuse it."""
    if pkt.dts is None or pkt.time_base is None:
        return
    prev = last.get(ostream.index)
    if prev is not None and pkt.dts * pkt.time_base <= prev:
        new = int(prev / pkt.time_base) + 1
        if pkt.pts is not None and new > pkt.pts:
            pkt.pts = new
        pkt.dts = new
    last[ostream.index] = pkt.dts * pkt.time_base


class _AudioTranscoder:
    """Decode one audio stream and encode it with the container's fallback codec."""

    def __init__(self, av, out, s, candidates):
        codec = next((c for c in candidates if _has_codec(av, c, "w")), None)
        if codec is None:
            raise TintError(f"audio stream #{s.index} ({_codec_name(s)}) needs re-encoding but "
                            f"this FFmpeg build has none of {', '.join(candidates)}")
        self.codec = codec
        rate = s.codec_context.sample_rate or 48000
        if codec in ("libopus", "opus"):
            rate = 48000
        self.stream = out.add_stream(codec, rate=rate)
        self.stream.layout = "mono" if s.codec_context.channels == 1 else "stereo"
        self.stream.format = av.codec.Codec(codec, "w").audio_formats[0].name
        self.stream.bit_rate = 192_000 if codec == "aac" else 128_000
        self.out = out
        self.decoder = s.codec_context
        self.start: Fraction | None = None

    def feed(self, pkt):
        self._encode(self.decoder.decode(pkt))

    def flush(self):
        self._encode(self.decoder.decode(None))
        self._mux(self.stream.encode(None))

    def _encode(self, frames):
        for f in frames:
            if self.start is None:                    # the encoder counts from 0: keep the start time
                self.start = f.pts * f.time_base if f.pts is not None and f.time_base else Fraction(0)
            f.pts = None
            self._mux(self.stream.encode(f))

    def _mux(self, packets):
        for p in packets:
            shift = int(round((self.start or 0) / p.time_base)) if p.time_base else 0
            if p.pts is not None:
                p.pts += shift
            if p.dts is not None:
                p.dts += shift
            self.out.mux(p)


# ----------------------------------------------------------------------------- the pipeline
_END = object()


class _Pipe:
    """Bounded queues between threads; the first failure stops everyone."""

    def __init__(self):
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def fail(self, e: BaseException):
        if self.error is None:
            self.error = e
        self.stop.set()

    def put(self, q: queue.Queue, item) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def get(self, q: queue.Queue):
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                pass
        return _END

    def thread(self, fn, *args, name):
        def body():
            try:
                fn(*args)
            except BaseException as e:   # noqa: BLE001 -- handed to the main thread
                self.fail(e)
        t = threading.Thread(target=body, name=name, daemon=True)
        t.start()
        return t


@dataclass
class VideoReport:
    input: str
    output: str
    frames: int = 0                  # frames in the output
    frames_resumed: int = 0          # of which done by an earlier run
    seconds: float = 0.0             # wall time of this run
    fps: float = 0.0                 # frames colorized per second in this run
    segments: int = 0
    scene_cuts: int = 0
    streams: dict = field(default_factory=dict)


def temporal_key(stabilize: bool, lookahead: int | None) -> dict | bool:
    """The temporal filter's settings, as a ``--resume`` compares them."""
    from .stabilize import LOOKAHEAD, MEMORY
    if not stabilize:
        return False
    return {"memory": MEMORY, "lookahead": LOOKAHEAD if lookahead is None else int(lookahead)}


def colorize_video(src, dst, *, runner=None, colorize_batch=None,
                   size: int | None = None, quality: int | None = None, codec: str | None = None,
                   preset: str | None = None, batch: int = 8, resume: bool = False, overwrite: bool = False,
                   stabilize: bool = True, lookahead: int | None = None,
                   segment_seconds: float = SEGMENT_SECONDS,
                   progress: bool = True, on_segment: Callable[[int], None] | None = None,
                   settings_key: dict | None = None) -> VideoReport:
    """Colorize the film ``src`` into ``dst``.  See the module docstring for the flow.

    ``stabilize``: the temporal filter (default on); ``lookahead``: frames of the future it
    averages too (default ``tint.stabilize.LOOKAHEAD``; 0: causal, as the camera).
    ``colorize_batch``: None (``runner``'s model with the stabilizer: ``FrameColorizer``),
    ``PASSTHROUGH`` (no network: the bench's ceiling), an object with ``submit`` like
    ``FrameColorizer``, or a plain function ``f(y uint8 (B, H, W), layout) -> uint8
    (B, layout.frame_bytes)`` (packed Y'CbCr planes, see ``FrameLayout``).
    ``on_segment(n)`` is called after each finished segment (tests use it to interrupt a
    job).  Returns a ``VideoReport``.
    """
    src, dst = Path(src), Path(dst)
    if batch < 1:
        raise TintError(f"--batch must be at least 1, got {batch}")
    if segment_seconds <= 0:
        raise TintError(f"segment length must be positive, got {segment_seconds}")
    spec = output_spec(dst, codec, quality, preset)
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        raise TintError(f"{dst}: output would overwrite the input")
    work = WorkDir(dst)
    if dst.exists() and not overwrite:
        if resume:
            _log(f"{dst}: already finished")
            return VideoReport(str(src), str(dst))
        raise TintError(f"{dst} exists (use --overwrite to replace it)")
    if not dst.parent.is_dir():
        raise TintError(f"{dst.parent}: output folder does not exist")

    inp = open_input(src)
    t0 = time.perf_counter()
    step = None
    fresh = False                    # this run made the work dir (so a failure may remove it)
    try:
        layout = inp.layout(spec.codec)
        st = src.stat()
        key = {"input": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
               "output": spec.as_dict(), "segment_seconds": segment_seconds,
               "stabilize": temporal_key(stabilize, lookahead), "size_option": size, **(settings_key or {})}
        if runner is not None:
            key["weights"] = str(Path(runner.weights_path).resolve())
            if runner.saturation != 1.0:     # a resumed job keeps its colourfulness
                key["saturation"] = runner.saturation
        if work.exists() and resume:
            work.load(key)
            _log(f"resuming {src.name}: {len(work.state['segments'])} segment(s), "
                 f"{work.frames_done} frame(s) already done")
        elif work.exists() and not overwrite:
            raise TintError(f"{work.path} holds an unfinished job: --resume continues it, "
                            "--overwrite starts over")
        else:
            work.start(key)
            fresh = True
        step = make_step(colorize_batch, layout, runner, size=size, stabilize=stabilize, lookahead=lookahead)
        done_before = work.frames_done
        n = 0
        if not work.state["complete"]:
            n = _run_pipeline(inp, work, spec, step, layout, batch, segment_seconds, progress, on_segment)
            work.state["complete"] = True
            work.save()
    except BaseException:
        if fresh and not work.state.get("segments"):
            work.remove()            # nothing finished to resume: leave no work folder behind
        raise
    finally:
        inp.close()
        if step is not None and colorize_batch is None:
            step.close()
    if not work.state["segments"]:
        work.remove()
        raise TintError(f"{src}: no video frame could be decoded (damaged file?)")
    streams = assemble(work, src, dst, spec)
    report = VideoReport(str(src), str(dst), frames=work.frames_done, frames_resumed=done_before,
                         seconds=time.perf_counter() - t0, segments=len(work.state["segments"]),
                         streams=streams)
    report.fps = n / report.seconds if report.seconds > 0 else 0.0
    stab = getattr(step, "stabilizer", None)
    report.scene_cuts = stab.cuts if stab is not None else 0
    work.remove()
    return report


def _run_pipeline(inp: VideoInput, work: WorkDir, spec: OutputSpec, step, layout: FrameLayout,
                  batch: int, segment_seconds: float, progress: bool, on_segment) -> int:
    """decode -> device -> encode, one thread each, handing over whole batches.

    Host buffers circulate through free lists (``IN_BUFFERS`` luma batches,
    ``OUT_BUFFERS`` plane batches), which bound memory and give back-pressure; a buffer
    goes back to the decoder only once the device has read it (an event), and back to the
    device thread once the encoder has copied its frames out.
    """
    segs = work.state["segments"]
    after = segs[-1]["last_pts"] if segs else None
    pipe = _Pipe()
    H, W = layout.height, layout.width
    pinned = bool(step.pin_memory)
    ins = acquire_buffers((batch, H, W), IN_BUFFERS, pinned)
    outs = acquire_buffers((batch, layout.frame_bytes), OUT_BUFFERS, pinned)
    free_in: queue.Queue = queue.Queue()
    free_out: queue.Queue = queue.Queue()
    for b in ins:
        free_in.put((b, None))
    for b in outs:
        free_out.put(b)
    q_dev: queue.Queue = queue.Queue()       # bounded by the buffers in circulation
    q_enc: queue.Queue = queue.Queue()
    writer = SegmentWriter(work, spec, inp, segment_seconds, on_segment, layout)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=inp.frames or None, initial=work.frames_done, unit="frame",
                   desc=inp.path.name[:30], dynamic_ncols=True, smoothing=0.1)

    def decode():
        q = q_dev
        buf = arr = None
        k, pts = 0, []
        for frame, p in decoded(inp, after_pts=after):
            if buf is None:
                got = pipe.get(free_in)
                if got is _END:
                    return
                buf, read = got
                if read is not None:
                    read.synchronize()              # the device has copied this buffer in
                arr, k, pts = buf.numpy(), 0, []
            luma_into(frame, arr[k], inp.full_range)
            pts.append(p)
            k += 1
            if k == batch:
                if not pipe.put(q, (buf, k, pts)):
                    return
                buf = None
        if buf is not None and k:
            pipe.put(q, (buf, k, pts))
        pipe.put(q, _END)

    def encode():
        while True:
            item = pipe.get(q_enc)
            if item is _END:
                break
            out, k, pts, done = item
            if done is not None:
                done.synchronize()
            arr = out.numpy()
            for i in range(k):
                writer.write(arr[i], pts[i])
            pipe.put(free_out, out)
            if bar is not None:
                bar.update(k)
        if not pipe.stop.is_set():
            writer.close_segment()

    held: collections.deque = collections.deque()     # pts of frames submitted, not yet handed out

    def emit(out, m, done) -> bool:
        """The step wrote its next m frames into ``out``: on to the encoder with their pts."""
        if m == 0:                                     # all held back (temporal lookahead)
            free_out.put(out)
            return True
        return pipe.put(q_enc, (out, m, [held.popleft() for _ in range(m)], done))

    threads = [pipe.thread(decode, name="tint-decode"), pipe.thread(encode, name="tint-encode")]
    n = 0
    try:
        while not pipe.stop.is_set():
            item = pipe.get(q_dev)
            if item is _END:
                break
            buf, k, pts = item
            out = pipe.get(free_out)
            if out is _END:
                break
            res = step.submit(buf[:k], out[:k])
            done, read, m = res if len(res) == 3 else (*res, k)     # (done, read): a step without lookahead
            free_in.put((buf, read))
            held.extend(pts)
            if not emit(out, m, done):
                break
            n += k
        while held and not pipe.stop.is_set():          # the frames a lookahead still holds
            out = pipe.get(free_out)
            if out is _END:
                break
            done, m = step.flush(out)
            if m == 0:
                raise RuntimeError(f"colorize step held {len(held)} frame(s) back and returned none at the end")
            if not emit(out, m, done):
                break
        if not pipe.stop.is_set():
            pipe.put(q_enc, _END)
        threads[1].join()
    except BaseException as e:
        pipe.fail(e)
    finally:
        for t in threads:
            t.join()
        if bar is not None:
            bar.close()
        if pipe.error is not None:
            writer.abort()
        if step.pin_memory and torch.cuda.is_available():
            torch.cuda.synchronize(getattr(step, "device", None))   # no copy may still target a pooled buffer
        release_buffers(ins, pinned)
        release_buffers(outs, pinned)
    if pipe.error is not None:
        raise pipe.error
    return n


# ----------------------------------------------------------------------------- CLI
def add_video_arguments(p) -> None:
    p.add_argument("input", help="a film, or a folder of films")
    p.add_argument("-o", "--output", required=True,
                   help="output file (.mp4 .mov .mkv .webm), or a folder when the input is one")
    p.add_argument("--quality", type=int, default=None,
                   help="encoder quality, lower is better: x264 CRF (default 20), VP9 CRF (32), mpeg4 q (3)")
    p.add_argument("--codec", default=None,
                   help="video encoder (default: libx264 for .mp4/.mov/.mkv, else mpeg4; libvpx-vp9 for .webm)")
    p.add_argument("--preset", default=None, choices=X264_PRESETS, metavar="PRESET",
                   help="x264/x265 speed preset (default medium; veryfast or ultrafast for 10x real "
                        "time at 1080p, at some cost in bits)")
    p.add_argument("--batch", type=int, default=None, help="frames per network call (default 8 on GPU, 4 on CPU)")
    p.add_argument("--resume", action="store_true", help="continue a killed job (keeps its finished segments)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (or unfinished job)")
    p.add_argument("--no-stabilize", dest="stabilize", action="store_false",
                   help="colorize each frame on its own (flickers more)")
    p.add_argument("--segment-seconds", type=float, default=SEGMENT_SECONDS,
                   help=f"length of the resumable pieces (default {SEGMENT_SECONDS:g} s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def shard() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    try:
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise TintError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise TintError(f"bad RANK={rank} / WORLD_SIZE={world}")
    return rank, world, local


def plan_jobs(src: Path, dst: Path, rank: int = 0, world: int = 1) -> list[tuple[Path, Path]]:
    """(input, output) pairs this process handles: one file, or its share of a folder."""
    if not src.is_dir():
        return [(src, dst)] if rank == 0 else []
    if dst.suffix.lower() in CONTAINERS:
        raise TintError(f"{src} is a folder: -o must be a folder too, not {dst}")
    films = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not films:
        raise TintError(f"{src}: no video files ({', '.join(VIDEO_SUFFIXES[:5])}, ...)")
    jobs = []
    for p in films[rank::world]:
        suffix = p.suffix.lower() if p.suffix.lower() in CONTAINERS else ".mkv"
        jobs.append((p, dst / (p.stem + suffix)))
    return jobs


def run_video(args) -> int:
    import_av()
    from .api import load
    src, dst = Path(args.input), Path(args.output)
    rank, world, local = shard()
    device = args.device
    if world > 1 and device == "auto" and torch.cuda.is_available():
        device = f"cuda:{local % torch.cuda.device_count()}"
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(src, dst, rank, world)
    if not jobs:
        return 0
    from .cli import load_options
    runner = load(args.weights, device=device, **load_options(args))
    batch = args.batch or (8 if runner.device.type == "cuda" else 4)
    failed = 0
    for film, out in jobs:
        try:
            r = colorize_video(film, out, runner=runner, size=args.size, quality=args.quality,
                               codec=args.codec, preset=args.preset, batch=batch, resume=args.resume,
                               overwrite=args.overwrite, stabilize=args.stabilize,
                               segment_seconds=args.segment_seconds,
                               progress=not args.quiet and rank == 0)
        except TintError as e:
            if len(jobs) == 1 and not src.is_dir():
                raise
            print(f"tint video: error: {e}", file=sys.stderr)
            failed += 1
            continue
        if r.frames:
            extra = f", {r.frames_resumed} from an earlier run" if r.frames_resumed else ""
            print(f"{out}: {r.frames} frames{extra}, {r.fps:.1f} frames/s, "
                  f"{r.scene_cuts} scene cut(s)", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    from .cli import main as cli_main
    return cli_main(["video", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
