"""Flicker benchmark: gray clips made from colour footage, scored against that footage, in one run.

    python scripts/flicker_bench.py [--weights W.safetensors] [--device cpu] [--clips all|NAME,...]
                                    [--bbb-starts 4,13,...] [--variants default,off] [--json F]

Clips (320x180, 2.5 s at 24 fps unless told otherwise):

* the shared colour film (Big Buck Bunny, animation) at several segments, one of them
  across a scene cut (``bbb@22``: the cut at 23.04 s);
* synthetic camera moves over dev photos: a diagonal pan, a slow zoom, and a held still
  with fresh luma grain in every frame (the old-film case: the picture does not move, the
  grain does).

Each clip's colour frames are encoded exactly as ``tint video`` encodes its output (x264,
CRF 20, ``bf=0``), and that decoded file is the reference: the "real colour film".  Its
luma, with neutral chroma, is the black-and-white input.  Every variant runs the real
``tint video`` path (``colorize_video``: decode, working size, network, temporal filter,
join, Y'CbCr 4:2:0, x264) on that input, and its output file is decoded and scored:

* ``flicker``: static-pixel flicker (``flicker_eval.static_flicker``): mean |dCb| + |dCr|
  (8-bit codes) between consecutive frames over the pixels whose reference luma changes by
  less than 2 codes; ``ratio`` is ours over the reference's (target: at most 3).  Both
  files went through the same x264 settings once, from their own planes;
  ``flicker_pre_encode`` is the same measure on the planes handed to x264 (the reference's
  from swscale, ours from the colorize step), on the same pixels: what the filter controls,
  apart from what the encoder adds;
* ``chroma``: mean Lab chroma sqrt(a^2 + b^2) over the clip, as a fraction of the
  reference's (target: at least 60 %);
* ``E_warp``: Lai et al. 2018's warp error (flow from the reference, occlusions masked);
* ``PSNR`` (RGB, against the reference) and Hasler-Suesstrunk ``colourfulness``, per frame
  then averaged; ``dPSNR`` and ``dCF`` are against the per-frame colorization (variant
  ``off``), which must not lose PSNR.

The network runs once per clip: every variant replays the same chroma (a cache keyed by
the working-size lightness), so variants differ by their temporal filter only.  Prints one
table; writes JSON to --json or $OUT/flicker_bench.json.  About 6 minutes on 2 free CPU
cores, most of it the network (--cache keeps its chroma for the next run).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
DATA = Path(os.environ.get("TINT_DATA") or REPO.parent / "shared" / "data")     # video/ and dev/
FILM = DATA / "video" / "big_buck_bunny_640x360_60s.mp4"
DEV = DATA / "dev"
W, H, FPS = 320, 180, 24
BBB_STARTS = (4.0, 13.0, 17.0, 22.0, 30.0, 40.0, 50.0)
# synthetic clips: (name, photo, kind, amount)
SYNTHETIC = (("pan", "bsdstest_118015.jpg", "pan", (1.6, 0.4)),      # px per frame (x, y)
             ("zoom", "bsdstest_100099.jpg", "zoom", 1.25),          # scale reached at the end
             ("grain", "bsdstest_118031.jpg", "grain", 2.0))         # luma grain sigma, codes


@dataclass
class Clip:
    name: str
    frames: np.ndarray            # uint8 (T, H, W, 3) colour, before the reference encode


def bbb_clip(start: float, seconds: float) -> Clip:
    import cv2
    from flicker_eval import read_clip
    color, _ = read_clip(FILM, seconds, start)
    return Clip(f"bbb@{start:g}", np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in color]))


def synthetic_clip(name: str, photo: str, kind: str, amount, seconds: float) -> Clip:
    """A camera move over a still photo (bilinear resampling, like a real scan/pan)."""
    import cv2
    img = cv2.cvtColor(cv2.imread(str(DEV / photo)), cv2.COLOR_BGR2RGB)
    ih, iw = img.shape[:2]
    T = int(round(seconds * FPS))
    base = min(iw / W, ih / H) * 0.8                         # photo pixels per output pixel
    rng = np.random.default_rng(0)
    out = []
    for t in range(T):
        s, cx, cy = base, iw / 2, ih / 2
        if kind == "pan":
            cx += (t - T / 2) * amount[0] * base
            cy += (t - T / 2) * amount[1] * base
        elif kind == "zoom":
            s = base / (1 + (amount - 1) * t / max(T - 1, 1))
        m = np.float32([[s, 0, cx - s * W / 2], [0, s, cy - s * H / 2]])     # output -> photo
        f = cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
        if kind == "grain":                                  # the same offset on R, G, B: luma only
            g = cv2.GaussianBlur(rng.normal(0, 1, (H, W)).astype(np.float32), (0, 0), 0.7)
            g *= amount / g.std()
            f = np.clip(f.astype(np.float32) + g[..., None], 0, 255).round().astype(np.uint8)
        out.append(f)
    return Clip(name, np.stack(out))


# ----------------------------------------------------------------------------- files
def source_planes(frames: np.ndarray):
    """uint8 RGB (T, H, W, 3) -> (Y, Cb, Cr) planes exactly as ``encode`` hands them to x264."""
    import av
    p = np.stack([av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p").to_ndarray()
                  for f in frames])
    return split_planes(p.reshape(len(p), -1))


def split_planes(packed: np.ndarray):
    """Packed 4:2:0 frames (T, H * W * 3 / 2) -> (Y (T, H, W), Cb, Cr (T, H/2, W/2))."""
    T, c = len(packed), (H // 2) * (W // 2)
    return (packed[:, :H * W].reshape(T, H, W), packed[:, H * W:H * W + c].reshape(T, H // 2, W // 2),
            packed[:, H * W + c:].reshape(T, H // 2, W // 2))


def encode(frames_or_planes, path: Path, options: dict, gray: bool = False) -> None:
    """uint8 RGB (T, H, W, 3), or luma (T, H, W) when ``gray`` (neutral chroma), -> x264 file."""
    import av
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.options = options
        for i, f in enumerate(frames_or_planes):
            if gray:
                nf = av.VideoFrame.from_ndarray(np.concatenate([f, np.full((H // 2, W), 128, np.uint8)]),
                                                format="yuv420p")
            else:
                nf = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
            nf.pts, nf.time_base = i, Fraction(1, FPS)
            out.mux(v.encode(nf))
        out.mux(v.encode(None))


def decode(path: Path):
    """(Y (T, H, W), Cb, Cr (T, H/2, W/2), RGB (T, H, W, 3)) uint8, all frames of a 4:2:0 file."""
    import av
    ys, cbs, crs, rgbs = [], [], [], []
    with av.open(str(path)) as c:
        for f in c.decode(c.streams.video[0]):
            p = f.to_ndarray()                                 # yuv420p: (H * 3/2, W)
            ys.append(p[:H])
            cbs.append(p[H:H + H // 4].reshape(H // 2, W // 2))
            crs.append(p[H + H // 4:].reshape(H // 2, W // 2))
            rgbs.append(f.to_ndarray(format="rgb24"))
    return np.stack(ys), np.stack(cbs), np.stack(crs), np.stack(rgbs)


# ----------------------------------------------------------------------------- the network, once
class CachedRunner:
    """The runner's network, run once per distinct working-size lightness: every variant
    replays the same chroma, so they differ by the temporal filter alone.  Passes through
    what ``FrameColorizer`` uses of a runner (device, pipeline, chroma, model)."""

    def __init__(self, runner, cache_dir: Path | None = None):
        self.runner, self.device, self.size = runner, runner.device, runner.size
        self.model, self.weights_path = runner.model, runner.weights_path
        self.cache: dict = {}
        self.seconds = 0.0
        self.file = None
        if cache_dir is not None:                                 # survives runs: one file per weights
            digest = hashlib.sha1(Path(runner.weights_path).read_bytes()).hexdigest()[:16]
            self.file = Path(cache_dir) / f"chroma_{digest}_{runner.device.type}.pt"
            if self.file.is_file():
                self.cache = torch.load(self.file)

    def save(self) -> None:
        if self.file is not None:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.cache, self.file)

    def working_shape(self, *a):
        return self.runner.working_shape(*a)

    def __getattr__(self, name):                                  # anything else: the real runner
        return getattr(self.runner, name)

    def _key(self, tag, x):
        return tag, tuple(x.shape), hashlib.sha1(x.detach().float().cpu().numpy().tobytes()).hexdigest()

    def _cached(self, tag, x, fn):
        k = self._key(tag, x)
        if k not in self.cache:
            t = time.perf_counter()
            self.cache[k] = fn(x).cpu()
            self.seconds += time.perf_counter() - t
        return self.cache[k].to(x.device, copy=True)

    def chroma(self, L_work):
        return self._cached("chroma", L_work, self.runner.chroma)

    @property
    def pipeline(self):
        """The runner's pixel pipeline around the cached network (what ``FrameColorizer`` runs)."""
        return self.runner.pipeline.with_network(self.chroma)


