"""Temporal stability for video: keep a pixel's colour while the pixel is the same thing.

A colorizer run frame by frame flickers: a small change in lightness (noise, grain,
compression) can move the predicted chroma a lot.  The stabilizer carries the previous
*output* chroma forward along the optical flow and blends it with the new prediction,
weighted by how much the flow can be trusted there:

    flow_t      = flow(L_t -> L_{t-1})                       # cv2 DIS on working-size lightness
    warped      = warp(ab'_{t-1}, flow_t)                    # previous output, moved onto frame t
    confidence  = fb(flow_t, flow(L_{t-1} -> L_t)) * photometric(L_t, warp(L_{t-1}))   in [0, 1]
    ab'_t       = ab_t + strength * confidence * (warped - ab_t)

and drops the memory (confidence 0) at a scene cut, found from the distance between the
lightness histograms of consecutive frames.  Everything works on the *working-size*
chroma (about 256x256 pixels), so the flow costs a millisecond or two on the CPU, and it
runs on the host while the device computes the network (see ``tint.video.colorize_frames``).

Confidence terms follow the occlusion test of Sundaram et al. 2010 / Ruder et al. 2016
(also used by Lai et al. 2018 to mask their warp error), made soft:

    fb   = exp(-|w + w_hat|^2 / (0.01 (|w|^2 + |w_hat|^2) + 0.5))
    phot = exp(-(|L_t - warp(L_{t-1})| / sigma_L)^2)
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

HIST_BINS = 32


def lightness_u8(L: np.ndarray) -> np.ndarray:
    """L in [0, 100] (any float array) -> uint8 [0, 255] for the flow estimator."""
    return np.clip(np.asarray(L, np.float32) * 2.55 + 0.5, 0, 255).astype(np.uint8)


def histogram_distance(a: np.ndarray, b: np.ndarray, bins: int = HIST_BINS) -> float:
    """Half the L1 distance between the normalized grey-level histograms of two uint8
    images: 0 for the same distribution, 1 for disjoint ones."""
    step = 256 // bins                                   # bins must divide 256
    ha = np.bincount(a.ravel() // step, minlength=bins)
    hb = np.bincount(b.ravel() // step, minlength=bins)
    return 0.5 * float(np.abs(ha / max(ha.sum(), 1) - hb / max(hb.sum(), 1)).sum())


_GRIDS: dict = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y) of an h x w image, cached: made once per shape, not per frame."""
    g = _GRIDS.get((h, w))
    if g is None:
        g = _GRIDS[(h, w)] = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return g


