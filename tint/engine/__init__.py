"""Fast inference: the same network, rewritten for the GPU it runs on.

``prepare(model)`` returns a callable ``L_work (B, 1, h, w) float32 -> ab (B, 2, h, w)``
that computes what ``model`` computes, faster:

* batch norm folded away where that is exact: into the Tiny-Darknet convs it follows
  (conv -> BN) and into the head's ``reduce`` 1x1 conv it precedes (BN -> 1x1 conv; a 1x1
  conv has no zero padding, so the shift folds into the bias exactly).  The taps' BNs
  before the 3x3 merges cannot fold (the zero padding would see the shift), so they run
  inside the fused head step (``kernels.head_step``) with the upsample and the add;
* fp16 (or bf16) weights and activations in channels_last, input channels padded to 8 and
  the final width to a multiple of 8 with zero weights (tensor-core friendly, exact);
* conv + bias + ReLU as one cuDNN call where cuDNN offers it (checked at start);
* the full-resolution tail in Triton (``triton_convs``): the last merge as two GEMMs and a
  tap sum (``kernels.merge_gemm``; the 64-channel head-step tensor is never written),
  refine as a narrow FMA conv, the gray add fused;
* the out conv and its readout fused (``kernels.head_out``): for "bins" models the Q
  logits per pixel live in registers only, softmax(logits / T) @ bins is written as ab;
* one CUDA graph per (batch bucket, h, w): static input/output buffers, warm-up on a
  side stream, batches rounded up to a power of two.

The engine compiles what the model describes (``Colorizer.plan()``), not the model's
internals.  Whole frames run in the one pixel pipeline (``tint.core.pipeline.Pipeline``),
which takes the fused full-resolution kernels ``kernels.lightness_u8`` / ``kernels.join_u8``.
``backends.choose`` decides which runtime runs a model (engine, onnx, eager) and says why.

On the CPU (tests, CI) the same code runs eagerly in float32 with the PyTorch references
of every kernel, so folding and the pipeline logic are checked without a GPU.

Modules: ``fold`` (FastColorizer: the plan compiled, folded and padded), ``graphs`` (Engine,
prepare: CUDA graphs per batch bucket and shape), ``kernels/`` (Triton kernels by stage, each
beside its PyTorch reference), ``onnx`` (the CPU backend: the same network exported to ONNX
Runtime) and ``backends`` (the choice among them, with its reason).
"""
