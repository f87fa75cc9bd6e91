"""Which runtime runs the network, and why: ``choose`` is the one place that decides
(``Runner`` calls it; ``tint info`` shows its answer).

    engine  tint.engine on CUDA: folded BN, fused Triton kernels, CUDA graphs (``graphs.prepare``)
    onnx    ONNX Runtime on the CPU, fp32 (``onnx``)
    eager   the PyTorch model as it is (fp32, or autocast for fp16/bf16)
    auto    CUDA: the engine.  CPU and other devices: eager (on an idle CPU faster than
            ONNX Runtime, docs/CPU.md).

Nothing falls back quietly: a backend asked for by name that cannot run here is a
TintError; under auto, a CUDA engine that fails to build is a RuntimeWarning and the reason
(``Runner.backend_reason``, ``tint info``) says eager runs instead, and why.
"""
from __future__ import annotations

import warnings

import torch

from ..core.errors import TintError
from .onnx import cpu_network

BACKENDS = ("auto", "engine", "eager", "onnx")


def eager_network(model, precision: str):
    """The model itself (fp32), or the model under autocast (fp16, bf16)."""
    if precision == "fp32":
        return model
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    device_type = next(model.parameters()).device.type

    def run(L):
        with torch.autocast(device_type, dtype=dtype):
            return model(L)
    return run


def _first_line(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def engine_summary(net) -> str:
    d = net.describe()
    kernels = "Triton kernels" if d["triton"] else "PyTorch references for the fused stages (no Triton)"
    return f"tint.engine: {d['precision']}, folded BN, {kernels}, CUDA graphs {'on' if d['graphs'] else 'off'}"


def choose(model, device: torch.device, backend: str = "auto", precision: str = "fp32", key=None):
    """(network L_work -> ab, backend name, the reason) for ``model`` on ``device``."""
    if backend not in BACKENDS:
        raise TintError(f"backend must be {', '.join(BACKENDS)}, got {backend!r}")
    if device.type == "cpu":
        if backend == "engine":
            raise TintError("the engine backend runs on CUDA only (on a CPU: backend onnx or eager)")
        net, name, why = cpu_network(model, backend, precision, key=key)
        return (eager_network(model, precision) if net is None else net), name, why
    if backend == "onnx":
        raise TintError("the onnx backend runs on the CPU only (use --device cpu)")
    if backend == "eager":
        return eager_network(model, precision), "eager", "asked for (backend eager)"
    if device.type != "cuda":
        if backend == "engine":
            raise TintError(f"the engine backend runs on CUDA only, not on {device.type}")
        return eager_network(model, precision), "eager", f"auto on {device.type}: the engine runs on CUDA only"
    try:
        from .graphs import prepare
        net = prepare(model, precision=precision)
    except Exception as e:
        why = f"the CUDA engine could not be built ({_first_line(e)})"
        if backend == "engine":
            raise TintError(why) from e
        warnings.warn(f"tint: {why}; running eager PyTorch instead", RuntimeWarning, stacklevel=3)
        return eager_network(model, precision), "eager", f"{why}; eager PyTorch runs instead"
    how = "asked for (backend engine)" if backend == "engine" else "auto on CUDA"
    return net, "engine", f"{how}; {engine_summary(net)}"
