"""Flicker of ``tint video`` with and without the temporal stabilizer, on a real clip.

    python scripts/flicker_eval.py [--weights W.safetensors] [--start 10 --seconds 10] [--device cpu]

The clip (default: ../shared/data/video/big_buck_bunny_640x360_60s.mp4) is decoded, its
colour frames kept as ground truth and its luma used as the black-and-white input.  The
network runs once (``Pipeline.colorize_frames``); the filtered variants replay the same
chroma, so the comparison isolates the temporal filter: the causal one of ``tint camera``
(``ChromaStabilizer``) and the two-sided one ``tint video`` runs (``ChromaSmoother``).
For several clips against their colour originals in one run, see scripts/flicker_bench.py.

Metrics, over consecutive frames (t-1, t):

* warp error, Lai et al. 2018 ("Learning Blind Video Temporal Consistency", eq. 9):
  E_warp = mean_t  sum_i M_t(i) ||O_t(i) - warp(O_{t-1})(i)||^2 / sum_i M_t(i), RGB in [0, 1];
  the flow is computed on the *ground-truth colour* frames (Farneback here, FlowNet2 in the
  paper; not the DIS flow the stabilizer uses), M is the forward-backward occlusion test
  of Ruder et al. 2016 that Lai et al. use.  Also given as mean |.| (same mask).
* colour-distribution consistency: half the L1 distance between the (a, b) histograms
  (22 x 22 bins over [-110, 110]) of consecutive frames, averaged; 0 = identical.
* the same warp error on the (a, b) channels only, in Lab units (the outputs share the
  input's lightness, so colour is where they differ);
* mean chroma sqrt(a^2 + b^2), to show stabilizing does not simply wash the colour out;
* static-pixel flicker: the mean chroma change |dCb| + |dCr| (8-bit Y'CbCr codes, 4:2:0,
  BT.601) between consecutive frames over the pixels whose luma changes by less than 2
  codes (``static_flicker``): where nothing moves, a real colour film's chroma barely
  changes, so this is the flicker a viewer sees, with no flow in the way.  Compare it with
  the ground truth's (``scripts/flicker_bench.py`` does, over several clips).

A random-weight network gives a nearly constant colour (nothing to stabilize), so by
default the run is repeated with smooth random chroma noise added to the network's
output of each frame (--inject-flicker, Lab units): a controlled stand-in for a model
that flickers.  With trained weights, pass --inject-flicker 0 to skip it.

The ground truth and the gray input are scored too: their warp error is the floor the flow
itself leaves.  Prints a table; writes JSON to --json or to $OUT/flicker.json if $OUT is set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "video" / "big_buck_bunny_640x360_60s.mp4"


def read_clip(path: Path, seconds: float, start: float = 0.0):
    """(colour frames, gray frames as 3 equal channels), uint8 (T, H, W, 3)."""
    import av
    color, gray = [], []
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        for f in c.decode(vs):
            t = float(f.pts * vs.time_base)
            if t < start:
                continue
            if t >= start + seconds:
                break
            color.append(f.to_ndarray(format="rgb24"))
            g = f.to_ndarray(format="gray")
            gray.append(np.repeat(g[:, :, None], 3, 2))
    return np.stack(color), np.stack(gray)


def remap(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp on the host: out(x) = img(x + flow(x)), bilinear, edges replicated."""
    import cv2
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def flows(gt: np.ndarray):
    """For t >= 1: backward flow (t -> t-1) and the Ruder/Lai non-occlusion mask, from ground truth."""
    import cv2
    g = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in gt]
    out = []
    for t in range(1, len(g)):
        args = (None, 0.5, 4, 21, 3, 7, 1.5, 0)
        back = cv2.calcOpticalFlowFarneback(g[t], g[t - 1], *args)
        fwd = cv2.calcOpticalFlowFarneback(g[t - 1], g[t], *args)
        fwd_at = remap(fwd, back)
        lhs = ((back + fwd_at) ** 2).sum(-1)
        rhs = 0.01 * ((back ** 2).sum(-1) + (fwd_at ** 2).sum(-1)) + 0.5
        h, w = back.shape[:2]
        gx, gy = np.meshgrid(np.arange(w), np.arange(h))
        inside = ((gx + back[..., 0] >= 0) & (gx + back[..., 0] <= w - 1) &
                  (gy + back[..., 1] >= 0) & (gy + back[..., 1] <= h - 1))
        out.append((back, (lhs <= rhs) & inside))
    return out


