"""Fused GPU stages, each a Triton kernel beside the plain PyTorch function it must match.

    stage                      reference (any device)        fast path (CUDA + Triton)
    uint8 RGB -> L full res    lightness_u8_reference        _lightness_u8_kernel
    ab (work) + L -> uint8     join_u8_reference             _join_u8_kernel
    up2(x) + BN(tap)           head_step_reference           _head_step_kernel
    out conv (+ annealed mean) head_out_reference            _head_out_kernel
    2x2 max-pool (NHWC)        max_pool2x2_reference         _max_pool2x2_kernel
    conv1 straight from L      stem_conv_reference           _stem_kernel
    narrow 3x3 conv (+ gray)   narrow_conv_reference         _narrow_conv_kernel
    last merge: 2 GEMMs + sum  merge_gemm_reference          merge_gemm (_merge_taps_kernel)

The public functions (``lightness_u8``, ``join_u8``, ``head_step``, ``head_out``, ...) take
the fast path only when Triton is importable and the tensors are on CUDA (or, for tests,
on the CPU under ``TRITON_INTERPRET=1``); everywhere else they call the reference, so a
CPU-only install never needs Triton.  ``TINT_NO_TRITON=1`` forces the references.

All kernels compute in float32 whatever their storage dtype.  The input and output stages
take strides (NCHW, channels_last and (B, H, W, 3) views without copies); the network
kernels index dense channels_last with the channel count a constexpr (vector loads), and
their public functions make other layouts dense first.

By stage: ``frames`` (a, b), ``encoder`` (e, f), ``head`` (c, d, g); ``common`` holds what
they share.  The engine calls every kernel through this package (``K.head_step``), so a
test or a timing script can swap one kernel in one place.
"""
from .common import (  # noqa: F401
    HAVE_TRITON, triton_enabled, nhwc_contiguous, ACTS)
from .frames import (  # noqa: F401
    srgb_lut, lightness_u8_reference, lightness_u8, join_u8_reference, join_u8)
from .encoder import (  # noqa: F401
    max_pool2x2_reference, max_pool2x2, stem_conv_reference, StemParams, stem_fast_ok, stem_conv)
from .head import (  # noqa: F401
    head_step_reference, head_step, head_out_reference, HEAD_OUT_QC, HEAD_OUT_AB_BLOCK,
    HeadOutParams, head_out, NARROW, MERGE_GEMM_MIN, narrow_conv_reference, NarrowParams,
    narrow_conv, merge_gemm_reference, MergeParams, merge_taps_reference, merge_gemm)
