"""tint.model: output shapes for each backbone and output kind, size checks,
working_shape, and the config round trip."""
import json
import math

import pytest
import torch

from tint.core.model import AB_SCALE, BACKBONES, Colorizer, ColorizerConfig, TinyDarknetEncoder, VGG16Encoder, ab_bins, working_shape

CONFIGS = [ColorizerConfig(backbone=b, output=o, final_width=3 if o == "ab" else 8)
           for b in BACKBONES for o in ("ab", "bins")]


class _Models(dict):
    """Models built on first use (a 'bins' model computes its ab grid: about a second)."""
    def __missing__(self, config):
        torch.manual_seed(0)
        self[config] = Colorizer(config).eval()
        return self[config]


@pytest.fixture(scope="module")
def models():
    return _Models()


@pytest.fixture(scope="module")
def bins10(models):
    return models[ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8)].bins


def L_of(h, w, b=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g) * 100


class TestColorizer:
    @pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.backbone}-{c.output}")
    def test_forward_shapes(self, models, config):
        m = models[config]
        L = L_of(2 * m.multiple, 3 * m.multiple, b=2)
        with torch.no_grad():
            raw = m.raw(L)
            ab = m(L)
        q = m.bins.shape[0] if config.output == "bins" else 2
        assert raw.shape == (2, q, L.shape[2], L.shape[3])
        assert ab.shape == (2, 2, L.shape[2], L.shape[3])
        assert torch.isfinite(ab).all()

    def test_multiples(self):
        assert VGG16Encoder.multiple == 8 and TinyDarknetEncoder.multiple == 16
        assert Colorizer(ColorizerConfig(backbone="tiny-darknet")).multiple == 16

    @pytest.mark.parametrize("backbone", list(BACKBONES))
    def test_taps(self, backbone):
        enc = BACKBONES[backbone](in_channels=2)
        x = torch.rand(1, 2, 4 * enc.multiple, 2 * enc.multiple)
        with torch.no_grad():
            taps = enc(x)
        assert len(taps) == len(enc.tap_channels)
        for k, (t, c) in enumerate(zip(taps, enc.tap_channels)):
            assert t.shape == (1, c, x.shape[2] >> k, x.shape[3] >> k)

    @pytest.mark.parametrize("h,w", [(30, 32), (32, 30), (17, 17), (8, 12)])
    def test_sizes_not_multiple_raise(self, models, h, w):
        m = models[ColorizerConfig(backbone="tiny-darknet", output="ab", final_width=3)]
        with pytest.raises(ValueError, match="multiples"):
            m(L_of(h, w))

    @pytest.mark.parametrize("shape", [(1, 2, 16, 16), (16, 16), (1, 16, 16), (1, 3, 16, 16)])
    def test_bad_input_shape(self, models, shape):
        m = models[ColorizerConfig(backbone="tiny-darknet", output="ab", final_width=3)]
        with pytest.raises(ValueError):
            m(torch.rand(shape))

    def test_odd_valid_size(self, models):
        """Sizes that are multiples but odd multiples (48 = 3*16) and non-square."""
        m = models[ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8)]
        with torch.no_grad():
            assert m(L_of(48, 80)).shape == (1, 2, 48, 80)

    def test_regression_readout_scale(self, models):
        m = models[ColorizerConfig(backbone="vgg16", output="ab", final_width=3)]
        raw = torch.randn(1, 2, 8, 8)
        assert torch.allclose(m.readout(raw), raw * AB_SCALE)

    def test_bins_readout_is_in_the_hull(self, models):
        m = models[ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8)]
        raw = torch.randn(1, m.bins.shape[0], 4, 4) * 10
        ab = m.readout(raw)
        assert ab.shape == (1, 2, 4, 4)
        lo, hi = m.bins.min(0).values, m.bins.max(0).values
        assert (ab.movedim(1, -1) >= lo - 1e-4).all() and (ab.movedim(1, -1) <= hi + 1e-4).all()

    def test_bins_readout_peaked_picks_the_bin(self, models):
        m = models[ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8)]
        raw = torch.full((1, m.bins.shape[0], 1, 1), -1e4)
        raw[0, 7] = 1e4
        assert torch.allclose(m.readout(raw).flatten(), m.bins[7], atol=1e-4)

    def test_deterministic_in_eval(self, models):
        m = models[ColorizerConfig(backbone="vgg16", output="ab", final_width=3)]
        L = L_of(16, 24)
        with torch.no_grad():
            assert torch.equal(m(L), m(L))

    def test_batch_independent_in_eval(self, models):
        m = models[ColorizerConfig(backbone="tiny-darknet", output="ab", final_width=3)]
        L = L_of(32, 32, b=3)
        with torch.no_grad():
            full = m(L)
            one = m(L[1:2])
        assert torch.allclose(full[1:2], one, atol=1e-4)

    def test_gradients_flow(self):
        torch.manual_seed(1)
        m = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="ab", final_width=3)).train()
        m(L_of(32, 32, b=2)).square().mean().backward()
        grads = [p.grad for p in m.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)


class TestAbBins:
    def test_count_and_grid(self, bins10):
        bins = bins10
        assert bins.ndim == 2 and bins.shape[1] == 2
        assert 250 <= bins.shape[0] <= 350                 # about Zhang et al.'s 313
        assert torch.equal(bins, torch.round(bins / 10) * 10)
        assert len({tuple(b.tolist()) for b in bins}) == bins.shape[0]

    def test_neutral_bin_present(self, bins10):
        assert (bins10 == 0).all(1).any()

    def test_step(self, bins10):
        coarse = ab_bins(20.0)
        assert coarse.shape[0] < bins10.shape[0]
        assert torch.equal(coarse, torch.round(coarse / 20) * 20)


