"""What every kernel module shares: whether Triton runs here, the NHWC layout helpers, the
activation codes (eager and in Triton)."""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ...core.model import LEAKY_SLOPE


try:  # Triton is optional: the references below are the fallback everywhere.
    import triton
    import triton.language as tl
    HAVE_TRITON = True
except Exception:  # pragma: no cover - depends on the install
    triton = tl = None
    HAVE_TRITON = False


def triton_enabled(*tensors: torch.Tensor) -> bool:
    """True when the Triton kernels should run on these tensors."""
    if not HAVE_TRITON or os.environ.get("TINT_NO_TRITON") == "1":
        return False
    if all(t.is_cuda for t in tensors):
        return True
    return os.environ.get("TRITON_INTERPRET") == "1" and all(t.device.type == "cpu" for t in tensors)


# =========================================================================== layout helper
def nhwc_contiguous(t: torch.Tensor) -> bool:
    """True when t (B, C, H, W) is dense channels_last, so element (b, c, y, x) sits at
    ((b * H + y) * W + x) * C + c: what the kernels below index with C a constexpr, which
    lets Triton prove 16-byte alignment and issue vector loads along channels."""
    return t.dim() == 4 and t.permute(0, 2, 3, 1).is_contiguous()


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t if nhwc_contiguous(t) else t.contiguous(memory_format=torch.channels_last)


def _tile(C: int, elems: int) -> tuple[int, int]:
    """(BLOCK_P, BLOCK_C) for an NHWC tile of about ``elems`` elements: all channels of a
    pixel in one program when they fit, so the tile is one contiguous stretch of memory."""
    BLOCK_C = min(triton.next_power_of_2(C), 256)
    return max(1, elems // BLOCK_C), BLOCK_C


ACTS = {"relu": 0, "leaky": 1, None: 2}


def _act(y: torch.Tensor, act: str | None) -> torch.Tensor:
    if act == "relu":
        return F.relu(y)
    if act == "leaky":
        return F.leaky_relu(y, LEAKY_SLOPE)
    return y


if HAVE_TRITON:
    @triton.jit
    def _act_jit(a, ACT: tl.constexpr, slope):          # ACTS codes, as _act
        if ACT == 0:
            a = tl.maximum(a, 0.0)
        elif ACT == 1:
            a = tl.where(a > 0, a, a * slope)
        return a