def remap(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp on the host: out(x) = img(x + flow(x)), bilinear, edges replicated.
    img (h, w[, C]) float32, flow (h, w, 2) float32 in pixels (dx, dy)."""
    import cv2
    gx, gy = _grid(*flow.shape[:2])
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp on any device: x (B, C, h, w), flow (B, h, w, 2) in pixels (dx, dy)
    -> (B, C, h, w) with out(p) = x(p + flow(p)), bilinear, edges replicated."""
    B, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    gx = (xs + flow[..., 0]) * (2.0 / max(w - 1, 1)) - 1.0          # align_corners=True grid
    gy = (ys + flow[..., 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return F.grid_sample(x, torch.stack((gx, gy), -1), mode="bilinear",
                         padding_mode="border", align_corners=True)


def flow_confidence(back: np.ndarray, fwd: np.ndarray, cur: np.ndarray, prev: np.ndarray,
                    sigma_l: float = 12.0) -> np.ndarray:
    """Trust in the backward flow (h, w) in [0, 1].

    ``back``: flow from the current frame to the previous one; ``fwd``: the other way;
    ``cur``/``prev``: uint8 lightness.  Low where the two flows disagree (occlusions,
    wrong matches), where the warped previous frame does not look like this one, and
    where the flow points outside the previous frame."""
    h, w = back.shape[:2]
    fwd_at = remap(fwd, back)                                   # w_hat(x + w(x))
    bx, by, fx, fy = back[..., 0], back[..., 1], fwd_at[..., 0], fwd_at[..., 1]
    # per-component sums: numpy's .sum(-1) over a length-2 axis is several times slower
    fb = (bx + fx) ** 2 + (by + fy) ** 2
    mag = bx * bx + by * by + fx * fx + fy * fy
    err = (cur.astype(np.float32) - remap(prev.astype(np.float32), back)) * np.float32(1.0 / sigma_l)
    conf = np.exp(-fb / (np.float32(0.01) * mag + np.float32(0.5)) - err * err)
    gx, gy = _grid(h, w)
    tx, ty = gx + bx, gy + by
    conf *= (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return conf.astype(np.float32, copy=False)


@dataclass
class Motion:
    """How frame t relates to frame t-1, at the working size (host arrays)."""
    flow: np.ndarray | None          # (h, w, 2) float32: frame t -> frame t-1, pixels
    confidence: np.ndarray | None    # (h, w) float32 in [0, 1]; None: start over (first frame, cut)


class MotionEstimator:
    """Sequential host-side motion between consecutive working-size lightness frames."""

    def __init__(self, cut_threshold: float = 0.35, preset: str = "fast", sigma_l: float = 12.0,
                 workers: int = 1):
        import cv2
        self.cut_threshold = cut_threshold
        self.sigma_l = sigma_l
        presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                   "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                   "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
        self._preset = presets[preset]
        self._local = threading.local()                 # a DIS object is not thread-safe: one per thread
        self.workers = max(1, int(workers))
        self._pool: ThreadPoolExecutor | None = None
        self.prev: np.ndarray | None = None
        self.cuts = 0

    def reset(self) -> None:
        self.prev = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _dis(self):
        dis = getattr(self._local, "dis", None)
        if dis is None:
            import cv2
            dis = self._local.dis = cv2.DISOpticalFlow_create(self._preset)
        return dis

    def _pair(self, prev: np.ndarray, cur: np.ndarray) -> Motion:
        dis = self._dis()
        back = dis.calc(cur, prev, None)                # cur(x) ~ prev(x + back(x))
        fwd = dis.calc(prev, cur, None)
        return Motion(back, flow_confidence(back, fwd, cur, prev, self.sigma_l))

    def __call__(self, cur: np.ndarray) -> Motion:
        """cur: uint8 lightness (h, w) of the next frame."""
        return self.many([cur])[0]

    def many(self, frames: list) -> list[Motion]:
        """Motions of consecutive frames (uint8 lightness (h, w) each), in order.

        Each motion needs only its frame and the one before, so the pairs run on
        ``workers`` threads (OpenCV and numpy release the GIL); the cut test and the
        remembered last frame stay sequential."""
        out: list = [None] * len(frames)
        todo = []
        for i, cur in enumerate(frames):
            prev, self.prev = self.prev, cur
            if prev is None or prev.shape != cur.shape:
                out[i] = Motion(None, None)
            elif histogram_distance(prev, cur) > self.cut_threshold:
                self.cuts += 1
                out[i] = Motion(None, None)
            else:
                todo.append((i, prev, cur))
        if self.workers > 1 and len(todo) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tint-flow")
            for (i, _, _), m in zip(todo, self._pool.map(lambda t: self._pair(t[1], t[2]), todo)):
                out[i] = m
        else:
            for i, prev, cur in todo:
                out[i] = self._pair(prev, cur)
        return out


class ChromaStabilizer:
    """Stateful: feed it every frame of one shot sequence, in order.

    ``stabilizer(ab, L)``: ab (B, 2, h, w) on any device, the network's chroma for B
    consecutive frames; L (B, 1, h, w) their working-size lightness in [0, 100], a host
    tensor or array (the flow is computed on the host).  Returns the stabilized chroma,
    same shape and device.  ``strength`` in [0, 1): 0 turns it off; 0.85 keeps about the
    last 6-7 frames' colour where the flow is trusted.
    """

    def __init__(self, strength: float = 0.85, cut_threshold: float = 0.35, preset: str = "fast",
                 workers: int = 1):
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        self.strength = strength
        self.motion = MotionEstimator(cut_threshold, preset, workers=workers)
        self.prev_ab: torch.Tensor | None = None       # (1, 2, h, w) last output

    def reset(self) -> None:
        self.motion.reset()
        self.prev_ab = None

    @property
    def cuts(self) -> int:
        return self.motion.cuts

    def estimate(self, L) -> list[Motion]:
        """Host part, in frame order: L (B, 1, h, w) in [0, 100] -> B motions."""
        L = L.detach().float().cpu().numpy() if isinstance(L, torch.Tensor) else np.asarray(L)
        return self.motion.many([lightness_u8(L[i, 0]) for i in range(L.shape[0])])

    def estimate_u8(self, frames: list) -> list[Motion]:
        """``estimate`` for lightness already as uint8 (h, w) frames (``lightness_u8`` units)."""
        return self.motion.many(frames)

    def close(self) -> None:
        self.motion.close()

    @torch.no_grad()
    def apply(self, ab: torch.Tensor, motions: list[Motion]) -> torch.Tensor:
        """Device part, in frame order: blend each frame with the previous output."""
        if ab.dim() != 4 or ab.shape[1] != 2 or len(motions) != ab.shape[0]:
            raise ValueError(f"expected ab (B, 2, h, w) and B motions, got {tuple(ab.shape)}, {len(motions)}")
        out = []
        for i, m in enumerate(motions):
            cur = ab[i:i + 1]
            prev = self.prev_ab
            if (m.flow is None or prev is None or prev.shape != cur.shape or self.strength == 0.0):
                res = cur
            else:
                flow = torch.from_numpy(m.flow).to(cur.device, cur.dtype, non_blocking=True)[None]
                conf = torch.from_numpy(m.confidence).to(cur.device, cur.dtype, non_blocking=True)[None, None]
                res = torch.lerp(cur, warp(prev, flow), self.strength * conf)
            out.append(res)
            self.prev_ab = res
        return torch.cat(out, 0)

    def __call__(self, ab: torch.Tensor, L) -> torch.Tensor:
        return self.apply(ab, self.estimate(L))