class CachedMotion:
    """``tint.stabilize.motion`` computed once per clip for all variants (they see the same
    lightness): the flow is most of a filter's CPU time and the same for every setting."""

    def __init__(self):
        import tint.media.stabilize as S
        self.module, self.real, self.cache = S, S.motion, {}

    def __enter__(self):
        def cached(cur, prev, *a, **kw):
            k = (hashlib.sha1(cur.detach().cpu().numpy().tobytes() + prev.detach().cpu().numpy().tobytes()).hexdigest(),
                 a, tuple(sorted(kw.items())))
            if k not in self.cache:
                self.cache[k] = self.real(cur, prev, *a, **kw)
            m = self.cache[k]
            return type(m)(**{f: getattr(m, f).clone() for f in m.__dataclass_fields__})
        self.module.motion = cached
        return self

    def __exit__(self, *exc):
        self.module.motion = self.real
        self.cache.clear()


def variants() -> dict:
    """name -> f(runner, layout, size) -> a ``colorize_video`` step.  ``off`` is the
    per-frame colorization the others are compared with; ``causal`` is the camera's filter
    (no lookahead); ``default`` is what ``tint video`` runs."""
    from tint.media.video.step import FrameColorizer
    return {
        "off": lambda r, lay, size: FrameColorizer(r, lay, size=size, stabilize=False),
        "causal": lambda r, lay, size: FrameColorizer(r, lay, size=size, lookahead=0),
        "default": lambda r, lay, size: FrameColorizer(r, lay, size=size),
    }