class TestWorkingShape:
    @pytest.mark.parametrize("h,w", [(256, 256), (480, 640), (2000, 3000), (31, 1000), (1, 1), (5000, 7)])
    @pytest.mark.parametrize("multiple", [8, 16])
    def test_properties(self, h, w, multiple):
        size = 256
        wh, ww = working_shape(h, w, size, multiple)
        assert wh % multiple == 0 and ww % multiple == 0
        assert wh >= multiple and ww >= multiple
        # about size*size pixels unless a side hit its floor
        if min(wh, ww) > multiple:
            assert abs(math.log(wh * ww / size ** 2)) < 0.25
        # aspect kept to within one multiple's rounding on each side
        if min(h, w) * size / math.sqrt(h * w) > 4 * multiple:
            assert abs(wh / ww - h / w) / (h / w) < 0.15

    def test_square(self):
        assert working_shape(1000, 1000, 256, 16) == (256, 256)
        assert working_shape(100, 100, 256, 8) == (256, 256)       # small images are upsampled

    def test_transpose_symmetry(self):
        assert working_shape(300, 700, 256, 16) == working_shape(700, 300, 256, 16)[::-1]

    @pytest.mark.parametrize("h,w", [(0, 10), (10, 0), (-1, 5)])
    def test_empty_raises(self, h, w):
        with pytest.raises(ValueError):
            working_shape(h, w, 256, 16)


class TestConfig:
    def test_round_trip(self):
        c = ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8, bin_step=12.5,
                            temperature=0.5, size=320)
        d = json.loads(json.dumps(c.to_dict()))
        assert ColorizerConfig.from_dict(d) == c

    def test_defaults(self):
        c = ColorizerConfig()
        assert (c.backbone, c.output, c.final_width, c.size) == ("vgg16", "ab", 3, 256)

    def test_unknown_key(self):
        with pytest.raises(ValueError, match="unknown config keys"):
            ColorizerConfig.from_dict({**ColorizerConfig().to_dict(), "future": 1})

    @pytest.mark.parametrize("kw", [{"backbone": "resnet"}, {"output": "rgb"}])
    def test_invalid_values(self, kw):
        with pytest.raises(ValueError):
            ColorizerConfig(**kw)

    def test_frozen_and_hashable(self):
        c = ColorizerConfig()
        with pytest.raises(Exception):
            c.size = 3
        assert hash(c) == hash(ColorizerConfig())

    def test_model_keeps_config(self):
        c = ColorizerConfig(backbone="tiny-darknet", output="ab")
        assert Colorizer(c).config == c


class TestContextAndStride:
    """The 2026-12 head options: global context (Iizuka et al.) and a coarser output stride."""

    @pytest.mark.parametrize("backbone,stride", [("tiny-darknet", 2), ("tiny-darknet", 4), ("vgg16", 2)])
    def test_shapes(self, backbone, stride):
        m = Colorizer(ColorizerConfig(backbone=backbone, output="bins", final_width=8,
                                      context=16, out_stride=stride)).eval()
        L = L_of(2 * m.multiple, 3 * m.multiple, b=2)
        with torch.no_grad():
            raw = m.raw(L)
            ab = m(L)
        assert raw.shape[-2:] == (2 * m.multiple // stride, 3 * m.multiple // stride)
        assert ab.shape == (2, 2) + tuple(L.shape[-2:])

    def test_new_context_branch_is_the_identity(self):
        """film starts at zero: a model with a fresh branch computes what the same weights do without it."""
        torch.manual_seed(0)
        plain = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="ab")).eval()
        ctx = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="ab", context=32)).eval()
        missing, unexpected = ctx.load_state_dict(plain.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("head.context.") for k in missing)
        L = L_of(48, 64)
        with torch.no_grad():
            assert torch.equal(plain(L), ctx(L))

    def test_context_sees_the_whole_image(self):
        """A change far away moves every pixel's chroma only through the global branch."""
        torch.manual_seed(0)
        m = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="ab", context=16)).eval()
        torch.nn.init.normal_(m.head.context.film.weight, std=0.5)
        L = L_of(128, 128)
        L2 = L.clone()
        L2[..., :32, :32] = 0
        with torch.no_grad():
            d = (m(L) - m(L2)).abs()[..., 96:, 96:]      # far corner: outside every conv's reach
        assert d.max() > 0

    @pytest.mark.parametrize("kw", [{"out_stride": 3}, {"out_stride": 8}, {"context": -1}, {"context": 5000}])
    def test_invalid(self, kw):
        with pytest.raises(ValueError):
            ColorizerConfig(**kw)

    def test_old_files_keep_their_meaning(self):
        c = ColorizerConfig.from_dict({"backbone": "vgg16", "output": "ab", "final_width": 3, "bin_step": 10.0,
                                       "temperature": 0.38, "size": 256})
        assert c.context == 0 and c.out_stride == 1


def test_chroma_gain_scales_the_bins_readout():
    import dataclasses
    torch.manual_seed(0)
    m = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8)).eval()
    raw = torch.randn(1, m.bins.shape[0], 4, 4)
    base = m.readout(raw)
    m.config = dataclasses.replace(m.config, chroma_gain=1.2)
    assert torch.allclose(m.readout(raw), 1.2 * base, atol=1e-4)
    with pytest.raises(ValueError, match="chroma_gain"):
        ColorizerConfig(chroma_gain=10.0)
