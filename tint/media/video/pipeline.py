"""``colorize_video``: decode thread -> colorize step -> encode thread, in segments, resumable."""
from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ...core.errors import TintError
from .decode import VideoInput, decoded, luma_into, open_input
from .encode import OutputSpec, output_spec
from .formats import FrameLayout, _log
from .remux import assemble
from .resume import SEGMENT_SECONDS, SegmentWriter, WorkDir
from .step import IN_BUFFERS, OUT_BUFFERS, acquire_buffers, make_step, release_buffers


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
    from ..stabilize import LOOKAHEAD, MEMORY
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
    averages too (default ``tint.media.stabilize.LOOKAHEAD``; 0: causal, as the camera).
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