class _Frozen:
    """Diagnostic variant ``frozen``: every frame gets the first frame's chroma (a perfect
    hold of a still shot): what the join, rounding and x264 leave of flicker on their own."""

    def __init__(self):
        self.first, self.cuts = None, 0

    def __call__(self, ab, L):
        if self.first is None:
            self.first = ab[:1].clone()
        return self.first.expand_as(ab).clone()


def custom_variant(name: str):
    """'m<memory>l<lookahead>[h<hold>][g<gain>]' (e.g. m64l24, m32l24h0, m32l24g1): the filter
    with other settings, for tuning (h: ``CodeHold`` threshold, default 1; h0: no hold;
    g: ``restore_chroma``'s max_gain, default ``tint.stabilize.MAX_GAIN``; g1: the plain
    vector mean, the filter before chroma restoration)."""
    import re
    from tint.media.stabilize import MAX_GAIN, ChromaSmoother, ChromaStabilizer, CodeHold
    from tint.media.video.step import FrameColorizer
    if name == "frozen":
        def frozen(r, lay, size):
            step = FrameColorizer(r, lay, size=size, lookahead=0)
            step.stabilizer = _Frozen()
            return step
        return frozen
    got = re.fullmatch(r"m(\d+)l(\d+)(?:h(\d+))?(?:g(\d+(?:\.\d+)?))?", name)
    if not got:
        return None
    memory, lookahead, hold = int(got[1]), int(got[2]), int(got[3] or 1)
    gain = MAX_GAIN if got[4] is None else float(got[4])

    def make(r, lay, size):
        step = FrameColorizer(r, lay, size=size, lookahead=lookahead)
        step.stabilizer = (ChromaSmoother(memory, lookahead, max_gain=gain) if lookahead
                           else ChromaStabilizer(memory, max_gain=gain))
        step.hold = CodeHold(hold) if hold else None
        return step
    return make


# ----------------------------------------------------------------------------- scoring
def score(out, ref, motion, per_frame=None) -> dict:
    from flicker_eval import static_flicker, warp_error
    from tint.core.color import rgb_to_lab
    from tint.training.evaluate import colorfulness, psnr
    y, cb, cr, rgb = out
    fl, static = static_flicker(y, cb, cr, mask_y=ref[0])

    def chroma(v):
        lab = rgb_to_lab(torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255)
        return float(lab[:, 1:].square().sum(1).sqrt().mean())
    r = {"flicker": fl, "static_fraction": static, "mean_chroma": chroma(rgb),
         "warp_error_lai": warp_error(rgb, motion)[0],
         "psnr": float(np.mean([psnr(o, t) for o, t in zip(rgb, ref[3])])),
         "colorfulness": float(np.mean([colorfulness(o) for o in rgb]))}
    return r