def warp_error(video: np.ndarray, motion) -> tuple[float, float]:
    """(E_warp as in Lai et al. 2018, masked mean absolute difference), RGB in [0, 1]."""
    sq, ab = [], []
    for t, (back, mask) in enumerate(motion, start=1):
        cur = video[t].astype(np.float32) / 255
        prev = remap(video[t - 1].astype(np.float32) / 255, back)
        d = cur - prev
        m = mask.astype(np.float32)
        n = max(m.sum(), 1.0)
        sq.append(float(((d ** 2).sum(-1) * m).sum() / n))
        ab.append(float((np.abs(d).mean(-1) * m).sum() / n))
    return float(np.mean(sq)), float(np.mean(ab))


def chroma_warp_error(video: np.ndarray, motion) -> float:
    """Masked mean |ab_t - warp(ab_{t-1})| in Lab units: the colour part of the warp error
    (the outputs share the input's lightness, so this is where they can differ)."""
    from tint.core.color import rgb_to_lab

    def ab(f):
        return rgb_to_lab(torch.from_numpy(f).permute(2, 0, 1).float()[None] / 255)[0, 1:].permute(1, 2, 0).numpy()
    errs, prev = [], ab(video[0])
    for t, (back, mask) in enumerate(motion, start=1):
        cur = ab(video[t])
        d = np.abs(cur - remap(np.ascontiguousarray(prev), back)).mean(-1)
        errs.append(float((d * mask).sum() / max(mask.sum(), 1)))
        prev = cur
    return float(np.mean(errs))


STATIC_LUMA = 2          # luma change (8-bit codes) under which a pixel counts as static


def static_flicker(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, mask_y: np.ndarray | None = None,
                   threshold: float = STATIC_LUMA) -> tuple[float, float]:
    """(static-pixel flicker, fraction of chroma samples that are static).

    ``y`` (T, H, W) and ``cb``, ``cr`` (T, H/k, W/k) uint8 planes (k = 2 for 4:2:0, 1 for
    4:4:4).  Static: a chroma sample whose k x k block of luma changes by less than
    ``threshold`` codes at every pixel from frame t-1 to t, in ``mask_y`` (default ``y``;
    pass the reference film's luma to score every output on the same pixels).  Flicker: the
    mean over those samples and all t >= 1 of |Cb_t - Cb_{t-1}| + |Cr_t - Cr_{t-1}|, codes.
    """
    m = y if mask_y is None else mask_y
    if m.ndim != 3 or cb.shape != cr.shape or cb.shape[0] != m.shape[0] or len(m) < 2:
        raise ValueError(f"expected (T >= 2, H, W) planes, got {m.shape}, {cb.shape}, {cr.shape}")
    k = m.shape[1] // cb.shape[1]
    dy = np.abs(np.diff(m.astype(np.int16), axis=0))                           # (T-1, H, W)
    T1, H, W = dy.shape
    h, w = cb.shape[1:]
    dy = dy[:, :h * k, :w * k].reshape(T1, h, k, w, k).max((2, 4))             # worst pixel of each block
    static = dy < threshold
    dc = (np.abs(np.diff(cb.astype(np.int16), axis=0)) + np.abs(np.diff(cr.astype(np.int16), axis=0)))
    n = static.sum()
    return (float((dc * static).sum() / n) if n else 0.0), float(static.mean())


