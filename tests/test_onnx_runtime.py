"""ONNX Runtime backend against its reference, the float32 PyTorch model.

Tolerances (fp32, measured on this 2-core CPU: ~2e-5 Lab units on random input, the same
on photos): the network's ab within ATOL_AB; through Runner (uint8 out) every pixel within
1 level and at least 99.9 % of them equal.
"""
import sys

import numpy as np
import pytest
import torch

import tint
from tint.engine import onnx as O
from tint.api import Runner
from tint.core.errors import TintError
from tint.core.model import Colorizer, ColorizerConfig
from tint.core.weights import load_weights, resolve

ATOL_AB = 1e-3           # Lab units; ab spans about +-110
PIXEL_EQUAL = 0.999      # share of uint8 channels that must be identical through Runner


def _random(backbone, output):
    torch.manual_seed(0)
    return Colorizer(ColorizerConfig(backbone=backbone, output=output, final_width=8,
                                     context=16 if backbone == "tiny-darknet" else 0)).eval()


MODELS = {
    "default": lambda: load_weights(resolve("default"))[0],
    "2026-11-22": lambda: load_weights(resolve("2026-11-22"))[0],
    "vgg16-ab": lambda: _random("vgg16", "ab"),
    "tiny-bins-context": lambda: _random("tiny-darknet", "bins"),
}


@pytest.fixture(scope="module", params=list(MODELS))
def pair(request):
    model = MODELS[request.param]()
    return model, O.OnnxNetwork(O.export(model), model.multiple)


@pytest.mark.parametrize("shape", [(1, 16, 16), (1, 48, 80), (3, 48, 80), (2, 80, 32)])
def test_matches_pytorch_on_random_input(pair, shape):
    model, net = pair
    B, h, w = shape
    L = torch.rand(B, 1, h, w, generator=torch.Generator().manual_seed(h * w + B)) * 100
    with torch.no_grad():
        ref = model(L)
    out = net(L)
    assert out.shape == ref.shape == (B, 2, h, w)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < ATOL_AB


def test_batch_items_are_independent(pair):
    """The global-context mean is per image, not over the batch."""
    model, net = pair
    L = torch.rand(3, 1, 32, 48, generator=torch.Generator().manual_seed(1)) * 100
    assert (net(L)[1:2] - net(L[1:2])).abs().max() < ATOL_AB