def prepare_clip(clip: Clip, work: Path, out_opts: dict):
    """The reference film of ``clip`` encoded like ``tint video``'s output, and the gray input
    made from it: (ref planes+rgb, gray_path, motion, layout, ref_flicker, static_fraction,
    ref_mean_chroma)."""
    from flicker_eval import flows, static_flicker
    from tint.core.color import rgb_to_lab
    from tint.media.video.decode import open_input
    ref_path, gray_path = work / f"{clip.name}_ref.mp4", work / f"{clip.name}_gray.mp4"
    encode(clip.frames, ref_path, out_opts)
    ref = decode(ref_path)
    encode(ref[0], gray_path, {"crf": "18", "preset": "veryfast", "bf": "0"}, gray=True)
    motion = flows(ref[3])
    inp = open_input(gray_path)
    layout = inp.layout("libx264")
    inp.close()
    ref_fl, static = static_flicker(*ref[:3])
    lab = rgb_to_lab(torch.from_numpy(ref[3]).permute(0, 3, 1, 2).float() / 255)
    return ref, gray_path, motion, layout, ref_fl, static, float(lab[:, 1:].square().sum(1).sqrt().mean())


def run_variant(make, runner, layout, args, gray_path: Path, out_path: Path, ref, motion, ref_flicker: float,
                ref_chroma: float) -> dict:
    """One variant on one clip: ``tint video`` on the gray input, the output decoded and scored."""
    from flicker_eval import static_flicker
    from tint.media.video.pipeline import colorize_video
    step = make(runner, layout, args.size)
    planes, make_planes = [], step._planes                      # record what goes to the encoder

    def recorded(*a, **kw):
        p = make_planes(*a, **kw)
        planes.append(p.clone())
        return p
    step._planes = recorded
    t = time.perf_counter()
    colorize_video(gray_path, out_path, colorize_batch=step, batch=args.batch, overwrite=True, progress=False)
    r = score(decode(out_path), ref, motion)
    r["flicker_pre_encode"] = static_flicker(*split_planes(torch.cat(planes).cpu().numpy()), mask_y=ref[0])[0]
    r["seconds"] = time.perf_counter() - t
    r["ratio"] = r["flicker"] / max(ref_flicker, 1e-9)
    r["chroma_kept"] = r["mean_chroma"] / max(ref_chroma, 1e-9)
    r["scene_cuts"] = getattr(getattr(step, "stabilizer", None), "cuts", 0)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None, help="default: the bundled model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=None, help="working size (default: the model's)")
    ap.add_argument("--batch", type=int, default=8, help="frames per batch (the GPU default)")
    ap.add_argument("--seconds", type=float, default=2.5)
    ap.add_argument("--bbb-starts", default=",".join(f"{s:g}" for s in BBB_STARTS),
                    help="film segments (seconds); '' for none")
    ap.add_argument("--synthetic", default=",".join(s[0] for s in SYNTHETIC), help="synthetic clips; '' for none")
    ap.add_argument("--variants", default=None,
                    help="comma-separated: off, causal, default, m<memory>l<lookahead>[h<hold>][g<gain>] such as "
                         "m64l24, m32l24h0 or m32l24g1, or frozen (the first frame's chroma throughout: the floor "
                         "of a still shot) (default: off,causal,default; 'off' is always run)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep the network's chroma in this folder between runs (for trying filters)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the clips and outputs in this folder")
    args = ap.parse_args(argv)

    import tint
    from flicker_eval import static_flicker, warp_error
    from tint.training.evaluate import colorfulness
    from tint.media.video.encode import output_spec
    if not FILM.is_file():
        print(f"flicker_bench: {FILM}: no such file", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    torch.manual_seed(0)
    runner = CachedRunner(tint.load(args.weights, device=args.device), args.cache)
    table = variants()
    names = list(table) if args.variants is None else ["off"] + [v for v in args.variants.split(",") if v and v != "off"]
    table.update({n: custom_variant(n) for n in names if n not in table and custom_variant(n)})
    unknown = [n for n in names if n not in table]
    if unknown:
        print(f"flicker_bench: unknown variant(s) {unknown}; known: {', '.join(table)}", file=sys.stderr)
        return 2
    tmp = tempfile.TemporaryDirectory()
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    out_opts = output_spec(Path("x.mp4")).options                  # what tint video writes

    clips = [bbb_clip(float(s), args.seconds) for s in args.bbb_starts.split(",") if s.strip()]
    wanted = [s for s in args.synthetic.split(",") if s.strip()]
    clips += [synthetic_clip(n, p, k, a, args.seconds) for n, p, k, a in SYNTHETIC if n in wanted]
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "tint", "scripts"],
                           capture_output=True, text=True).stdout.strip()
    meta = {"commit": os.environ.get("TINT_COMMIT") or git.stdout.strip() + ("-dirty" if dirty else ""), "weights": str(args.weights or "bundled tint-default"),
            "device": str(runner.device), "size": args.size or runner.size, "batch": args.batch,
            "seconds": args.seconds, "clip_size": f"{W}x{H}", "variants": names}
    results = {}
    for clip in clips:
        ref, gray_path, motion, layout, ref_fl, static, ref_chroma = prepare_clip(clip, work, out_opts)
        row = {"frames": int(len(ref[0])), "static_fraction": static,
               "reference": {"flicker": ref_fl,
                             "flicker_pre_encode": static_flicker(*source_planes(clip.frames), mask_y=ref[0])[0],
                             "mean_chroma": ref_chroma,
                             "warp_error_lai": warp_error(ref[3], motion)[0],
                             "colorfulness": float(np.mean([colorfulness(o) for o in ref[3]]))}}
        with CachedMotion():
            for name in names:
                row[name] = run_variant(table[name], runner, layout, args, gray_path, work / f"{clip.name}_{name}.mp4",
                                        ref, motion, ref_fl, row["reference"]["mean_chroma"])
        for name in names:
            row[name]["dpsnr"] = row[name]["psnr"] - row["off"]["psnr"]
            row[name]["dcolorfulness"] = row[name]["colorfulness"] - row["off"]["colorfulness"]
        results[clip.name] = row
        runner.save()
        print(f"{clip.name}: {len(ref[0])} frames, film flicker {ref_fl:.3f} on {static:.0%} static; "
              + "; ".join(f"{n} {row[n]['flicker']:.3f} ({row[n]['ratio']:.1f}x)" for n in names), file=sys.stderr, flush=True)

    print(f"\ncommit {meta['commit']}, weights {meta['weights']}, device {meta['device']}, working size "
          f"{meta['size']}, batch {args.batch}, {W}x{H} clips of {args.seconds:g} s\n")
    print("| clip | variant | film flicker | flicker | ratio | before x264: film / ours | chroma kept | E_warp (film) | E_warp | PSNR | dPSNR | colourfulness (dCF) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cname, row in results.items():
        ref = row["reference"]
        for name in names:
            r = row[name]
            print(f"| {cname} | {name} | {ref['flicker']:.3f} | {r['flicker']:.3f} | {r['ratio']:.2f}x | "
                  f"{ref['flicker_pre_encode']:.3f} / {r['flicker_pre_encode']:.3f} | {r['chroma_kept']:.0%} | {ref['warp_error_lai']:.5f} | {r['warp_error_lai']:.5f} | "
                  f"{r['psnr']:.2f} | {r['dpsnr']:+.2f} | {r['colorfulness']:.1f} ({r['dcolorfulness']:+.1f}) |")
    print()
    print("| variant | worst ratio | mean ratio | worst chroma kept | mean dPSNR | mean dCF |")
    print("|---|---:|---:|---:|---:|---:|")
    summary = {}
    for name in names:
        rs = [row[name] for row in results.values()]
        summary[name] = {"worst_ratio": max(r["ratio"] for r in rs), "mean_ratio": float(np.mean([r["ratio"] for r in rs])),
                         "worst_chroma_kept": min(r["chroma_kept"] for r in rs),
                         "mean_dpsnr": float(np.mean([r["dpsnr"] for r in rs])),
                         "mean_dcolorfulness": float(np.mean([r["dcolorfulness"] for r in rs]))}
        s = summary[name]
        print(f"| {name} | {s['worst_ratio']:.2f}x | {s['mean_ratio']:.2f}x | {s['worst_chroma_kept']:.0%} | "
              f"{s['mean_dpsnr']:+.2f} | {s['mean_dcolorfulness']:+.1f} |")
    meta["network_seconds"] = runner.seconds
    meta["total_seconds"] = time.perf_counter() - t_start
    print(f"\nnetwork {runner.seconds:.0f} s, total {meta['total_seconds']:.0f} s")
    out = args.json or (Path(os.environ["OUT"]) / "flicker_bench.json" if os.environ.get("OUT") else None)
    if out:
        out.write_text(json.dumps({"meta": meta, "summary": summary, "clips": results}, indent=1))
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