def yuv_planes(rgb: np.ndarray, matrix: str = "bt601") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 RGB frames (T, H, W, 3), even sides -> the Y, Cb, Cr planes ``tint video`` writes
    (limited range, 4:2:0): (T, H, W), (T, H/2, W/2) twice."""
    from tint.media.video.formats import rgb_to_yuv
    T, H, W, _ = rgb.shape
    packed = rgb_to_yuv(torch.from_numpy(np.ascontiguousarray(rgb)), matrix, True).numpy()
    c = (H // 2) * (W // 2)
    return (packed[:, :H * W].reshape(T, H, W), packed[:, H * W:H * W + c].reshape(T, H // 2, W // 2),
            packed[:, H * W + c:].reshape(T, H // 2, W // 2))


def chroma_stats(video: np.ndarray) -> tuple[float, float]:
    """(mean histogram distance between consecutive frames' (a, b), mean chroma)."""
    from tint.core.color import rgb_to_lab
    edges = np.linspace(-110, 110, 23)
    hists, chroma = [], []
    for i in range(0, len(video), 16):
        x = torch.from_numpy(video[i:i + 16]).permute(0, 3, 1, 2).float() / 255
        lab = rgb_to_lab(x).numpy()
        for f in lab:
            a, b = f[1].ravel(), f[2].ravel()
            h, _, _ = np.histogram2d(a, b, bins=(edges, edges))
            hists.append(h / max(h.sum(), 1))
            chroma.append(float(np.sqrt(a ** 2 + b ** 2).mean()))
    d = [0.5 * np.abs(hists[t] - hists[t - 1]).sum() for t in range(1, len(hists))]
    return float(np.mean(d)), float(np.mean(chroma))


class _Replay:
    """A network that hands back chroma computed before: the stabilized variant then goes
    through the pixel pipeline unchanged, without running the network twice."""

    def __init__(self):
        self.ab = None

    def __call__(self, L_work):
        return self.ab


class _Recorder:
    """The runner's network, keeping its last input and output."""

    def __init__(self, runner):
        self.runner, self.ab, self.L = runner, None, None

    def __call__(self, L_work):
        self.ab, self.L = self.runner.chroma(L_work), L_work
        return self.ab


def colorize(pipe, device, batch: np.ndarray, size, stabilizer=None) -> np.ndarray:
    """uint8 RGB frames through ``pipe`` (``Pipeline.colorize_frames``, as ``tint camera``)."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
    return pipe.colorize_frames(x, size, stabilizer=stabilizer).cpu().numpy()


class _TwoSided:
    """``tint video``'s default filter (``ChromaSmoother``) on replayed chroma: frames come
    out ``lookahead`` frames late and are joined with their own lightness by the pipeline's
    steps (``lightness_u8``, ``join_u8``)."""

    def __init__(self, pipe, memory: int, lookahead: int):
        from tint.media.stabilize import ChromaSmoother
        self.pipe, self.smoother, self.done = pipe, ChromaSmoother(memory, lookahead), []

    def _join(self, ab, frames):
        if ab is not None:
            x = torch.from_numpy(np.stack(frames)).to(ab.device)
            ab = self.pipe.scale(ab)
            self.done.append(self.pipe.join_u8(self.pipe.lightness_u8(x), ab.to(x.device)).cpu().numpy())

    def add(self, frames: np.ndarray, ab: torch.Tensor, L_work: torch.Tensor) -> None:
        self._join(*self.smoother.push(ab, L_work.to(ab.device), frames))

    def finish(self) -> np.ndarray:
        self._join(*self.smoother.flush())
        return np.concatenate(self.done)


def random_weights(path: Path) -> Path:
    """The test suite's random-weight model (no trained weights exist yet)."""
    from tint.core.model import Colorizer, ColorizerConfig
    from tint.core.weights import save_weights
    torch.manual_seed(0)
    return save_weights(Colorizer(ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8)).eval(),
                        path, meta={"note": "random weights for flicker_eval"})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--start", type=float, default=10.0, help="skip the opening titles (default 10 s)")
    ap.add_argument("--weights", default=None, help="default: a random-weight tiny-darknet model")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--memory", type=int, default=None, help="temporal filter memory, frames (default: tint's)")
    ap.add_argument("--lookahead", type=int, default=None, help="its lookahead, frames (default: tint video's)")
    ap.add_argument("--inject-flicker", type=float, default=8.0,
                    help="also run with this much smooth random chroma noise (Lab units) added per frame "
                         "to the network's output: a stand-in for a flickery model (0: skip)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import tint
    from tint.media.stabilize import LOOKAHEAD, MEMORY, ChromaStabilizer
    if not args.video.is_file():
        print(f"flicker_eval: {args.video}: no such file", file=sys.stderr)
        return 2
    memory = MEMORY if args.memory is None else args.memory
    lookahead = LOOKAHEAD if args.lookahead is None else args.lookahead
    tmp = tempfile.TemporaryDirectory()
    weights = args.weights or random_weights(Path(tmp.name) / "random.safetensors")
    runner = tint.load(weights, device=args.device)
    color, gray = read_clip(args.video, args.seconds, args.start)
    print(f"{args.video.name}: {len(color)} frames {color.shape[2]}x{color.shape[1]}, "
          f"weights {'random' if not args.weights else args.weights}, device {runner.device}", file=sys.stderr)

    t0 = time.perf_counter()
    motion = flows(color)
    t_flow = time.perf_counter() - t0
    rec, replay = _Recorder(runner), _Replay()
    rec_pipe, replay_pipe = runner.pipeline.with_network(rec), runner.pipeline.with_network(replay)
    causal, causal_n = ChromaStabilizer(memory), ChromaStabilizer(memory)
    steady, steady_n = _TwoSided(runner.pipeline, memory, lookahead), _TwoSided(runner.pipeline, memory, lookahead)
    gen = torch.Generator().manual_seed(0)
    plain, cam, plain_n, cam_n = [], [], [], []
    t0 = time.perf_counter()
    for i in range(0, len(gray), args.batch):
        batch = gray[i:i + args.batch]
        plain.append(colorize(rec_pipe, runner.device, batch, args.size))
        ab, L_work = rec.ab, rec.L
        replay.ab = ab
        cam.append(colorize(replay_pipe, runner.device, batch, args.size, stabilizer=causal))
        steady.add(batch, ab, L_work)
        if args.inject_flicker > 0:
            B, _, h, w = ab.shape                      # smooth noise: 1/8-scale field, upsampled
            noise = torch.randn(B, 2, max(1, h // 8), max(1, w // 8), generator=gen) * args.inject_flicker
            replay.ab = ab + torch.nn.functional.interpolate(noise, size=(h, w), mode="bilinear").to(ab.device)
            plain_n.append(colorize(replay_pipe, runner.device, batch, args.size))
            cam_n.append(colorize(replay_pipe, runner.device, batch, args.size, stabilizer=causal_n))
            steady_n.add(batch, replay.ab, L_work)
    t_color = time.perf_counter() - t0
    videos = {"ground truth (colour)": color, "gray input": gray,
              "tint, per frame (--no-stabilize)": np.concatenate(plain),
              "tint, causal (camera)": np.concatenate(cam),
              "tint, two-sided (video default)": steady.finish()}
    if args.inject_flicker > 0:
        videos[f"+ flicker {args.inject_flicker:g}, per frame"] = np.concatenate(plain_n)
        videos[f"+ flicker {args.inject_flicker:g}, causal"] = np.concatenate(cam_n)
        videos[f"+ flicker {args.inject_flicker:g}, two-sided"] = steady_n.finish()
    results = {}
    ref_y = yuv_planes(color[:, :color.shape[1] // 2 * 2, :color.shape[2] // 2 * 2])[0]
    for name, v in videos.items():
        ew, ea = warp_error(v, motion)
        hd, ch = chroma_stats(v)
        y, cb, cr = yuv_planes(v[:, :ref_y.shape[1], :ref_y.shape[2]])
        results[name] = {"warp_error_lai": ew, "warp_abs": ea, "chroma_warp_error": chroma_warp_error(v, motion),
                         "ab_hist_distance": hd, "mean_chroma": ch,
                         "static_flicker": static_flicker(y, cb, cr, mask_y=ref_y)[0]}
    meta = {"clip": args.video.name, "frames": int(len(color)), "seconds": args.seconds, "start": args.start,
            "weights": str(args.weights or "random tiny-darknet (seed 0)"), "device": str(runner.device),
            "size": runner.size if args.size is None else args.size, "memory": memory, "lookahead": lookahead,
            "scene_cuts_found": causal.cuts, "flow_seconds": t_flow, "colorize_seconds": t_color,
            "mask_fraction": float(np.mean([m.mean() for _, m in motion]))}
    print(f"\n| {'':34s} | E_warp (Lai) | masked abs | ab warp err | ab-hist dist | mean chroma | static flicker |")
    print(f"|{'-' * 36}|-------------:|-----------:|------------:|-------------:|------------:|---------------:|")
    for name, r in results.items():
        print(f"| {name:34s} | {r['warp_error_lai']:12.5f} | {r['warp_abs']:10.4f} | {r['chroma_warp_error']:11.3f} "
              f"| {r['ab_hist_distance']:12.4f} | {r['mean_chroma']:11.2f} | {r['static_flicker']:14.3f} |")
    print(f"\nscene cuts found by the temporal filter: {causal.cuts}; pixels kept by the occlusion mask: "
          f"{meta['mask_fraction']:.1%}")
    out = args.json or (Path(os.environ["OUT"]) / "flicker.json" if os.environ.get("OUT") else None)
    if out:
        out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