def test_rejects_bad_shapes(pair):
    model, net = pair
    with pytest.raises(ValueError, match="multiples"):
        net(torch.zeros(1, 1, 16, 16 + model.multiple // 2))
    with pytest.raises(ValueError, match="B, 1, H, W"):
        net(torch.zeros(1, 3, 16, 16))


def _dev_photos(data_dir, n):
    folder = data_dir / "dev"
    files = sorted(folder.glob("*.jpg"))[:n] if folder.is_dir() else []
    if not files:
        pytest.skip(f"no dev photos in {folder}")
    from PIL import Image
    return [np.asarray(Image.open(f).convert("L")) for f in files]


@pytest.fixture(scope="module")
def runners():
    return Runner(None, device="cpu", backend="eager"), Runner(None, device="cpu", backend="onnx")


def test_real_photos_through_runner(runners, data_dir):
    eager, onnx = runners
    assert (eager.backend, onnx.backend) == ("eager", "onnx")
    for g in _dev_photos(data_dir, 4):
        L = torch.from_numpy(g.astype(np.float32) / 255 * 100)[None, None]     # network alone
        Lw = tint.core.pipeline.resize_lightness(L, eager.working_shape(*g.shape))
        assert (onnx.chroma(Lw) - eager.chroma(Lw)).abs().max() < ATOL_AB
        a, b = eager.colorize_array(g), onnx.colorize_array(g)                    # pixels, uint8
        d = np.abs(a.astype(int) - b.astype(int))
        assert d.max() <= 1
        assert (d == 0).mean() >= PIXEL_EQUAL


def test_auto_runs_eager_on_cpu_and_says_why(tiny_weights):
    """On an idle CPU eager PyTorch is the faster (docs/CPU.md), so auto takes it."""
    r = Runner(tiny_weights, device="cpu")
    assert r.backend == "eager" and "faster than ONNX Runtime" in r.backend_reason


def test_onnx_by_name_says_why(tiny_weights):
    r = Runner(tiny_weights, device="cpu", backend="onnx")
    assert r.backend == "onnx" and isinstance(r.network, O.OnnxNetwork)
    assert "asked for" in r.backend_reason and "matches PyTorch" in r.backend_reason
    assert r.network.threads == torch.get_num_threads()
    assert r.network.session.get_providers() == ["CPUExecutionProvider"]


def test_precision_and_eager_choices(tiny_weights):
    assert Runner(tiny_weights, device="cpu", backend="eager").backend == "eager"
    r = Runner(tiny_weights, device="cpu", precision="bf16")
    assert r.backend == "eager" and "bf16" in r.backend_reason
    with pytest.raises(TintError, match="fp32 only"):
        Runner(tiny_weights, device="cpu", precision="bf16", backend="onnx")
    with pytest.raises(TintError, match="backend must be"):
        Runner(tiny_weights, device="cpu", backend="openvino")


def test_missing_onnxruntime(tiny_weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)        # import raises ImportError
    with pytest.raises(TintError, match=r'pip install "tint\[cpu\]"'):
        Runner(tiny_weights, device="cpu", backend="onnx")
    assert Runner(tiny_weights, device="cpu").backend == "eager"          # auto needs no onnxruntime


def test_failed_export_is_an_error(tiny_weights, monkeypatch):
    def broken(model, path=None):
        raise RuntimeError("unsupported operator")
    monkeypatch.setattr(O, "export", broken)
    monkeypatch.setattr(O, "_EXPORTS", {})
    with pytest.raises(TintError, match="do not export"):
        Runner(tiny_weights, device="cpu", backend="onnx")
    assert Runner(tiny_weights, device="cpu").backend == "eager"          # auto does not export


def test_check_catches_a_wrong_graph():
    model = _random("tiny-darknet", "bins")
    other = _random("tiny-darknet", "bins")
    with torch.no_grad():
        other.head.out.bias[:10] += 20.0      # some bins favoured: other colours
    net = O.OnnxNetwork(O.export(other), other.multiple)
    with pytest.raises(TintError, match="disagrees"):
        O.check(net, model)


def test_export_to_file_only_when_asked(tmp_path):
    import onnx
    model = _random("tiny-darknet", "bins")
    path = tmp_path / "m.onnx"
    data = O.export(model, path)
    assert path.read_bytes() == data
    onnx.checker.check_model(onnx.load(str(path)))
    dims = [d.dim_param for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["B", "", "H", "W"]


def test_info_says_which_backend_and_why(tiny_weights, capsys):
    from tint.cli.main import main
    assert main(["info", "--device", "cpu", "--weights", str(tiny_weights)]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("backend")]
    assert len(line) == 1 and "eager: auto on a CPU" in line[0] and "ONNX Runtime" in line[0]


def test_bench_cpu_smoke(tmp_path, capsys):
    """``tint bench --device cpu``: both bundled models, eager vs onnx, one table + JSON."""
    import json
    from tint.cli.main import main
    out = tmp_path / "bench.json"
    assert main(["bench", "--device", "cpu", "--inputs", "32,48x32", "--size", "32", "--quick",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert {(r["model"], r["input"]) for r in res["rows"]} == {
        (m, i) for m in ("default", "fast") for i in ("32", "48x32")}
    for r in res["rows"]:
        assert r["eager"]["path"]["median_ms"] > 0 and r["onnx"]["network"]["median_ms"] > 0
        assert r["ratio_path"] > 0 and r["threads"]["onnx"] == r["threads"]["torch"]
    assert "x path" in capsys.readouterr().out
