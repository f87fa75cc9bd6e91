"""Growing a wider encoder from a trained one keeps what it computes (tint.training.grow)."""
import pytest
import torch

from tint.core.model import Colorizer, ColorizerConfig
from tint.training.grow import grow_width

CONFIGS = [ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8, context=8, out_stride=2),
           ColorizerConfig(backbone="tiny-darknet", output="ab", final_width=3),
           ColorizerConfig(backbone="vgg16", output="bins", final_width=4, context=4, out_stride=4)]


def _trained_looking(model):
    """Random weights and batch-norm statistics, so nothing is at its init by accident."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and name != "bins":
                t.copy_(torch.randn(t.shape, generator=g) * 0.2 + (1.0 if "running_var" in name or
                                                                  name.endswith("bn.weight") else 0.0))
        for name, t in model.state_dict().items():
            if "running_var" in name:
                t.abs_().add_(0.5)
    return model.eval()


@pytest.mark.parametrize("config", CONFIGS, ids=["tiny-bins-context", "tiny-ab", "vgg16-bins"])
@pytest.mark.parametrize("m", [2, 3])
def test_grown_model_computes_the_same(config, m):
    small = _trained_looking(Colorizer(config))
    wide = grow_width(small, m, noise=0.0)
    assert wide.config.width == m and wide.encoder.tap_channels == tuple(c * m for c in small.encoder.tap_channels)
    assert sum(p.numel() for p in wide.encoder.parameters()) > 3 * sum(p.numel() for p in small.encoder.parameters())
    L = torch.rand(2, 1, 64, 48, generator=torch.Generator().manual_seed(2)) * 100
    with torch.no_grad():
        ref, got = small.raw(L), wide.raw(L)
    assert (got - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_noise_breaks_the_copies_and_barely_moves_the_output():
    small = _trained_looking(Colorizer(CONFIGS[0]))
    wide = grow_width(small, 2, noise=1e-2)
    w = wide.encoder.conv4.weight                    # 128 -> 256 rows: copies of each other but for the noise
    assert not torch.equal(w[:128], w[128:]) and torch.allclose(w[:128], w[128:], atol=0.05)
    L = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(3)) * 100
    with torch.no_grad():
        ref, got = small(L), wide(L)
    assert (got - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_grow_refuses_a_width_that_is_not_a_multiple():
    small = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8, width=2))
    with pytest.raises(ValueError, match="multiple"):
        grow_width(small, 3)


def test_train_init_grows_a_narrow_file(tiny_weights):
    from tint.core.weights import load_weights
    from tint.training.train import load_init
    said = []
    model = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8, width=2)).eval()
    assert load_init(model, tiny_weights, log=said.append) == "grown"
    assert "grown from encoder width x1 to x2" in said[0]
    small, _ = load_weights(tiny_weights)
    L = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(4)) * 100
    with torch.no_grad():
        ref, got = small(L), model(L)
    assert (got - ref).abs().mean() < 0.05 * ref.abs().mean() + 0.05
