"""The engine computes what the model computes.

CPU (CI): BN folding is exact (float32, random BN statistics), channel padding changes
nothing, bucket logic, the engine's frame path == Runner.colorize_tensor.  GPU (`-m gpu`):
fp16/bf16 engine vs the float32 eager model, graphs, and the frame path's pixels.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tint.engine.fold import FastColorizer, fold_bn_after_conv, fold_bn_before_conv1x1, pad_conv
from tint.engine.graphs import Engine, batch_bucket, batch_chunks, prepare
from tint.core.model import Colorizer, ColorizerConfig


gpu = pytest.mark.gpu          # conftest adds a per-test timeout and a hang guard


def rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp(min=1e-12)).item()


def randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def make(backbone="tiny-darknet", output="bins", final_width=3, seed=0):
    torch.manual_seed(seed)
    return randomize_bn(Colorizer(ColorizerConfig(backbone=backbone, output=output, final_width=final_width)).eval())


# --------------------------------------------------------------------------- folding (CPU)
def test_fold_bn_after_conv_exact():
    conv = torch.nn.Conv2d(5, 7, 3, padding=1, bias=False)
    bn = randomize_bn(torch.nn.Sequential(torch.nn.BatchNorm2d(7, eps=1e-3))).eval()[0]
    x = torch.randn(2, 5, 9, 11)
    w, b = fold_bn_after_conv(conv.weight, conv.bias, bn)
    with torch.no_grad():
        assert rel(F.conv2d(x, w, b, padding=1), bn(conv(x))) < 1e-6


def test_fold_bn_before_conv1x1_exact():
    conv = torch.nn.Conv2d(6, 4, 1)
    bn = randomize_bn(torch.nn.Sequential(torch.nn.BatchNorm2d(6))).eval()[0]
    x = torch.randn(2, 6, 5, 3)
    w, b = fold_bn_before_conv1x1(bn, conv.weight, conv.bias)
    with torch.no_grad():
        assert rel(F.conv2d(x, w, b), conv(bn(x))) < 1e-6
    with pytest.raises(ValueError):
        fold_bn_before_conv1x1(bn, torch.zeros(4, 6, 3, 3), None)


def test_pad_conv_is_exact():
    w, b = torch.randn(3, 5, 3, 3), torch.randn(3)
    wp, bp = pad_conv(w, b, cout=8, cin=8)
    x = torch.randn(1, 8, 6, 6)
    y = F.conv2d(x, wp, bp, padding=1)
    assert torch.allclose(y[:, :3], F.conv2d(x[:, :5], w, b, padding=1), atol=1e-5)
    assert y[:, 3:].abs().max() == 0


@pytest.mark.parametrize("backbone,output,gpu_layout", [
    ("tiny-darknet", "bins", False), ("tiny-darknet", "ab", True),
    ("vgg16", "ab", False), ("vgg16", "bins", True)])
def test_fast_colorizer_matches_model(backbone, output, gpu_layout):
    m = make(backbone, output)
    L = torch.rand(2, 1, 32, 48) * 100
    with torch.no_grad():
        ref = m(L)
    got = FastColorizer(m, gpu_layout=gpu_layout)(L)
    assert got.shape == ref.shape and got.dtype == torch.float32
    assert rel(got, ref) < 1e-5
    assert (got - ref).abs().max().item() < 1e-3          # Lab units


@pytest.mark.parametrize("backbone,output,stride,gpu_layout,width", [
    ("tiny-darknet", "bins", 2, False, 1), ("tiny-darknet", "bins", 2, True, 1),
    ("tiny-darknet", "ab", 4, True, 1), ("vgg16", "ab", 2, False, 1), ("tiny-darknet", "bins", 2, True, 2)])
def test_fast_colorizer_matches_model_with_context(backbone, output, stride, gpu_layout, width):
    torch.manual_seed(0)
    m = Colorizer(ColorizerConfig(backbone=backbone, output=output, final_width=16, context=24,
                                  out_stride=stride, chroma_gain=1.15 if output == "bins" else 1.0,
                                  width=width))
    torch.nn.init.normal_(m.head.context.film.weight, std=0.1)     # a trained branch is not the identity
    m = randomize_bn(m).eval()
    L = torch.rand(2, 1, 48, 80) * 100
    with torch.no_grad():
        ref = m(L)
    got = FastColorizer(m, gpu_layout=gpu_layout)(L)
    assert got.shape == ref.shape == (2, 2, 48, 80)
    assert rel(got, ref) < 1e-5


def test_engine_leaves_model_untouched():
    m = make()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    prepare(m, precision="fp32")
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_engine_cpu_eager_and_shape_checks():
    m = make()
    eng = prepare(m, precision="fp32")
    assert not eng.graphs
    L = torch.rand(3, 1, 32, 16) * 100
    with torch.no_grad():
        assert rel(eng(L), m(L)) < 1e-5
    with pytest.raises(ValueError):
        eng(torch.rand(1, 1, 30, 16))
    with pytest.raises(ValueError):
        eng(torch.rand(1, 3, 32, 16))
    with pytest.raises(ValueError):
        prepare(m, precision="fp8")


# --------------------------------------------------------------------------- buckets (CPU)
def test_batch_bucket():
    assert [batch_bucket(b) for b in (1, 2, 3, 5, 8, 9, 33, 64)] == [1, 2, 4, 8, 8, 16, 64, 64]
    assert batch_bucket(100, 64) == 64 and batch_bucket(3, 2) == 2
    with pytest.raises(ValueError):
        batch_bucket(0)


def test_batch_chunks():
    assert batch_chunks(5, 64) == [(0, 5, 8)]
    assert batch_chunks(130, 64) == [(0, 64, 64), (64, 128, 64), (128, 130, 2)]
    ch = batch_chunks(77, 16)
    assert ch[0][0] == 0 and ch[-1][1] == 77 and all(e - s <= b for s, e, b in ch)


# --------------------------------------------------------------------------- frame pipeline (CPU)
def _runner(weights, device):
    import tint
    return tint.api.Runner(weights, device=device, size=64, precision="fp32")


def _frames(B, H, W, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (B, H, W, 3), dtype=torch.uint8, generator=g)


def _pixel_diff(got, ref):
    """(B, H, W): the largest difference over R, G, B of each pixel, in 8-bit levels."""
    return (got.int() - ref.int()).abs().amax(-1)


def _compare(got, ref, levels=2, frac=0.999):
    d = _pixel_diff(got, ref)
    return (d <= levels).float().mean().item() >= frac, d.max().item()


def _engine_frames(runner):
    """The runner's frame path (``Pipeline.colorize_frames``, the engine's fused stages)
    around the engine, which runs eagerly in fp32 on a CPU."""
    pipe = runner.pipeline.with_network(prepare(runner.model, precision="fp32"))
    return lambda x: pipe.colorize_frames(torch.as_tensor(x))


def test_frame_pipeline_cpu_matches_runner(tiny_weights):
    r = _runner(tiny_weights, "cpu")
    run = _engine_frames(r)
    x = _frames(2, 37, 53)
    got = run(x)
    ref = r.colorize_tensor(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    ok, dmax = _compare(got, ref, levels=1, frac=0.9999)
    assert got.shape == (2, 37, 53, 3) and ok, dmax
    outs = [run(b) for b in (x[:1], x[1:], x[:1])]              # one batch at a time (batch 1 vs 2: rounding)
    for o, want in zip(outs, (got[:1], got[1:], got[:1])):
        assert (o.int() - want.int()).abs().max().item() <= 1
    with pytest.raises(ValueError):
        r.colorize_frames(np.zeros((4, 4, 4, 4), np.uint8))


# --------------------------------------------------------------------------- GPU
@gpu
@pytest.mark.parametrize("backbone,output", [("vgg16", "ab"), ("vgg16", "bins"), ("tiny-darknet", "bins")])
# fp32: cuDNN convolutions run in TF32 by PyTorch's default (cudnn.allow_tf32), in the
# reference too, and the head-out kernel's tl.dot as well; through 13 convs that is
# 1.2e-3 to 2.4e-3 relative (H200, 2026-11-22), so fp32 gets 5e-3, not float32's 1e-5.
@pytest.mark.parametrize("precision,tol", [("fp32", 5e-3), ("fp16", 2e-2), ("bf16", 6e-2)])
def test_gpu_engine_matches_fp32_model(backbone, output, precision, tol):
    from tint.bench.gpu import random_model
    m = random_model(backbone, output).cuda()          # He init: realistic activation scales
    eng = prepare(m, precision=precision)
    for shape in ((1, 1, 64, 96), (3, 1, 48, 32), (5, 1, 64, 96)):      # 3 and 5 pad to buckets 4, 8
        L = torch.rand(shape, device="cuda") * 100
        with torch.no_grad():
            ref = m(L)
        got = eng(L)
        assert got.shape == ref.shape and torch.isfinite(got).all()
        assert rel(got, ref) < tol, (shape, rel(got, ref))
    again = eng(L)                                                      # graph replay reused
    assert torch.equal(again, got)
    assert len(eng.describe()["graphs_cached"]) == 3


@gpu
@pytest.mark.parametrize("precision,tol,width", [("fp16", 2e-2, 1), ("bf16", 6e-2, 1), ("fp16", 2e-2, 2)])
def test_gpu_engine_matches_context_stride_model(precision, tol, width):
    """The 2026-12 default design: global context, chroma at stride 2, 261 bins (and its
    encoder at twice the width)."""
    from tint.training.train import init_fresh
    torch.manual_seed(0)
    m = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=64, context=128,
                                  out_stride=2, temperature=0.5, chroma_gain=1.15, width=width))
    init_fresh(m)
    torch.nn.init.normal_(m.head.context.film.weight, std=0.05)
    m = randomize_bn(m).eval().cuda()
    eng = prepare(m, precision=precision)
    for shape in ((1, 1, 16, 16), (3, 1, 48, 80), (2, 1, 256, 256)):
        L = F.avg_pool2d(torch.rand(shape, device="cuda") * 100, 5, 1, 2)
        with torch.no_grad():
            ref = m(L)
        got = eng(L)
        assert got.shape == ref.shape and torch.isfinite(got).all()
        assert rel(got, ref) < tol, (shape, rel(got, ref))


@gpu
def test_gpu_engine_large_batch_chunks():
    m = make("tiny-darknet", "bins").cuda()
    eng = prepare(m, precision="fp16", max_batch=4)
    L = torch.rand(9, 1, 32, 32, device="cuda") * 100
    with torch.no_grad():
        ref = m(L)
    assert rel(eng(L), ref) < 2e-2


@gpu
def test_gpu_engine_captures_again_after_clear():
    """tint bench clears an input's graphs before the next: capturing into the emptied pool
    crashed the caching allocator (torch 2.11, H200, 2026-12-02)."""
    m = make("tiny-darknet", "bins").cuda()
    eng = prepare(m, precision="fp16")
    L = torch.rand(2, 1, 32, 32, device="cuda") * 100
    first = eng(L)
    eng.clear()
    assert eng.describe()["graphs_cached"] == []
    assert torch.equal(eng(L), first)
    assert eng(torch.rand(1, 1, 64, 48, device="cuda")).shape == (1, 2, 64, 48)


@gpu
def test_gpu_runner_uses_engine(tiny_weights):
    import tint
    r = tint.api.Runner(tiny_weights, device="cuda", size=64)
    assert isinstance(r.network, Engine) and r.backend == "engine"
    L = torch.rand(2, 1, 64, 64) * 100
    assert r.chroma(L).shape == (2, 2, 64, 64)


def _pipeline_vs_eager(weights, frames_list, size=256, worst=0.999):
    """All of a pixel's R, G, B within 2 levels on 99.9 % of all pixels of ``frames_list``,
    and on ``worst`` of each frame's pixels."""
    import tint
    eager = tint.api.Runner(weights, device="cuda", size=size, precision="fp32", backend="eager")
    assert eager.network is eager.model                # the plain fp32 eager path
    fast = tint.api.Runner(weights, device="cuda", size=size)
    assert fast.backend == "engine"
    within, total = 0, 0
    for x in frames_list:
        got = fast.colorize_frames(x)
        ref = eager.colorize_tensor(x.cuda().permute(0, 3, 1, 2)).permute(0, 2, 3, 1).cpu()
        ok, dmax = _compare(got, ref, frac=worst)
        assert got.shape == ref.shape and ok, (tuple(x.shape), dmax)
        d = _pixel_diff(got, ref)
        within += int((d <= 2).sum())
        total += d.numel()
    assert within / total >= 0.999, within / total


