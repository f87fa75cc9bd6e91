"""ONNX Runtime on the CPU: the same network, exported in memory, run by ORT.

    Colorizer (float32, eval)
      -> torch.onnx.export (TorchScript exporter, opset 17; needs only the `onnx` package)
      -> ONNX model bytes, in memory (written to a file only when asked: ``export(model, path)``)
      -> onnxruntime.InferenceSession: CPUExecutionProvider, every graph optimization on,
         intra-op threads = torch.get_num_threads(), one inter-op thread, no spin-waiting
      -> OnnxNetwork(L (B, 1, h, w) float32 in [0, 100]) -> ab (B, 2, h, w) float32

One graph serves every batch and working shape: B, H and W are dynamic axes.  The
global-context mean is a ReduceMean over the spatial axes and the x2 upsamples are Resize
ops with constant scales, so nothing in the graph depends on the traced shape; each export
is checked on a second, different shape and batch before it is used (``check``), and
tests/test_onnx_runtime.py compares it with the float32 PyTorch model on odd sizes and
real photos.  So there is no per-shape session cache.

The PyTorch model stays the reference.  Nothing here downloads anything.
On a CPU (``cpu_network``, called by ``tint.engine.backends.choose``):

    eager   the PyTorch model (fp32, or autocast for --precision fp16/bf16)
    onnx    this module; CPU and fp32 only; a TintError if onnxruntime is missing
    auto    eager: on an idle CPU it is faster than ONNX Runtime (docs/CPU.md), so ONNX
            Runtime runs only when asked for by name.
"""
from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path

import torch

from ..core.errors import TintError

BACKENDS = ("auto", "eager", "onnx")   # those cpu_network knows; tint.engine.backends has them all
OPSET = 17
INSTALL_HINT = 'pip install "tint[cpu]"'
CHECK_TOL = 1e-2         # max |ab| (Lab units) between ORT and PyTorch on the export probe
                         # (measured ~2e-5; this only catches a wrong graph, not rounding)


def import_ort():
    """onnxruntime, or a TintError that says how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise TintError(f"the onnx backend needs onnxruntime: {INSTALL_HINT}") from None
    return onnxruntime


def ort_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


# --------------------------------------------------------------------------- export
def export(model: torch.nn.Module, path: str | os.PathLike | None = None) -> bytes:
    """ONNX bytes of a float32 CPU ``model`` (L (B, 1, H, W) -> ab (B, 2, H, W), dynamic
    B, H, W); also written to ``path`` (atomically) when one is given."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise TintError(f"exporting to ONNX needs the onnx package: {INSTALL_HINT}") from None
    m = model.multiple
    was_training = model.training
    model.eval()
    example = torch.rand(1, 1, 4 * m, 4 * m) * 100
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The exporter's deprecation notice and the traced shape checks (constant for a
            # valid shape; OnnxNetwork checks shapes itself) are noise here.
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=OPSET,
                              input_names=["L"], output_names=["ab"],
                              dynamic_axes={"L": {0: "B", 2: "H", 3: "W"}, "ab": {0: "B", 2: "H", 3: "W"}})
    finally:
        model.train(was_training)
    data = buf.getvalue()
    if path is not None:
        from ..core.files import atomic_write
        atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))
    return data


def session_options(threads: int | None = None):
    ort = import_ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning ORT threads would steal the cores from the torch ops (resize, Lab join)
    # and the video decode that run right after each call.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


