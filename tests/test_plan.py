"""The model describes its layers (``Colorizer.plan()``), the engine compiles the plan, and
``tint.engine.backends.choose`` says which runtime runs and why (CPU)."""
import pytest
import torch
import torch.nn as nn

import tint
from tint.core import model as M
from tint.core.errors import TintError
from tint.engine import backends
from tint.engine.fold import FastColorizer


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-12)).item()


class OddEncoder(nn.Module):
    """An encoder the engine has never heard of: 1x1 and 5x5 convs, BN, no act, odd widths."""
    multiple = 4

    def __init__(self, in_channels: int = 2, width: int = 1):
        super().__init__()
        self.tap_channels = a, b, c = 5 * width, 7 * width, 9 * width
        self.a = nn.Conv2d(in_channels, a, 1)
        self.b = nn.Conv2d(a, b, 5, padding=2, bias=False)
        self.bn = nn.BatchNorm2d(b)
        self.c = nn.Conv2d(b, c, 3, padding=1)

    def plan(self):
        return (M.Conv(self.a, None, "relu"), M.Tap(), M.Pool(), M.Conv(self.b, self.bn, "leaky"), M.Tap(),
                M.Pool(), M.Conv(self.c, None, None), M.Tap())

    def forward(self, x):
        return M.run_encoder(self.plan(), x)


def _randomize_bn(m):
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
    return m.eval()


@pytest.mark.parametrize("output,gpu_layout", [("ab", False), ("bins", True)])
def test_engine_compiles_any_encoder_plan(monkeypatch, output, gpu_layout):
    monkeypatch.setitem(M.BACKBONES, "odd", OddEncoder)
    torch.manual_seed(0)
    m = _randomize_bn(M.Colorizer(M.ColorizerConfig(backbone="odd", output=output, final_width=6)))
    L = torch.rand(2, 1, 24, 36) * 100
    with torch.no_grad():
        ref = m(L)
    got = FastColorizer(m, gpu_layout=gpu_layout)(L)
    assert got.shape == ref.shape and rel(got, ref) < 1e-5


def test_plan_describes_the_layers():
    m = M.Colorizer(M.ColorizerConfig(backbone="vgg16", output="bins", temperature=0.5))
    p = m.plan()
    convs = [s for s in p.encoder if isinstance(s, M.Conv)]
    assert [(c.k, c.cin, c.cout, c.bn, c.act) for c in convs[:2]] == [(3, 2, 64, None, "relu"), (3, 64, 64, None, "relu")]
    assert sum(isinstance(s, M.Pool) for s in p.encoder) == 3 and sum(isinstance(s, M.Tap) for s in p.encoder) == 4
    assert [mg.tap for mg in p.merges] == [2, 1, 0]
    assert p.readout.kind == "bins" and p.readout.temperature == 0.5 and p.readout.gain == 1.0
    tiny = M.Colorizer(M.ColorizerConfig(backbone="tiny-darknet")).plan()
    assert all(s.bn is not None and s.act == "leaky" for s in tiny.encoder if isinstance(s, M.Conv))


def test_chroma_gain_scales_the_annealed_mean_in_model_and_engine():
    torch.manual_seed(0)
    m = _randomize_bn(M.Colorizer(M.ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8)))
    g = _randomize_bn(M.Colorizer(M.ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8,
                                                    chroma_gain=1.5)))
    g.load_state_dict(m.state_dict())
    L = torch.rand(1, 1, 32, 48) * 100
    with torch.no_grad():
        a, b = m(L), g(L)
    assert torch.allclose(b, 1.5 * a, atol=1e-4)
    assert rel(FastColorizer(g)(L), b) < 1e-5


# --------------------------------------------------------------------------- the backend choice
def test_engine_backend_is_cuda_only(tiny_weights):
    with pytest.raises(TintError, match="CUDA only"):
        tint.api.Runner(tiny_weights, device="cpu", backend="engine")
    with pytest.raises(TintError, match="backend must be"):
        backends.choose(M.Colorizer(), torch.device("cpu"), "openvino")


def test_an_engine_that_cannot_load_is_said_not_hidden(monkeypatch):
    """On CUDA (simulated: the engine's build fails before touching the GPU): asked for by
    name, an error; under auto, a warning and the reason, never a quiet switch."""
    from tint.engine import graphs

    def broken(model, precision="fp16", **kw):
        raise RuntimeError("no kernel image for this GPU")
    monkeypatch.setattr(graphs, "prepare", broken)
    model, cuda = M.Colorizer(), torch.device("cuda")
    with pytest.raises(TintError, match="could not be built.*no kernel image"):
        backends.choose(model, cuda, "engine", "fp16")
    with pytest.warns(RuntimeWarning, match="running eager PyTorch instead"):
        net, name, why = backends.choose(model, cuda, "auto", "fp16")
    assert name == "eager" and "no kernel image" in why and "eager PyTorch runs instead" in why


def test_network_is_public_and_swappable(tiny_weights):
    r = tint.api.Runner(tiny_weights, device="cpu", backend="eager", size=32)
    assert r.network is r.model and r.backend == "eager" and r.backend_reason
    L = torch.rand(1, 1, 32, 32) * 100
    old = r.use_network(lambda Lw: torch.zeros(Lw.shape[0], 2, *Lw.shape[-2:]), "zeros", "a test")
    assert old is r.model and (r.backend, r.backend_reason) == ("zeros", "a test")
    assert r.chroma(L).abs().max() == 0
    out = r.colorize_tensor(torch.full((1, 1, 40, 40), 0.5))
    assert (out.amax(1) - out.amin(1)).max() < 1e-4                     # no chroma: gray
    r.use_network(old, "eager", "back")
    assert r.chroma(L).abs().max() > 0
