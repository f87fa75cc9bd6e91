"""``tint video`` throughput against its own decode+encode ceiling, at 1080p and 4K.

    python scripts/bench_video.py [--weights W.safetensors] [--seconds 16] [--sizes 1080p,4k]
                                  [--presets medium,veryfast]

One run does, for each size:
  1. make a gray test clip: ``--seconds`` of the sample film (from --start), upscaled,
     converted to gray, x264 CRF 18, with the film's audio copied (as a real job has);
  2. a warm-up of the device path (CUDA graphs, cuDNN plans, pinned buffers), untimed;
  3. for each x264 preset: the ceiling, ``colorize_video(colorize_batch=PASSTHROUGH)``:
     the very same decode thread, luma copy, buffers, yuv420p planes, encoder settings,
     segments and final remux, no network (luma kept, chroma neutral); then the full run
     with the model (stabilized, the default), then ``--no-stabilize``.
It prints a table (frames/s, ratio to the ceiling, x real time for 24 fps film) and
writes JSON to --json or $OUT/bench_video.json.  Needs PyAV (``pip install av``, or a wheel
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
    from tint.media.video.formats import gray_to_luma_lut
    tv = gray_to_luma_lut(False)
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
                y = tv[g]                                  # gray -> tv-range luma, chroma neutral
                nf = av.VideoFrame.from_ndarray(np.concatenate([y, np.full((H // 2, W), 128, np.uint8)]),
                                                format="yuv420p")
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
    from tint.core.model import Colorizer, ColorizerConfig
    from tint.core.weights import save_weights
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
    ap.add_argument("--presets", default="medium,veryfast", help="x264 presets, each with its own ceiling")
    ap.add_argument("--seconds", type=float, default=16.0)
    ap.add_argument("--start", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--no-stabilize-runs", dest="nostab", action="store_false",
                    help="skip the --no-stabilize runs (faster)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--workdir", type=Path, default=None, help="where clips and outputs go (default: a temp dir)")
    args = ap.parse_args(argv)

    import av
    import tint
    from tint.media.video.step import PASSTHROUGH, warm_up
    from tint.media.video.pipeline import colorize_video
    from tint.media.video.decode import open_input
    from tint.media.video.encode import output_spec

    t_start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory()
    work = args.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    weights = args.weights or random_weights(work / "random.safetensors", args.backbone)
    runner = tint.load(weights, device=args.device)
    dev = runner.device
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    info = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "av": av.__version__, "cpus": os.cpu_count(),
            "weights": str(args.weights or f"random {args.backbone}"), "precision": runner.precision,
            "working_size": args.size or runner.size, "batch": args.batch, "presets": presets,
            "encoder": {p: output_spec(Path("x.mp4"), preset=p).as_dict() for p in presets},
            "seconds": args.seconds, "pixel_path": "Y plane in, yuv420p planes out (no swscale)"}
    print(json.dumps(info), flush=True)
    results = []
    for name in args.sizes.split(","):
        W, H = SIZES[name.strip().lower()]
        clip = work / f"gray_{name}.mp4"
        frames, t_make = timed(lambda: make_clip(args.video, clip, (W, H), args.seconds, args.start))
        print(f"{name}: {frames} frames {W}x{H} made in {t_make:.1f} s", flush=True)
        inp = open_input(clip)
        layout = inp.layout("libx264")
        inp.close()
        warm_up(runner, layout, args.batch, args.size)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        for preset in presets:
            def run(out, **kw):
                return colorize_video(clip, work / out, overwrite=True, batch=args.batch, progress=False,
                                      size=args.size, preset=preset, **kw)
            ceiling, t_ceil = timed(lambda: run("ceiling.mp4", colorize_batch=PASSTHROUGH))
            assert ceiling.frames == frames, (ceiling.frames, frames)
            row = {"size": name, "width": W, "height": H, "frames": frames, "preset": preset,
                   "ceiling": {"seconds": t_ceil, "fps": frames / t_ceil, "x_realtime_24fps": frames / t_ceil / 24}}
            labels = (("full", True), ("full_no_stabilize", False)) if args.nostab else (("full", True),)
            for label, stab in labels:
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                rep, t = timed(lambda: run(f"{label}.mp4", runner=runner, stabilize=stab))
                assert rep.frames == frames, (rep.frames, frames)
                row[label] = {"seconds": t, "fps": frames / t, "ratio_to_ceiling": t_ceil / t,
                              "x_realtime_24fps": frames / t / 24.0, "scene_cuts": rep.scene_cuts}
                if dev.type == "cuda":
                    row[label]["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
            results.append(row)
            f = row["full"]
            ns = row.get("full_no_stabilize")
            print(f"{name} {preset}: ceiling {row['ceiling']['fps']:.1f} fps | full {f['fps']:.1f} fps "
                  f"({f['ratio_to_ceiling']:.0%}, {f['x_realtime_24fps']:.2f}x real time)"
                  + (f" | no-stabilize {ns['fps']:.1f} fps ({ns['ratio_to_ceiling']:.0%})" if ns else ""), flush=True)
        for p in (clip, work / "ceiling.mp4", work / "full.mp4", work / "full_no_stabilize.mp4"):
            p.unlink(missing_ok=True)
    print()
    print("| clip | preset | ceiling fps | full fps | ratio | x real time (24 fps) | no-stab fps | no-stab ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ns = r.get("full_no_stabilize") or {}
        print(f"| {r['size']} | {r['preset']} | {r['ceiling']['fps']:.1f} | {r['full']['fps']:.1f} | "
              f"{r['full']['ratio_to_ceiling']:.0%} | {r['full']['x_realtime_24fps']:.1f}x | "
              f"{ns.get('fps', float('nan')):.1f} | {ns.get('ratio_to_ceiling', float('nan')):.0%} |")
    info["total_seconds"] = time.perf_counter() - t_start
    print(f"total {info['total_seconds']:.0f} s", flush=True)
    out = args.json or (Path(os.environ["OUT"]) / "bench_video.json" if os.environ.get("OUT") else None)
    if out:
        out.write_text(json.dumps({"info": info, "results": results}, indent=1))
        print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