class OnnxNetwork:
    """The callable L_work -> ab of ``Runner``, run by ONNX Runtime on the CPU."""

    def __init__(self, onnx_bytes: bytes, multiple: int, threads: int | None = None):
        ort = import_ort()
        self.multiple = multiple
        self.threads = int(threads or torch.get_num_threads())
        self.session = ort.InferenceSession(onnx_bytes, session_options(self.threads),
                                            providers=["CPUExecutionProvider"])
        self.onnx_bytes = onnx_bytes

    @classmethod
    def from_model(cls, model, threads: int | None = None, key=None) -> "OnnxNetwork":
        return cls(_cached_export(model, key), model.multiple, threads)

    def __call__(self, L: torch.Tensor) -> torch.Tensor:
        if L.dim() != 4 or L.shape[1] != 1:
            raise ValueError(f"expected L of shape (B, 1, H, W), got {tuple(L.shape)}")
        h, w = L.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"H and W must be multiples of {self.multiple}, got {h}x{w}")
        x = L.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(["ab"], {"L": x})[0])

    def describe(self) -> str:
        return f"onnxruntime {ort_version()} CPUExecutionProvider, {self.threads} intra-op threads"


_EXPORTS: dict = {}
_EXPORTS_LOCK = threading.Lock()
_EXPORTS_MAX = 4


def _cached_export(model, key) -> bytes:
    """Export once per weights file per process (``key``: anything naming the weights)."""
    if key is None:
        return export(model)
    with _EXPORTS_LOCK:
        if key in _EXPORTS:
            return _EXPORTS[key]
    data = export(model)
    with _EXPORTS_LOCK:
        _EXPORTS[key] = data
        while len(_EXPORTS) > _EXPORTS_MAX:
            _EXPORTS.pop(next(iter(_EXPORTS)))
    return data


def weights_key(path) -> tuple:
    st = Path(path).stat()
    return (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def check(net: OnnxNetwork, model, tol: float = CHECK_TOL) -> float:
    """Max |ab| difference between ORT and PyTorch on a probe of another shape and batch
    than the export's (dynamic axes exercised); a TintError past ``tol``."""
    m = model.multiple
    g = torch.Generator().manual_seed(0)
    L = torch.rand(2, 1, 3 * m, 5 * m, generator=g) * 100
    with torch.no_grad():
        ref = model(L)
    diff = float((net(L) - ref).abs().max())
    if not diff <= tol:
        raise TintError(f"the ONNX export disagrees with PyTorch (max |ab| difference {diff:.3g} > {tol})")
    return diff


# --------------------------------------------------------------------------- choice
def cpu_network(model, backend: str, precision: str, key=None):
    """(network or None for eager PyTorch, backend name, why) on a CPU."""
    if backend == "eager":
        return None, "eager", "asked for (--backend eager)"
    if backend == "auto":
        # Measured on an idle 2-core machine (docs/CPU.md): eager PyTorch 0.72-0.88x the
        # time of ONNX Runtime per photo; ONNX Runtime won only under a load of 6-8.
        how = "" if precision == "fp32" else f", {precision} autocast"
        return None, "eager", (f"auto on a CPU: eager PyTorch{how} (faster than ONNX Runtime on an idle "
                               "machine, docs/CPU.md; --backend onnx runs ONNX Runtime)")
    if precision != "fp32":
        raise TintError(f"the onnx backend runs fp32 only, not --precision {precision}")
    import_ort()                          # a TintError naming the extra
    try:
        net = OnnxNetwork.from_model(model, key=key)
        diff = check(net, model)
    except TintError:
        raise
    except Exception as e:
        raise TintError(f"these weights do not export to ONNX ({type(e).__name__}: {e})") from e
    return net, "onnx", (f"asked for (--backend onnx); the export matches PyTorch (max |ab| diff "
                         f"{diff:.1e} on a probe); {net.describe()}")


def main(argv=None) -> int:
    """``python -m tint.engine.onnx --weights NAME|FILE --out model.onnx``: write the export."""
    import argparse
    from ..core.weights import load_weights, resolve
    p = argparse.ArgumentParser(prog="python -m tint.engine.onnx", description=main.__doc__)
    p.add_argument("--weights", default=None)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    model, _ = load_weights(resolve(a.weights))
    net = OnnxNetwork(export(model, a.out), model.multiple)
    print(f"wrote {a.out}; max |ab| diff vs PyTorch on a probe {check(net, model):.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
