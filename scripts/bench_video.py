"""``tint video`` throughput against its own decode+encode ceiling, at 1080p and 4K.

    python scripts/bench_video.py [--weights W.safetensors] [--seconds 10] [--sizes 1080p,4k]

One run does, for each size:
  1. make a gray test clip: ``--seconds`` of the sample film (from --start), upscaled,
     converted to gray, x264 CRF 18, with the film's audio copied (as a real job has);
  2. ceiling: ``tint.video.colorize_video`` with ``colorize_batch`` = identity: the very
     same decode thread, queues, encoder settings, segments and final remux, no network;
  3. full: ``colorize_video`` with the model (stabilized, the default), then
     ``--no-stabilize``; a warm-up batch first so one-time CUDA/engine set-up is not timed.
It prints frames/s, the ratio to the ceiling and "x real time" for 24 fps film, and writes
JSON to --json or $OUT/bench_video.json.  Needs PyAV (``pip install av``, or a wheel
installed with ``pip --target DIR`` and DIR on PYTHONPATH).  Without --weights the model
is a random-weight VGG16 (the default architecture): speed does not depend on the values.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "video" / "big_buck_bunny_640x360_60s.mp4"
SIZES = {"240p": (424, 240), "720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}


def make_clip(src: Path, dst: Path, size: tuple[int, int], seconds: float, start: float) -> int:
    """Upscaled gray copy of part of ``src`` with its audio; returns the frame count."""
    import av
    import cv2
    W, H = size
    n = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vs = inp.streams.video[0]
        v = out.add_stream("libx264", rate=vs.average_rate)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.time_base = v.codec_context.time_base = vs.time_base
        v.options = {"crf": "18", "preset": "veryfast"}
        audio = {s.index: out.add_stream_from_template(s) for s in inp.streams.audio}
        t0, t1 = start, start + seconds
        for pkt in inp.demux():
            if not pkt.size or pkt.pts is None:
                continue
            t = float(pkt.pts * pkt.time_base)
            if pkt.stream.type == "audio":
                if t0 <= t < t1:
                    pkt.stream = audio[pkt.stream.index]
                    out.mux(pkt)
                continue
            if pkt.stream.index != vs.index:
                continue
            for f in pkt.decode():
                tf = float(f.pts * vs.time_base)
                if not t0 <= tf < t1:
                    continue
                g = cv2.resize(f.to_ndarray(format="gray"), (W, H), interpolation=cv2.INTER_CUBIC)
                nf = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.repeat(g[:, :, None], 3, 2)), format="rgb24")
                nf.pts, nf.time_base = f.pts, vs.time_base
                out.mux(v.encode(nf))
                n += 1
            if float(pkt.pts * pkt.time_base) > t1 + 1:
                break
        out.mux(v.encode(None))
    return n


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def random_weights(path: Path, backbone: str) -> Path:
    from tint.model import Colorizer, ColorizerConfig
    from tint.weights import save_weights
    torch.manual_seed(0)
    return save_weights(Colorizer(ColorizerConfig(backbone=backbone)).eval(), path, meta={"note": "random, for speed"})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--backbone", default="vgg16", help="architecture of the random model without --weights")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=None, help="working size (default: the model's)")
    ap.add_argument("--sizes", default="1080p,4k")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--start", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--workdir", type=Path, default=None, help="where clips and outputs go (default: a temp dir)")
    args = ap.parse_args(argv)

    import av
    import tint
    from tint.video import colorize_frames, colorize_video, make_colorize_batch, output_spec

    tmp = tempfile.TemporaryDirectory()
    work = args.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    weights = args.weights or random_weights(work / "random.safetensors", args.backbone)
    runner = tint.load(weights, device=args.device)
    dev = runner.device
    info = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "av": av.__version__, "cpus": os.cpu_count(),
            "weights": str(args.weights or f"random {args.backbone}"), "precision": runner.precision,
            "working_size": args.size or runner.size, "batch": args.batch,
            "encoder": output_spec(Path("x.mp4")).as_dict(), "seconds": args.seconds}
    print(json.dumps(info), flush=True)
    results = []
    for name in args.sizes.split(","):
        W, H = SIZES[name.strip().lower()]
        clip = work / f"gray_{name}.mp4"
        frames, t_make = timed(lambda: make_clip(args.video, clip, (W, H), args.seconds, args.start))
        print(f"{name}: {frames} frames {W}x{H} made in {t_make:.1f} s", flush=True)

        def run(out, **kw):
            return colorize_video(clip, work / out, overwrite=True, batch=args.batch, progress=False,
                                  size=args.size, **kw)
        ceiling, t_ceil = timed(lambda: run("ceiling.mp4", colorize_batch=lambda f: f))
        warm = np.zeros((args.batch, H, W, 3), np.uint8)             # CUDA context, engine, cuDNN plans
        colorize_frames(runner, warm, size=args.size)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        rows = {"size": name, "width": W, "height": H, "frames": frames,
                "ceiling": {"seconds": t_ceil, "fps": frames / t_ceil}}
        for label, stab in (("full", True), ("full_no_stabilize", False)):
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            rep, t = timed(lambda: run(f"{label}.mp4", colorize_batch=make_colorize_batch(
                runner, size=args.size, stabilize=stab)))
            assert rep.frames == frames, (rep.frames, frames)
            rows[label] = {"seconds": t, "fps": frames / t, "ratio_to_ceiling": t_ceil / t,
                           "x_realtime_24fps": frames / t / 24.0}
            if dev.type == "cuda":
                rows[label]["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
        rows["ceiling"]["x_realtime_24fps"] = rows["ceiling"]["fps"] / 24.0
        results.append(rows)
        print(f"{name}: ceiling {rows['ceiling']['fps']:.1f} fps | full {rows['full']['fps']:.1f} fps "
              f"({rows['full']['ratio_to_ceiling']:.0%} of ceiling, {rows['full']['x_realtime_24fps']:.2f}x "
              f"real time) | no-stabilize {rows['full_no_stabilize']['fps']:.1f} fps", flush=True)
        for p in (clip, work / "ceiling.mp4", work / "full.mp4", work / "full_no_stabilize.mp4"):
            p.unlink(missing_ok=True)
    out = args.json or (Path(os.environ["OUT"]) / "bench_video.json" if os.environ.get("OUT") else None)
    if out:
        out.write_text(json.dumps({"info": info, "results": results}, indent=1))
        print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
