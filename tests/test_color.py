"""tint.color, kornia style: a class per function with shapes, bad input, values against
scikit-image, round trips and known values."""
import numpy as np
import pytest
import torch

from tint.core.color import gray_to_lightness, lab_to_rgb, lab_to_rgb_from_parts, linear_to_srgb, rgb_to_lab, rgb_to_lightness, srgb_to_linear

skcolor = pytest.importorskip("skimage.color")

SHAPES = [(3, 1, 1), (3, 4, 5), (2, 3, 7, 3), (2, 2, 3, 5, 6)]   # (*, C, H, W) with C at -3


def random_rgb(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype)


def to_hwc(x: torch.Tensor) -> np.ndarray:
    return x.movedim(-3, -1).double().numpy()


def to_chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).movedim(-1, -3)


def real_rgb(data_dir, n=2) -> torch.Tensor:
    """A few real colour photos from dev/, as (N, 3, 64, 64) float64 crops."""
    from PIL import Image
    files = sorted(p for p in (data_dir / "dev").rglob("*") if p.suffix.lower() in (".jpg", ".png"))[:n]
    if not files:
        pytest.skip("no dev photos")
    crops = [np.asarray(Image.open(f).convert("RGB").resize((64, 64)), np.float64) / 255 for f in files]
    return to_chw(np.stack(crops))


def in_gamut_lab(n=2000, seed=0) -> torch.Tensor:
    """Lab values of random sRGB colours: a, b inside the gamut so lab_to_rgb need not clip."""
    return rgb_to_lab(random_rgb(3, 1, n, seed=seed, dtype=torch.float64))


class TestSrgbLinear:
    def test_inverse(self):
        x = random_rgb(3, 8, 8, dtype=torch.float64)
        assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12)

    def test_known_values(self):
        x = torch.tensor([0.0, 0.04045, 0.5, 1.0], dtype=torch.float64)
        ref = np.where(x.numpy() > 0.04045, ((x.numpy() + 0.055) / 1.055) ** 2.4, x.numpy() / 12.92)
        assert np.allclose(srgb_to_linear(x).numpy(), ref)
        assert srgb_to_linear(torch.tensor(1.0)).item() == pytest.approx(1.0)
        assert srgb_to_linear(torch.tensor(0.5)).item() == pytest.approx(0.21404, abs=1e-5)

    def test_monotonic(self):
        x = torch.linspace(0, 1, 1001, dtype=torch.float64)
        assert (srgb_to_linear(x).diff() > 0).all() and (linear_to_srgb(x).diff() > 0).all()

    def test_continuous_at_the_knee(self):
        eps = 1e-9
        k = torch.tensor([0.04045 - eps, 0.04045 + eps], dtype=torch.float64)
        a, b = srgb_to_linear(k)
        assert abs(a - b) < 1e-6


