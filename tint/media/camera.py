"""``tint camera``: colorize a live source, newest frame first.

    capture thread (cv2.VideoCapture) ──> 1-slot buffer: a newer frame replaces a stale one
    main thread: newest frame ──> Runner.colorize_frames (the pixel pipeline, stabilized) ──> window / file

The capture thread never waits for the colorizer, so latency stays one frame deep however
slow the network is; frames the colorizer cannot keep up with are dropped, and counted.
A video file works as a live source (read at its own frame rate), which is how headless
machines and the tests run it.  Latency is measured in-process, from the moment a frame
left ``cap.read()`` to the moment its colorized version was shown or written.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..core.errors import TintError


WINDOW = "tint camera (q to quit)"


def import_cv2():
    try:
        import cv2
    except ImportError:
        raise TintError('the camera needs OpenCV: pip install "tint[video]"') from None
    return cv2


class LatestFrame:
    """A one-slot buffer: ``put`` overwrites, ``get`` waits for a frame newer than the last
    one taken.  ``dropped`` counts frames overwritten before anyone took them."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._seq = 0
        self._taken = 0
        self.closed = False
        self.dropped = 0

    def put(self, frame, t: float) -> None:
        with self._cond:
            if self._seq > self._taken:
                self.dropped += 1
            self._seq += 1
            self._item = (frame, t)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def get(self, timeout: float = 5.0):
        """(frame, capture time) or None once the source has ended and nothing new is left."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > self._taken or self.closed, timeout):
                return None
            if self._seq == self._taken:
                return None
            self._taken = self._seq
            return self._item


def parse_source(source: str):
    """'0' -> camera index 0; anything else: a URL or file path."""
    return int(source) if source.strip().isdigit() else source


class Capture:
    """cv2.VideoCapture on its own thread, feeding a ``LatestFrame``.

    ``pace``: read at the source's frame rate (files: behave like a camera)."""

    def __init__(self, source, pace: bool):
        cv2 = import_cv2()
        if isinstance(source, str) and not source.startswith(("rtsp:", "http:", "https:", "udp:", "tcp:")):
            if not Path(source).is_file():
                raise TintError(f"{source}: no such file (and not a camera index or URL)")
        self.cap = cv2.VideoCapture(source)
        if not self.cap.isOpened():
            raise TintError(f"cannot open video source {source!r}")
        ok, first = self.cap.read()
        if not ok or first is None:
            self.cap.release()
            raise TintError(f"video source {source!r} gives no frames")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 30.0
        self.size = (first.shape[1], first.shape[0])
        self.pace = pace
        self.buffer = LatestFrame()
        self.frames = 0
        self._first = first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tint-capture", daemon=True)

    def start(self) -> "Capture":
        self._thread.start()
        return self

    def _run(self):
        frame, t0, n = self._first, time.perf_counter(), 0
        try:
            while not self._stop.is_set():
                if self.pace:                          # a file: release frames on its clock
                    delay = t0 + n / self.fps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                self.buffer.put(frame, time.perf_counter())
                self.frames += 1
                n += 1
                ok, frame = self.cap.read()
                if not ok or frame is None:
                    break
        finally:
            self.buffer.close()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.cap.release()