@gpu
def test_gpu_frame_pipeline_matches_runner_random(tiny_weights):
    # 1081x1921: odd sizes at full HD; 4K is the bench's (every new shape captures two graphs)
    _pipeline_vs_eager(tiny_weights, [_frames(1, 1, 1), _frames(2, 17, 33), _frames(1, 1081, 1921)])


@gpu
@pytest.mark.parametrize("which,size", [("default", 256), ("vgg16", 512), ("tiny", 256)])
def test_gpu_frame_pipeline_matches_runner_photos(which, size, tiny_weights, data_dir, tmp_path):
    # the check: engine (fp16, Triton stem/head/output stages, graphs) vs the eager
    # fp32 model on real photos, within 2 levels of 8-bit RGB on 99.9 % of pixels; the
    # shipped model, the bench's vgg16 network (at 512, where the full-res head runs) and a
    # random tiny one
    from PIL import Image
    from tint.bench.gpu import random_model
    from tint.core.weights import resolve, save_weights
    files = sorted((data_dir / "dev").glob("*.jpg"))[:8]
    if not files:
        pytest.skip("no dev photos")
    frames = [torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).copy())[None] for f in files]
    if which == "default":
        weights = resolve("default")
    elif which == "vgg16":
        weights = save_weights(random_model("vgg16", "ab"), tmp_path / "vgg16.safetensors", dtype=torch.float32)
    else:
        weights = tiny_weights
    # The shipped bins model (annealed mean over 261 bins at T = 0.38) turns any change of
    # rounding order into colour steps at a few ambiguous pixels: on the H200 (24 dev photos,
    # scripts/photo_check.py) 99.98 % of all pixels are within 2 levels, but its worst photo
    # (the third here) has 99.54-99.57 % in fp16 and 99.73 % with the engine in fp32, so that
    # is the model's sensitivity, not fp16; the 8 here pooled must still reach 99.9 % (asserted).
    _pipeline_vs_eager(weights, frames, size=size, worst=0.994 if which == "default" else 0.999)