class TestRgbToLab:
    @pytest.mark.parametrize("shape", SHAPES)
    def test_shapes(self, shape):
        assert rgb_to_lab(random_rgb(*shape)).shape == shape

    def test_does_not_change_input(self):
        x = random_rgb(3, 4, 4)
        y = x.clone()
        rgb_to_lab(x)
        assert torch.equal(x, y)

    @pytest.mark.parametrize("bad", [torch.rand(4, 4), torch.rand(2, 4, 4), torch.rand(1, 4, 4, 4)])
    def test_bad_shape(self, bad):
        with pytest.raises(ValueError):
            rgb_to_lab(bad)

    def test_bad_type(self):
        with pytest.raises(TypeError):
            rgb_to_lab(np.zeros((3, 2, 2)))
        with pytest.raises(ValueError):
            rgb_to_lab(torch.zeros(3, 2, 2, dtype=torch.uint8))

    @pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-6), (torch.float32, 2e-3)])
    def test_matches_skimage_random(self, dtype, atol):
        x = random_rgb(2, 3, 16, 16, seed=1, dtype=dtype)
        ref = skcolor.rgb2lab(to_hwc(x))
        assert np.allclose(to_hwc(rgb_to_lab(x)), ref, atol=atol)

    def test_matches_skimage_real(self, data_dir):
        x = real_rgb(data_dir)
        assert np.allclose(to_hwc(rgb_to_lab(x)), skcolor.rgb2lab(to_hwc(x)), atol=1e-6)

    def test_known_values(self):
        # skimage's matrix rows do not sum exactly to its white point: a, b off by ~0.005
        white = rgb_to_lab(torch.ones(3, 1, 1, dtype=torch.float64)).flatten()
        assert torch.allclose(white, torch.tensor([100.0, 0, 0], dtype=torch.float64), atol=1e-2)
        black = rgb_to_lab(torch.zeros(3, 1, 1, dtype=torch.float64)).flatten()
        assert torch.allclose(black, torch.zeros(3, dtype=torch.float64), atol=1e-6)
        # sRGB red in D65 Lab (Lindbloom): L 53.24, a 80.09, b 67.20
        red = rgb_to_lab(torch.tensor([1.0, 0, 0], dtype=torch.float64).view(3, 1, 1)).flatten()
        assert torch.allclose(red, torch.tensor([53.24, 80.09, 67.20], dtype=torch.float64), atol=0.05)

    def test_grays_are_neutral(self):
        g = torch.linspace(0, 1, 50, dtype=torch.float64).view(1, 1, 50).expand(3, 1, 50)
        lab = rgb_to_lab(g)
        assert lab[1:].abs().max() < 1e-2
        assert (lab[0].diff() > 0).all()

    def test_gradient_is_finite(self):
        x = torch.cat((torch.zeros(3, 1, 2), random_rgb(3, 1, 4)), -1).requires_grad_()
        rgb_to_lab(x).sum().backward()
        assert torch.isfinite(x.grad).all()


class TestLabToRgb:
    @pytest.mark.parametrize("shape", SHAPES)
    def test_shapes(self, shape):
        lab = rgb_to_lab(random_rgb(*shape))
        assert lab_to_rgb(lab).shape == shape

    @pytest.mark.parametrize("bad", [torch.rand(2, 4, 4), torch.rand(4, 4)])
    def test_bad_shape(self, bad):
        with pytest.raises(ValueError):
            lab_to_rgb(bad)

    def test_bad_type(self):
        with pytest.raises(TypeError):
            lab_to_rgb([[[0.0]], [[0.0]], [[0.0]]])

    def test_round_trip(self):
        x = random_rgb(2, 3, 20, 20, seed=2, dtype=torch.float64)
        assert torch.allclose(lab_to_rgb(rgb_to_lab(x)), x, atol=1e-6)

    def test_round_trip_float32(self):
        x = random_rgb(3, 64, 64, seed=3)
        assert (lab_to_rgb(rgb_to_lab(x)) - x).abs().max() < 1e-3

    def test_matches_skimage_in_gamut(self):
        lab = in_gamut_lab()
        ref = skcolor.lab2rgb(to_hwc(lab))
        assert np.allclose(to_hwc(lab_to_rgb(lab)), ref, atol=1e-6)

    def test_matches_skimage_out_of_gamut(self):
        g = torch.Generator().manual_seed(4)
        L = torch.rand(1, 8, 8, generator=g, dtype=torch.float64) * 100
        ab = (torch.rand(2, 8, 8, generator=g, dtype=torch.float64) - 0.5) * 256
        lab = torch.cat((L, ab))
        with pytest.warns(UserWarning):          # skimage warns when it clips negative z
            ref = skcolor.lab2rgb(to_hwc(lab))
        assert np.allclose(to_hwc(lab_to_rgb(lab)), ref, atol=1e-6)

    def test_clipped_to_unit_range(self):
        lab = torch.tensor([50.0, 127.0, -128.0]).view(3, 1, 1)
        out = lab_to_rgb(lab)
        assert out.min() >= 0 and out.max() <= 1

    def test_known_values(self):
        out = lab_to_rgb(torch.tensor([100.0, 0, 0], dtype=torch.float64).view(3, 1, 1)).flatten()
        assert torch.allclose(out, torch.ones(3, dtype=torch.float64), atol=1e-4)
        out = lab_to_rgb(torch.zeros(3, 1, 1, dtype=torch.float64)).flatten()
        assert torch.allclose(out, torch.zeros(3, dtype=torch.float64), atol=1e-6)


