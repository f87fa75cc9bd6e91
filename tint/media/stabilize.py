"""Temporal consistency for video: a pixel keeps its colour while it is the same thing.

A colorizer run frame by frame flickers: a small change in lightness (noise, grain,
compression, a little motion) can move the predicted chroma a lot, and a sky turns from
grey-blue to blue and back.  Here each pixel's output chroma is a *running mean* of the
network's predictions for that pixel over the frames it has been tracked through, with a
per-pixel weight in frames that trust discounts:

    carried_t   = the running mean (ab and weight n) of frame t-1, moved onto frame t:
                  in place where nothing moved (``stillness``), else along the flow
    w_t         = min(trust_t * n_carried, memory - 1)      trust in [0, 1], 0 at a scene cut
    ab'_t       = (ab_t + w_t * carried_t) / (w_t + 1),      n_t = w_t + 1

Where a pixel stays trusted, its colour is the mean of its last ``memory`` predictions;
where trust falls (occlusion, a wrong match, a cut) the memory goes with it and the new
prediction takes over.  That is ``ChromaStabilizer``: causal, for the camera.
``ChromaSmoother`` (whole files, ``tint video``) averages the next ``lookahead`` frames
too, the same way but backwards in time, and gives frame t the mean over both sides:

    ab''_t = (n_fwd * ab'_t + n_back * ab'back_t - ab_t) / (n_fwd + n_back - 1)

(frame t counted once).  Its output lags its input by ``lookahead`` frames; every frame's
window has the same length, so there are no seams between batches.

The mean of ab *vectors* is shorter than their mean length wherever the predictions' hues
differ (a vector mean of blue and blue-green is a paler blue-cyan): that alone took 4-6 %
of the network's chroma on the film clips.  So the running mean carries the chroma's length
|ab| as a third channel, and the output keeps the vector mean's hue at the mean length
(``restore_chroma``): ab_out = mean(ab) * min(mean(|ab|) / |mean(ab)|, max_gain).  Where
hues disagree wholesale the vector mean is short and its direction uncertain; ``max_gain``
bounds how far such a direction is stretched.

Motion and trust, all torch on the chroma's own device at the *working size* (about
256 x 256), batched over a batch's frame pairs, no host sync:

    flow        = pyramidal Lucas-Kanade, both directions in one call (``flow``)
    trust_flow  = fb(w, w^) * exp(-(|L_t - warp(L_{t-1})| / sigma_L)^2) * inside     (``flow_confidence``)
    stillness   = exp(-(max(|box5(L_t - L_{t-1})| - 1, 0) / 3)^2)                     (``stillness``)
    cut         = half-L1 distance of 32-bin lightness histograms > 0.35              (``histogram_distance``)

A pixel is carried in place when ``stillness >= trust_flow``, else along the flow, with
trust = the larger of the two.  The stillness test is what holds flat, textureless areas
(sky, walls) still: there the flow is guesswork and its trust low, yet nothing changed.
Averaging the signed lightness change over 5 x 5 before taking its size lets film grain
cancel, so a grainy still shot is still.  ``fb`` is the soft forward-backward test of
Sundaram et al. 2010 / Ruder et al. 2016 (also used by Lai et al. 2018 to mask their warp
error):

    fb   = exp(-|w + w_hat|^2 / (0.01 (|w|^2 + |w_hat|^2) + 0.5))

Lightness is handled in 0..255 units (L * 2.55) throughout, so sigma_L, the stillness
test and the flow's regularizer read like 8-bit grey levels.  (The first stabilizer blended
only the previous output, 0.85 of it, along the flow; on flat areas its trust was low,
and its memory was short: ``scripts/flicker_bench.py`` measures both, docs/VIDEO.md.)
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MEMORY = 32              # frames of the past a tracked pixel's colour is averaged over
LOOKAHEAD = 24           # frames of the future ``ChromaSmoother`` averages too (its output lag)
STILL_RADIUS = 2         # 5 x 5 window of the stillness test
STILL_DEADZONE = 1.0     # grey levels of local mean change taken for grain and noise
STILL_SIGMA = 3.0        # grey levels: how fast trust in "nothing moved" falls past the dead zone
HIST_BINS = 32
LK_RADIUS = 3            # 7 x 7 Lucas-Kanade window
LK_ITERS = 3             # Gauss-Newton steps per pyramid level
LK_REG = 4.0             # Tikhonov term (grey levels^2): no motion where there is no texture
LK_MIN_SIDE = 12         # coarsest pyramid level keeps at least this many pixels a side
MAX_GAIN = 1.5           # at most this much longer than the vector mean ab (``restore_chroma``)


@functools.lru_cache(maxsize=32)
def _grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (h, w, 2) as (x, y), and the (2,) scale to grid_sample's [-1, 1]
    (align_corners=True).  Cached: the flow warps the same shape a few dozen times a batch."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                            torch.arange(w, device=device, dtype=dtype), indexing="ij")
    return torch.stack((xs, ys), -1), _pair(2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1), device, dtype)


def _pair(x: float, y: float, device, dtype=torch.float32) -> torch.Tensor:
    """(2,) tensor (x, y) made on ``device`` by fills: ``torch.tensor`` would copy it from the
    host, which synchronizes the GPU."""
    return torch.stack((torch.full((), x, device=device, dtype=dtype), torch.full((), y, device=device, dtype=dtype)))


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp on any device: x (B, C, h, w), flow (B, h, w, 2) in pixels (dx, dy)
    -> (B, C, h, w) with out(p) = x(p + flow(p)), bilinear, edges replicated."""
    pix, scale = _grid(x.shape[2], x.shape[3], x.device, x.dtype)
    return F.grid_sample(x, (pix + flow) * scale - 1.0, mode="bilinear",
                         padding_mode="border", align_corners=True)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """3 x 3 binomial smoothing, edges replicated: x (N, 1, h, w)."""
    # The kernel made by fills on x's device: torch.tensor would copy it from the host, which
    # synchronizes the GPU.  (Two 2-tap means are the same blur but 3x slower on a CPU.)
    k = torch.full((3,), 0.25, device=x.device, dtype=x.dtype)
    k[1:2].fill_(0.5)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), (k[:, None] * k[None, :])[None, None])


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences (d/dx, d/dy), edges replicated: x (N, 1, h, w)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) * 0.5, (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) * 0.5


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r + 1)^2 window inside the image.  On a GPU one pooling kernel; on a
    CPU one integral image, 3.5x faster than the pooling there (where it was 63 % of the
    flow) but ten kernels, which nearly doubled the filter's time on the H200 (4K frame:
    17.6 vs 9.9 ms).  The two agree to float32 rounding (tests/test_stabilize.py)."""
    if x.device.type != "cpu":
        return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)
    return _box_integral(x, r)


def _box_integral(x: torch.Tensor, r: int) -> torch.Tensor:
    """``_box`` from one integral image.  The mean is taken out first so float32 cumulative
    sums keep their precision."""
    mean = x.mean((-2, -1), keepdim=True)
    c = F.pad((x - mean).cumsum(-1).cumsum(-2), (1, 0, 1, 0))             # (.., h + 1, w + 1)
    lo_h, hi_h, lo_w, hi_w, count = _windows(*x.shape[-2:], r, x.device, x.dtype)
    rows = c.index_select(-2, hi_h) - c.index_select(-2, lo_h)
    return (rows.index_select(-1, hi_w) - rows.index_select(-1, lo_w)) / count + mean


@functools.lru_cache(maxsize=64)
def _windows(h: int, w: int, r: int, device: torch.device, dtype: torch.dtype):
    """Integral-image indices of each window's first and one-past-last row and column, and
    the (h, w) count of pixels each window holds.  Cached: the flow boxes a few shapes only."""
    ih, iw = torch.arange(h, device=device), torch.arange(w, device=device)
    lo_h, hi_h = (ih - r).clamp(min=0), (ih + r + 1).clamp(max=h)
    lo_w, hi_w = (iw - r).clamp(min=0), (iw + r + 1).clamp(max=w)
    return lo_h, hi_h, lo_w, hi_w, ((hi_h - lo_h)[:, None] * (hi_w - lo_w)[None, :]).to(dtype)


def _pyramid(x: torch.Tensor) -> list[torch.Tensor]:
    levels = [x]
    while min(levels[-1].shape[-2:]) >= 2 * LK_MIN_SIDE:
        levels.append(F.avg_pool2d(levels[-1], 2, ceil_mode=True))
    return levels


def flow(cur: torch.Tensor, prev: torch.Tensor, iters: int = LK_ITERS, radius: int = LK_RADIUS,
         reg: float = LK_REG) -> torch.Tensor:
    """Dense optical flow from ``cur`` to ``prev``: (N, 1, h, w) grey levels in [0, 255] each
    -> (N, h, w, 2) pixels (dx, dy) with cur(p) ~ prev(p + flow(p)).

    Pyramidal Lucas-Kanade (Bouguet's coarse-to-fine scheme, dense): per level, the 2 x 2
    structure tensor of cur's gradient over a (2 radius + 1)^2 window, then ``iters``
    Gauss-Newton steps on the residual prev(p + flow) - cur(p).  Every op is batched over N.
    """
    if cur.shape != prev.shape or cur.dim() != 4 or cur.shape[1] != 1:
        raise ValueError(f"flow: expected two (N, 1, h, w) tensors, got {tuple(cur.shape)}, {tuple(prev.shape)}")
    N = cur.shape[0]
    f = None
    for a, b in zip(reversed(_pyramid(_blur(cur.float()))), reversed(_pyramid(_blur(prev.float())))):
        h, w = a.shape[-2:]
        if f is None:
            f = a.new_zeros(N, 2, h, w)
        else:
            scale = _pair(w / f.shape[-1], h / f.shape[-2], a.device).view(1, 2, 1, 1)
            f = F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False) * scale
        gx, gy = _grad(a)
        sxx, sxy, syy = _box(gx * gx, radius) + reg, _box(gx * gy, radius), _box(gy * gy, radius) + reg
        det = sxx * syy - sxy * sxy
        for _ in range(iters):
            it = warp(b, f.permute(0, 2, 3, 1)) - a
            bx, by = _box(gx * it, radius), _box(gy * it, radius)
            f = f - torch.cat((syy * bx - sxy * by, sxx * by - sxy * bx), 1) / det
    return f.permute(0, 2, 3, 1).contiguous()


def flow_confidence(back: torch.Tensor, fwd: torch.Tensor, cur: torch.Tensor, prev: torch.Tensor,
                    sigma_l: float = 12.0) -> torch.Tensor:
    """Trust in the backward flow, (N, 1, h, w) in [0, 1].

    ``back``: flow from the current frame to the previous one, ``fwd`` the other way,
    (N, h, w, 2) each; ``cur``/``prev``: (N, 1, h, w) grey levels.  Low where the two flows
    disagree (occlusions, wrong matches), where the warped previous frame does not look
    like this one, and where the flow points outside the previous frame."""
    h, w = back.shape[1:3]
    fwd_at = warp(fwd.permute(0, 3, 1, 2), back)                    # w_hat(x + w(x))
    bx, by = back[..., 0][:, None], back[..., 1][:, None]
    fx, fy = fwd_at[:, 0:1], fwd_at[:, 1:2]
    fb = (bx + fx) ** 2 + (by + fy) ** 2
    mag = bx * bx + by * by + fx * fx + fy * fy
    err = (cur - warp(prev, back)) / sigma_l
    conf = torch.exp(-fb / (0.01 * mag + 0.5) - err * err)
    t = _grid(h, w, back.device, back.dtype)[0] + back              # where each pixel comes from
    tx, ty = t[..., 0][:, None], t[..., 1][:, None]
    return conf * ((tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1))


def histogram_distance(a: torch.Tensor, b: torch.Tensor, bins: int = HIST_BINS) -> torch.Tensor:
    """Half the L1 distance between the normalized grey-level histograms of each pair:
    a, b (N, 1, h, w) in [0, 255] -> (N,), 0 for the same distribution, 1 for disjoint ones."""
    def hist(x):
        idx = (x.reshape(x.shape[0], -1).clamp(0, 255) * (bins / 256.0)).long().clamp_(max=bins - 1)
        h = torch.zeros(x.shape[0], bins, device=x.device).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float32))
        return h / h.sum(1, keepdim=True).clamp_min(1)
    return 0.5 * (hist(a) - hist(b)).abs().sum(1)


def stillness(cur: torch.Tensor, prev: torch.Tensor, radius: int = STILL_RADIUS,
              deadzone: float = STILL_DEADZONE, sigma: float = STILL_SIGMA) -> torch.Tensor:
    """Trust that nothing moved at each pixel from ``prev`` to ``cur``: (N, 1, h, w) grey
    levels each -> (N, 1, h, w) in [0, 1].

    The signed change is averaged over a (2 radius + 1)^2 window first, so zero-mean grain
    cancels while a moving edge or a brightness change does not; up to ``deadzone`` grey
    levels of that local change count as none, and trust falls as exp(-(excess / sigma)^2).
    """
    if cur.shape != prev.shape or cur.dim() != 4 or cur.shape[1] != 1:
        raise ValueError(f"stillness: expected two (N, 1, h, w) tensors, got {tuple(cur.shape)}, {tuple(prev.shape)}")
    d = (_box(cur.float() - prev.float(), radius).abs() - deadzone).clamp_min(0) / sigma
    return torch.exp(-d * d)


@dataclass
class Motion:
    """What the filters need about n consecutive frame pairs (t-1, t), on the device.

    ``back`` (n, h, w, 2): flow t -> t-1, carries frame t-1 onto frame t; ``fwd``: flow
    t-1 -> t, carries t onto t-1; ``trust_back`` / ``trust_fwd`` (n, 1, h, w): their
    ``flow_confidence``; ``still`` (n, 1, h, w): ``stillness``; ``keep`` (n, 1, 1, 1):
    0 where t starts a new shot (a cut, or no frame t-1), else 1."""
    back: torch.Tensor
    fwd: torch.Tensor
    trust_back: torch.Tensor
    trust_fwd: torch.Tensor
    still: torch.Tensor
    keep: torch.Tensor


def motion(cur: torch.Tensor, prev: torch.Tensor, sigma_l: float = 12.0, cut_threshold: float = 0.35) -> Motion:
    """``Motion`` of the pairs (prev[i], cur[i]): (n, 1, h, w) grey levels each, batched:
    one ``flow`` call for both directions, no host sync."""
    n = cur.shape[0]
    both = flow(torch.cat((cur, prev)), torch.cat((prev, cur)))
    back, fwd = both[:n], both[n:]
    keep = (histogram_distance(cur, prev) <= cut_threshold).float().view(n, 1, 1, 1)
    return Motion(back, fwd, flow_confidence(back, fwd, cur, prev, sigma_l),
                  flow_confidence(fwd, back, prev, cur, sigma_l), stillness(cur, prev), keep)


def carry(state: torch.Tensor, flow_: torch.Tensor, trust: torch.Tensor, still: torch.Tensor,
          keep: torch.Tensor, memory: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a running mean onto the next frame: ``state`` (k, C + 1, h, w), C channels of
    means and their weight in frames (the last channel), in the previous frame's place;
    ``flow_`` (k, h, w, 2) from the next frame into this one; ``trust``/``still``
    (k, 1, h, w); ``keep`` (k, 1, 1, 1).  Returns (mean (k, C, h, w), weight (k, 1, h, w) in
    [0, memory - 1]) on the next frame: the state kept in place where stillness is the
    better explanation, else warped, its weight discounted by that explanation's trust."""
    moved = warp(state, flow_.to(state.dtype))
    in_place = still >= trust
    cand = torch.where(in_place, state, moved)
    w = cand[:, -1:] * torch.maximum(still, trust) * keep
    return cand[:, :-1], w.clamp(0, memory - 1)


def accumulate(x: torch.Tensor, mean: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """One more frame into the running mean: x (k, C, h, w), the carried mean (k, C, h, w)
    and its weight ``w`` (k, 1, h, w), frames -> state (k, C + 1, h, w): (x + w mean) / (w + 1),
    and w + 1."""
    return torch.cat((torch.lerp(x, mean, w / (w + 1)), w + 1), 1)


def with_length(ab: torch.Tensor) -> torch.Tensor:
    """ab (k, 2, h, w) -> (k, 3, h, w): ab and its length |ab|, what the running means average."""
    # hypot of the two channels: element-wise; a norm over dim 1 is a strided reduction, 20x slower on CPU
    return torch.cat((ab, torch.hypot(ab[:, :1], ab[:, 1:2])), 1)


def restore_chroma(mean: torch.Tensor, max_gain: float = MAX_GAIN) -> torch.Tensor:
    """Averaged (ab, |ab|) (k, 3, h, w) -> ab (k, 2, h, w): the mean vector's hue at the mean
    length, i.e. mean(ab) * g with g = mean(|ab|) / |mean(ab)| clamped to [1, max_gain].

    g >= 1 always holds for a true mean (triangle inequality) and is 1 where every averaged
    prediction had the same hue; the clamp at 1 only absorbs float error, ``max_gain``
    (>= 1; 1 gives the plain vector mean) bounds the stretch of a short, uncertain mean.
    The 1e-6 floor keeps a zero vector at zero (gain 1 there, by the clamp)."""
    if mean.dim() != 4 or mean.shape[1] != 3:
        raise ValueError(f"restore_chroma: expected (k, 3, h, w) means of (a, b, |ab|), got {tuple(mean.shape)}")
    if not max_gain >= 1.0:
        raise ValueError(f"max_gain must be >= 1, got {max_gain}")
    ab = mean[:, :2]
    if max_gain == 1.0:
        return ab
    n = torch.hypot(ab[:, :1], ab[:, 1:2])
    return ab * (mean[:, 2:3] / n.clamp_min(1e-6)).clamp(1.0, max_gain)


class ChromaStabilizer:
    """Causal temporal filter (``tint camera``; the forward half of ``ChromaSmoother``).
    Stateful: feed it every frame of one sequence, in order.

    ``stabilizer(ab, L)``: ab (B, 2, h, w), the network's chroma for B consecutive frames,
    and L (B, 1, h, w), their working-size lightness in [0, 100], on the same device.
    Returns the filtered chroma, same shape and device, using frames up to each frame's own
    only; never waits for the device.  ``memory`` >= 1 frames: 1 turns it off; 32 averages
    a still pixel's last 32 predictions (1.3 s at 24 fps).  ``max_gain`` >= 1: how much
    longer than the vector mean the output chroma may be (``restore_chroma``; 1: the plain
    vector mean).
    """

    def __init__(self, memory: int = MEMORY, cut_threshold: float = 0.35, sigma_l: float = 12.0,
                 max_gain: float = MAX_GAIN):
        if int(memory) != memory or memory < 1:
            raise ValueError(f"memory must be a whole number of frames >= 1, got {memory}")
        if not max_gain >= 1.0:
            raise ValueError(f"max_gain must be >= 1, got {max_gain}")
        self.memory, self.cut_threshold, self.sigma_l = int(memory), cut_threshold, sigma_l
        self.max_gain = float(max_gain)
        self._cuts = None                                # device tensor: read only when asked
        self.reset()

    def reset(self) -> None:
        self.prev_l: torch.Tensor | None = None         # (1, 1, h, w) last frame, grey levels
        self.state: torch.Tensor | None = None          # (1, 4, h, w) last running mean (ab, |ab|) and weight

    @property
    def cuts(self) -> int:
        """Scene cuts found so far (a host sync; call it at the end)."""
        return 0 if self._cuts is None else int(self._cuts.item())

    @staticmethod
    def _check(ab, L):
        if ab.dim() != 4 or ab.shape[1] != 2 or L.shape != (ab.shape[0], 1, *ab.shape[2:]):
            raise ValueError(f"expected ab (B, 2, h, w) and L (B, 1, h, w), got {tuple(ab.shape)}, {tuple(L.shape)}")

    @torch.no_grad()
    def step(self, ab: torch.Tensor, L: torch.Tensor) -> tuple[torch.Tensor, Motion, torch.Tensor]:
        """(states (B, 4, h, w): running means of ab (2) and |ab| (1), and their weight in
        frames; the batch's ``Motion``, pair i = (frame i-1, frame i); grey levels (B, 1, h, w))."""
        self._check(ab, L)
        B = ab.shape[0]
        cur = L.to(ab.device, torch.float32) * 2.55
        if self.prev_l is None or self.prev_l.shape[1:] != cur.shape[1:]:
            self.reset()
        first = self.prev_l is None
        prev = torch.cat((cur[:1] if first else self.prev_l, cur[:-1]))    # frame t-1 of each frame t
        self.prev_l = cur[-1:]
        m = motion(cur, prev, self.sigma_l, self.cut_threshold)
        cut = 1.0 - m.keep
        if first:
            cut[0] = 0.0                                                    # no previous frame: not a cut
            m.keep[0] = 0.0                                                 # ... and nothing to carry
        self._cuts = cut.sum() if self._cuts is None else self._cuts + cut.sum()
        x = with_length(ab.float())
        out, last = [], self.state
        for i in range(B):
            if last is None:
                last = torch.cat((x[i:i + 1], torch.ones_like(x[i:i + 1, :1])), 1)
            else:
                mean, w = carry(last, m.back[i:i + 1], m.trust_back[i:i + 1], m.still[i:i + 1],
                                m.keep[i:i + 1], self.memory)
                last = accumulate(x[i:i + 1], mean, w)
            out.append(last)
        self.state = last
        return torch.cat(out), m, cur

    @torch.no_grad()
    def __call__(self, ab: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
        if self.memory == 1:
            self._check(ab, L)
            return ab
        return restore_chroma(self.step(ab, L)[0][:, :3], self.max_gain)


class ChromaSmoother:
    """Two-sided temporal filter for whole files (``tint video``): frame t's chroma is the
    running mean over its last ``memory`` frames (``ChromaStabilizer``) and its next
    ``lookahead`` frames, both carried onto frame t along the flow (or in place where still).

    ``push(ab, L, payload)``: the next B frames (as for ``ChromaStabilizer``) and anything
    to hand back with each frame (``payload`` indexable by frame, e.g. the full-resolution
    luma, or None).  Returns (chroma (m, 2, h, w), payload items) for the m >= 0 frames
    whose lookahead is now complete, oldest first: after the first ``lookahead`` frames,
    as many as were pushed.  ``flush()`` returns the rest (shorter lookahead: the film
    ends).  Every frame's window has the same length, so the result does not depend on how
    the frames were batched.  Never waits for the device.  ``max_gain``: as for
    ``ChromaStabilizer``, applied to the two-sided means.
    """

    def __init__(self, memory: int = MEMORY, lookahead: int = LOOKAHEAD, cut_threshold: float = 0.35,
                 sigma_l: float = 12.0, max_gain: float = MAX_GAIN):
        if int(lookahead) != lookahead or lookahead < 0:
            raise ValueError(f"lookahead must be a whole number of frames >= 0, got {lookahead}")
        self.causal = ChromaStabilizer(memory, cut_threshold, sigma_l, max_gain)
        self.memory, self.lookahead, self.max_gain = self.causal.memory, int(lookahead), self.causal.max_gain
        self._frames: list[tuple] = []   # per pending frame: ((ab, |ab|), forward state, fwd, trust_fwd, still, keep, payload)

    @property
    def cuts(self) -> int:
        return self.causal.cuts

    @property
    def pending(self) -> int:
        """Frames pushed and not yet returned."""
        return len(self._frames)

    @torch.no_grad()
    def push(self, ab: torch.Tensor, L: torch.Tensor, payload=None):
        if self._frames and tuple(self._frames[0][0].shape[2:]) != tuple(ab.shape[2:]):
            raise ValueError(f"frame size changed from {tuple(self._frames[0][0].shape[2:])} to "
                             f"{tuple(ab.shape[2:])}: flush() first")
        states, m, _ = self.causal.step(ab, L)
        x = with_length(ab.float())
        for i in range(x.shape[0]):
            # pair i is (frame i-1, frame i): what carries frame i back onto frame i-1 lives with frame i
            self._frames.append((x[i:i + 1], states[i:i + 1], m.fwd[i:i + 1], m.trust_fwd[i:i + 1],
                                 m.still[i:i + 1], m.keep[i:i + 1], None if payload is None else payload[i]))
        return self._emit(len(self._frames) - self.lookahead)

    @torch.no_grad()
    def flush(self, limit: int | None = None):
        """The frames still held back (at most ``limit`` of them, oldest first), their
        lookahead cut short by the end of the film."""
        n = len(self._frames)
        return self._emit(n if limit is None else min(n, limit))

    def _emit(self, m: int):
        """Finish the oldest m pending frames: a backward running mean from each frame's
        last lookahead frame down to it, batched over the m frames (frame t's window is
        pending frames t .. t + lookahead, cut at the last one), then both sides joined."""
        if m <= 0:
            return None, []
        fr, D = self._frames, self.lookahead
        n = min(m + D, len(fr))                                   # the frames these m can see
        last = n - 1

        def window(field: int) -> torch.Tensor:                    # (m + D, ...), the last frame repeated past the end
            x = torch.cat([f[field] for f in fr[:n]])
            return x if n == m + D else torch.cat((x, x[-1:].expand(m + D - n, *x.shape[1:])))
        x, fwd, trust, still, keep = (window(i) for i in (0, 2, 3, 4, 5))     # x: (ab, |ab|)
        state = torch.cat((x[D:D + m], torch.ones_like(x[D:D + m, :1])), 1)   # frame min(t + D, last)
        for j in range(D - 1, -1, -1):                            # onto frame t + j, for every t at once
            if last - j <= 0:                                     # t + j < last for no t: nothing to step
                continue
            pair = slice(j + 1, j + 1 + m)                        # pair (t + j, t + j + 1) lives with t + j + 1
            mean, w = carry(state, fwd[pair], trust[pair], still[pair], keep[pair], self.memory)
            new = accumulate(x[j:j + m], mean, w)
            if last - j >= m:
                state = new
            else:                                                 # only t < last - j; no host->device copy
                mask = torch.arange(m, device=state.device).view(m, 1, 1, 1) < last - j
                state = torch.where(mask, new, state)
        cur = x[:m]
        fwd_state = torch.cat([f[1] for f in fr[:m]])
        n_f, n_b = fwd_state[:, 3:], state[:, 3:]
        out = restore_chroma((n_f * fwd_state[:, :3] + n_b * state[:, :3] - cur) / (n_f + n_b - 1), self.max_gain)
        payloads = [f[6] for f in fr[:m]]
        del self._frames[:m]
        return out, payloads


class CodeHold:
    """Temporal hysteresis on 8-bit codes (the output's Cb and Cr planes): a code within
    ``threshold`` of the previous output frame's code keeps that code, bit for bit.

    The running means above leave a still pixel's chroma moving by a fraction of a code,
    which rounding turns into +-1 flips, and its lightness (grain) moves Cb/Cr a little
    too.  x264 codes every such flip and its chroma residual adds flicker of its own; given
    exact repeats it codes nothing there.  The error is at most ``threshold`` codes.

    ``hold(codes)``: uint8 (B, n) codes of B consecutive frames, any device -> the same,
    held; stateful across calls (feed frames in order); ``reset()`` forgets.
    """

    def __init__(self, threshold: int = 1):
        if int(threshold) != threshold or threshold < 0:
            raise ValueError(f"threshold must be a whole number of codes >= 0, got {threshold}")
        self.threshold = int(threshold)
        self.prev: torch.Tensor | None = None

    def reset(self) -> None:
        self.prev = None

    @torch.no_grad()
    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 2 or codes.dtype != torch.uint8:
            raise ValueError(f"expected uint8 codes (B, n), got {codes.dtype} {tuple(codes.shape)}")
        if self.prev is not None and self.prev.shape != codes.shape[1:]:
            self.reset()
        out, prev = [], self.prev
        for c in codes:
            if prev is not None and self.threshold:
                c = torch.where((c.short() - prev.short()).abs() <= self.threshold, prev, c)
            out.append(c)
            prev = c
        self.prev = prev
        return torch.stack(out)
