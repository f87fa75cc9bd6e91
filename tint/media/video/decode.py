"""Opening a film and decoding its frames' luma into host buffers."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...core.errors import TintError
from .formats import (
    FrameLayout, Y_PLANE_FORMATS, _av_reason, _log, full_range_luma, gray_to_luma_lut, import_av,
    output_matrix)


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