class TestRgbToLightness:
    @pytest.mark.parametrize("shape", SHAPES)
    def test_shapes(self, shape):
        out = rgb_to_lightness(random_rgb(*shape))
        assert out.shape == shape[:-3] + (1,) + shape[-2:]

    def test_bad_shape(self):
        with pytest.raises(ValueError):
            rgb_to_lightness(torch.rand(1, 4, 4))

    def test_equals_L_of_lab(self):
        x = random_rgb(2, 3, 9, 11, seed=5, dtype=torch.float64)
        assert torch.allclose(rgb_to_lightness(x), rgb_to_lab(x)[:, :1], atol=1e-10)

    def test_matches_skimage_real(self, data_dir):
        x = real_rgb(data_dir)
        ref = skcolor.rgb2lab(to_hwc(x))[..., 0]
        assert np.allclose(rgb_to_lightness(x)[:, 0].numpy(), ref, atol=1e-6)


class TestGrayToLightness:
    @pytest.mark.parametrize("shape", [(1, 1, 1), (1, 5, 6), (4, 1, 3, 3)])
    def test_shapes(self, shape):
        assert gray_to_lightness(torch.rand(shape)).shape == shape

    def test_bad_shape(self):
        with pytest.raises(ValueError):
            gray_to_lightness(torch.rand(3, 4, 4))

    def test_equals_lightness_of_gray_rgb(self):
        g = torch.linspace(0, 1, 256, dtype=torch.float64).view(1, 1, 256)
        assert torch.allclose(gray_to_lightness(g), rgb_to_lightness(g.expand(3, 1, 256)), atol=1e-9)

    def test_known_values(self):
        ends = gray_to_lightness(torch.tensor([0.0, 1.0], dtype=torch.float64).view(1, 1, 2)).flatten()
        assert torch.allclose(ends, torch.tensor([0.0, 100.0], dtype=torch.float64), atol=1e-4)
        # sRGB 119/255 is the classic middle gray: L about 50
        mid = gray_to_lightness(torch.tensor(119 / 255, dtype=torch.float64).view(1, 1, 1)).item()
        assert mid == pytest.approx(50.0, abs=0.3)

    def test_matches_skimage_gray(self):
        g = random_rgb(1, 8, 8, seed=6, dtype=torch.float64)
        ref = skcolor.rgb2lab(np.repeat(to_hwc(g), 3, axis=-1))[..., 0]
        assert np.allclose(gray_to_lightness(g)[0].numpy(), ref, atol=1e-6)


class TestLabFromParts:
    def test_equals_lab_to_rgb(self):
        lab = in_gamut_lab(100).view(3, 10, 10)
        out = lab_to_rgb_from_parts(lab[None, :1], lab[None, 1:])
        assert torch.allclose(out, lab_to_rgb(lab)[None])

    def test_bad_shapes(self):
        with pytest.raises(ValueError):
            lab_to_rgb_from_parts(torch.rand(2, 4, 4), torch.rand(2, 4, 4))
        with pytest.raises(ValueError):
            lab_to_rgb_from_parts(torch.rand(1, 4, 4), torch.rand(3, 4, 4))

    def test_gray_L_with_zero_ab_is_gray(self):
        L = torch.linspace(0, 100, 30, dtype=torch.float64).view(1, 1, 30)
        rgb = lab_to_rgb_from_parts(L, torch.zeros(2, 1, 30, dtype=torch.float64))
        # not exactly 0: the same white-point rounding as above, far below one 8-bit step
        assert (rgb.max(0).values - rgb.min(0).values).max() < 1e-4