class Recorder:
    """Colorized frames -> a video file with their capture times as timestamps (so the
    file plays at the speed things happened, dropped frames included), written to a
    ``.part`` name and renamed when closed."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, quality: int | None = None):
        from .video.formats import import_av
        from .video.encode import output_spec
        av = import_av()
        self.path = Path(path)
        spec = output_spec(self.path, None, quality)
        self.tmp = self.path.parent / f".{self.path.name}.part"
        self.container = av.open(str(self.tmp), "w", format=spec.format)
        self.stream = self.container.add_stream(spec.codec, rate=Fraction(round(fps * 1000), 1000))
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p" if size[0] % 2 == 0 and size[1] % 2 == 0 else "yuv444p"
        self.tb = Fraction(1, 1000)
        self.stream.time_base = self.tb
        self.stream.codec_context.time_base = self.tb
        self.stream.options = {k: v for k, v in spec.options.items() if k != "qscale"}
        self._av = av
        self._t0 = None
        self._last = -1

    def write(self, rgb: np.ndarray, t: float) -> None:
        if self._t0 is None:
            self._t0 = t
        pts = max(self._last + 1, int(round((t - self._t0) * 1000)))
        self._last = pts
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, self.tb
        self.container.mux(self.stream.encode(frame))

    def close(self, keep: bool = True) -> None:
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()
        if keep and self._t0 is not None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


@dataclass
class CameraStats:
    frames: int = 0                      # colorized and shown/written
    captured: int = 0
    dropped: int = 0                     # stale frames replaced before the colorizer took them
    seconds: float = 0.0
    fps: float = 0.0                     # sustained: frames / seconds
    latency_ms: list = field(default_factory=list)

    def summary(self) -> str:
        lat = np.asarray(self.latency_ms) if self.latency_ms else np.zeros(1)
        return (f"{self.frames} frames in {self.seconds:.1f} s: {self.fps:.1f} frames/s sustained, "
                f"{self.captured} captured, {self.dropped} dropped as stale; latency capture->"
                f"output mean {lat.mean():.0f} ms, p50 {np.percentile(lat, 50):.0f} ms, "
                f"p95 {np.percentile(lat, 95):.0f} ms")


def overlay(left: np.ndarray, right: np.ndarray, fps: float, latency_ms: float) -> np.ndarray:
    """Input and output side by side (BGR) with the current FPS and latency written on it."""
    cv2 = import_cv2()
    view = np.hstack((left, right))
    text = f"{fps:5.1f} fps  {latency_ms:4.0f} ms"
    for color, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(view, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, width, cv2.LINE_AA)
    return view


def camera_loop(runner, source, *, output: Path | None = None, headless: bool = False,
                frames: int | None = None, size: int | None = None, stabilize: bool = True,
                pace: bool | None = None, quality: int | None = None) -> CameraStats:
    """Run the live loop until the source ends, ``frames`` are done, or q/ESC is pressed."""
    cv2 = import_cv2()
    from .stabilize import ChromaStabilizer
    src = parse_source(str(source))
    cap = Capture(src, pace=not isinstance(src, int) and "://" not in str(src) if pace is None else pace)
    stabilizer = ChromaStabilizer() if stabilize else None
    rec = Recorder(output, cap.size, cap.fps, quality) if output else None
    stats = CameraStats()
    ok = False
    cap.start()
    t_start = t_fps = time.perf_counter()
    fps_now, n_fps = 0.0, 0
    try:
        while frames is None or stats.frames < frames:
            item = cap.buffer.get(timeout=10.0)
            if item is None:
                break
            bgr, t_cap = item
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            out = runner.colorize_frames(rgb[None], size, stabilizer=stabilizer)[0]
            if rec is not None:
                rec.write(out, t_cap)
            latency = (time.perf_counter() - t_cap) * 1000
            if not headless:
                cv2.imshow(WINDOW, overlay(bgr, cv2.cvtColor(out, cv2.COLOR_RGB2BGR), fps_now, latency))
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
                latency = (time.perf_counter() - t_cap) * 1000
            stats.latency_ms.append(latency)
            stats.frames += 1
            n_fps += 1
            now = time.perf_counter()
            if now - t_fps >= 1.0:
                fps_now, n_fps, t_fps = n_fps / (now - t_fps), 0, now
        ok = True
    finally:
        cap.stop()
        if rec is not None:
            rec.close(keep=ok)
        if not headless:
            cv2.destroyAllWindows()
    stats.seconds = time.perf_counter() - t_start
    stats.fps = stats.frames / stats.seconds if stats.seconds > 0 else 0.0
    stats.captured, stats.dropped = cap.frames, cap.buffer.dropped
    return stats