@gpu
def test_gpu_frame_path_repeatable_host_and_device(tiny_weights):
    # the frame path gives the same pixels call after call (graph replay, static buffers
    # reused), from host tensors, pinned ones and device tensors alike
    import tint
    r = tint.api.Runner(tiny_weights, device="cuda", size=128)
    xs = [_frames(2, 120, 200, seed=s) for s in range(5)]
    single = [r.colorize_frames(x) for x in xs]
    again = [r.colorize_frames(x) for x in xs]
    assert all(torch.equal(a, b) for a, b in zip(single, again))
    assert torch.equal(r.colorize_frames(xs[0].pin_memory()), single[0])
    on_device = r.colorize_frames(xs[0].cuda())
    assert on_device.is_cuda and torch.equal(on_device.cpu(), single[0])


# --------------------------------------------------------------------------- bench (CPU smoke)
def test_bench_variants_cpu_smoke(tmp_path, capsys):
    """The GPU bench's code on a CPU (``tint bench --device cpu`` is tint.bench_cpu instead)."""
    import json
    from tint.bench.gpu import run_variants
    from tint.cli.main import build_parser
    out = tmp_path / "bench.json"
    args = build_parser().parse_args(
        ["bench", "--device", "cpu", "--inputs", "16,32x16", "--size", "16", "--max-batch", "2",
         "--quick", "--backbone", "tiny-darknet", "--head", "bins", "--json", str(out)])
    assert run_variants(args) == 0
    res = json.loads(out.read_text())
    assert {r["variant"] for r in res["rows"]} == {"eager-fp32", "engine"}
    assert all(r["throughput"]["best_ips"] > 0 for r in res["rows"])
    assert "x fp32" in capsys.readouterr().out


def test_bench_bad_inputs():
    from tint.bench.gpu import parse_inputs
    from tint.core.errors import TintError
    assert parse_inputs("224, 4k,1920x1080") == [("224", 224, 224), ("4k", 2160, 3840), ("1920x1080", 1080, 1920)]
    with pytest.raises(TintError):
        parse_inputs("huge")
    with pytest.raises(TintError):
        parse_inputs("0x5")


def test_engine_pools_through_the_kernel(monkeypatch):
    # the encoder's pools go through kernels.max_pool2x2 (Triton on CUDA, F.max_pool2d here)
    from tint.engine import kernels as K
    calls = []
    real = K.max_pool2x2
    monkeypatch.setattr(K, "max_pool2x2", lambda x: calls.append(tuple(x.shape)) or real(x))
    m = make("vgg16", "ab")
    net = FastColorizer(m, torch.float32, gpu_layout=True)
    L = torch.rand(1, 1, 16, 24) * 100
    with torch.no_grad():
        assert rel(net(L), m(L)) < 1e-4
    assert calls == [(1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6)]
