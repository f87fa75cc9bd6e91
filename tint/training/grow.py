"""A wider network grown from a trained one (Net2WiderNet: Chen, Goodfellow & Shlens 2016).

``grow_width(small, m)`` returns a ``Colorizer`` whose encoder has m times the channels of
``small``'s and computes the same colours: every channel is copied m times (convs' output
rows, batch norms), and every conv that reads copied channels splits each input column
over its m copies (they sum back to the original).  Everything per channel (LeakyReLU,
max-pool, bilinear upsampling, batch norm, the head's ``x + bn(tap)``) keeps copies equal,
so the wide model starts where the small one ended and training adds capacity instead of
starting over.  The head's own widths follow the taps'; its last widths (final_width,
the bins) and the global-context branch's width stay.

Identical copies get identical Adam updates (Adam does not see a scale), and a batch norm
after each conv hides any split of scale, so ``noise`` (relative to each weight tensor's
standard deviation) is added to the copies' input weights to let them drift apart; with
``noise=0`` the function is kept to float rounding (tests/test_grow.py).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from ..core.model import Colorizer, Conv


def grow_width(small: Colorizer, width: int, noise: float = 1e-2, seed: int = 0) -> Colorizer:
    """``small`` (config.width w) -> a Colorizer of config.width ``width`` (a multiple of w)
    with the same output up to ``noise``; ``small`` is left unchanged."""
    w0 = small.config.width
    if width % w0 or width < w0:
        raise ValueError(f"width {width} is not a multiple of the model's {w0}")
    m = width // w0
    wide = Colorizer(dataclasses.replace(small.config, width=width))
    g = torch.Generator().manual_seed(seed)
    sp, wp = small.plan(), wide.plan()
    with torch.no_grad():
        # encoder: every conv's outputs copied; every conv after the first reads copies
        first = True
        for a, b in zip(sp.encoder, wp.encoder):
            if isinstance(a, Conv):
                _conv(a.conv, b.conv, m, 1 if first else m, noise, g)
                if a.bn is not None:
                    _bn(a.bn, b.bn, m)
                first = False
        # head: tap norms copied; reduce and merges read copies; their outputs copied while
        # they feed another merge (the taps' widths), not the last one (final_width)
        _bn(sp.deep_bn, wp.deep_bn, m)
        _conv(sp.reduce, wp.reduce, m, m, noise, g)
        for i, (a, b) in enumerate(zip(sp.merges, wp.merges)):
            _bn(a.bn, b.bn, m)
            _conv(a.conv, b.conv, m if i < len(sp.merges) - 1 else 1, m, noise, g)
        if sp.context is not None:
            ca, cb = sp.context, wp.context
            _conv(ca.conv1, cb.conv1, 1, m, noise, g)
            for name in ("conv2", "fc"):
                getattr(cb, name).load_state_dict(getattr(ca, name).state_dict())
            gamma_w, beta_w = ca.film.weight.chunk(2, 0)         # (C, width) each: one per x channel
            gamma_b, beta_b = ca.film.bias.chunk(2, 0)
            cb.film.weight.copy_(torch.cat((gamma_w.repeat(m, 1), beta_w.repeat(m, 1))))
            cb.film.bias.copy_(torch.cat((gamma_b.repeat(m), beta_b.repeat(m))))
        for name in ("refine", "out"):
            getattr(wp, name).load_state_dict(getattr(sp, name).state_dict())
    return wide.train(small.training)


def _conv(a: nn.Conv2d, b: nn.Conv2d, m_out: int, m_in: int, noise: float, g: torch.Generator) -> None:
    """b = a with output rows copied m_out times and input columns split over m_in copies
    (new channel n is old channel n % C, as torch's repeat lays them out)."""
    w = a.weight.repeat(m_out, m_in, 1, 1) / m_in
    if noise and (m_out > 1 or m_in > 1):
        # each copy's rows get their own noise (not the original's first copy)
        eps = torch.randn(w.shape, generator=g, dtype=w.dtype) * (noise * a.weight.std() / m_in)
        eps[: a.out_channels] = 0
        w = w + eps
    b.weight.copy_(w)
    if a.bias is not None:
        b.bias.copy_(a.bias.repeat(m_out))


def _bn(a: nn.BatchNorm2d, b: nn.BatchNorm2d, m: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(b, name).copy_(getattr(a, name).repeat(m))
    b.num_batches_tracked.copy_(a.num_batches_tracked)
