"""tint.colorize / Runner: every input kind, sizes kept, alpha passed through, the input's
lightness kept, and the strip-wise join equal to the one-shot join."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tint
import tint.api as api
import tint.core.pipeline as pipeline
from tint.core.pipeline import join_chroma, resize_lightness, upsample_chroma_rows
from tint.core.color import gray_to_lightness, rgb_to_lightness
from tint.core.errors import TintError

SIZE = 64           # working size for tests: small and fast


@pytest.fixture(scope="module")
def runner(tiny_weights):
    return tint.load(tiny_weights, device="cpu")


def gray(h=30, w=44, dtype=np.uint8, seed=0):
    y, x = np.mgrid[0:h, 0:w]
    g = ((x * 5 + y * 3 + seed) % 256).astype(np.float64) / 255
    if dtype == np.uint8:
        return np.rint(g * 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.rint(g * 65535).astype(np.uint16)
    return g.astype(dtype)


def lightness_of(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8/uint16/float -> L (H, W)."""
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(rgb.dtype, 1.0)
    return rgb_to_lightness(torch.from_numpy(rgb.astype(np.float64) / scale).permute(2, 0, 1))[0]


def gray_lightness(g: np.ndarray) -> torch.Tensor:
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(g.dtype, 1.0)
    return gray_to_lightness(torch.from_numpy(g.astype(np.float64) / scale)[None])[0]


@pytest.fixture
def neutral(runner, monkeypatch):
    """The runner with its network replaced by 'no colour' (ab = 0): nothing clips, so
    the output's lightness must be the input's to within 8-bit rounding."""
    monkeypatch.setattr(runner, "chroma", lambda L: torch.zeros(L.shape[0], 2, *L.shape[2:]))
    return runner


# --------------------------------------------------------------------------- PIL
class TestPIL:
    @pytest.mark.parametrize("mode,out_mode", [("L", "RGB"), ("LA", "RGBA"), ("RGB", "RGB"),
                                               ("RGBA", "RGBA"), ("P", "RGB"), ("1", "RGB")])
    def test_modes(self, runner, mode, out_mode):
        src = Image.fromarray(gray()).convert("RGB")
        if "A" in mode:
            src.putalpha(Image.fromarray(gray(seed=50)))
        im = src.convert(mode)
        out = tint.colorize(im, runner=runner, size=SIZE)
        assert isinstance(out, Image.Image)
        assert out.mode == out_mode and out.size == im.size
        if "A" in mode:
            assert np.array_equal(np.asarray(out)[:, :, 3], np.asarray(im)[:, :, -1])

    def test_16bit(self, runner):
        im = Image.fromarray(gray(dtype=np.uint16))
        assert im.mode == "I;16"
        out = tint.colorize(im, runner=runner, size=SIZE)
        assert out.mode == "RGB" and out.size == im.size

    def test_exif_rotated(self, runner, tmp_path):
        im = Image.fromarray(gray(20, 36))
        exif = im.getexif()
        exif[0x0112] = 6            # stored sideways: shown 20 wide, 36 high
        im.save(tmp_path / "r.jpg", exif=exif)
        out = tint.colorize(Image.open(tmp_path / "r.jpg"), runner=runner, size=SIZE)
        assert out.size == (20, 36)

    def test_icc_kept(self, runner):
        from PIL import ImageCms
        icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        im = Image.fromarray(gray()).convert("RGB")
        im.info["icc_profile"] = icc
        assert tint.colorize(im, runner=runner, size=SIZE).info.get("icc_profile") == icc

    def test_input_unchanged(self, runner):
        im = Image.fromarray(gray())
        before = np.asarray(im).copy()
        tint.colorize(im, runner=runner, size=SIZE)
        assert np.array_equal(np.asarray(im), before)


# --------------------------------------------------------------------------- numpy
class TestArrays:
    @pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
    def test_dtypes_and_shape(self, runner, dtype):
        g = gray(dtype=dtype)
        out = tint.colorize(g, runner=runner, size=SIZE)
        assert out.dtype == dtype and out.shape == g.shape + (3,)
        if np.issubdtype(dtype, np.floating):
            assert out.min() >= 0 and out.max() <= 1

    @pytest.mark.parametrize("channels", [1, 2, 3, 4])
    def test_channels(self, runner, channels):
        x = np.repeat(gray()[:, :, None], channels, axis=2)
        if channels in (2, 4):
            x[:, :, -1] = gray(seed=99)
        out = tint.colorize(x, runner=runner, size=SIZE)
        assert out.shape == x.shape[:2] + (4 if channels in (2, 4) else 3,)
        if channels in (2, 4):
            assert np.array_equal(out[:, :, 3], x[:, :, -1])

    @pytest.mark.parametrize("h,w", [(1, 1), (1, 200), (333, 7), (97, 131)])
    def test_odd_sizes(self, runner, h, w):
        assert tint.colorize(gray(h, w), runner=runner, size=SIZE).shape == (h, w, 3)

    def test_bad_arrays(self, runner):
        for bad in (np.zeros((4, 4), np.int32), np.zeros((4, 4, 5), np.uint8), np.zeros((0, 4), np.uint8),
                    np.zeros((2, 4, 4, 3), np.uint8), np.full((4, 4), np.nan, np.float32)):
            with pytest.raises(TintError):
                tint.colorize(bad, runner=runner, size=SIZE)

    def test_lightness_kept_exactly_without_clipping(self, neutral):
        for dtype, tol in ((np.uint8, 0.3), (np.uint16, 0.01), (np.float32, 1e-3)):
            g = gray(dtype=dtype)
            out = neutral.colorize_array(g, size=SIZE)
            assert (lightness_of(out) - gray_lightness(g)).abs().max() < tol, dtype

    def test_lightness_kept_by_the_real_network(self, runner):
        """Random weights predict real chroma; away from black and white nothing clips."""
        g = gray(60, 90)
        out = runner.colorize_array(g, size=SIZE)
        L_in, L_out = gray_lightness(g), lightness_of(out)
        mid = (L_in > 20) & (L_in < 80)
        assert (L_out - L_in)[mid].abs().max() < 0.6
        assert (L_out - L_in).abs().median() < 0.3
        assert np.ptp(out.astype(int), axis=2).max() > 0          # it did add colour

    def test_color_input_reduced_to_lightness(self, runner):
        rng = np.random.default_rng(0)
        rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
        L = lightness_of(rgb)                        # the input's colour plays no part
        ref = runner.colorize_lightness(L.float()[None, None], size=SIZE)
        out = runner.colorize_array(rgb, size=SIZE).astype(np.float64) / 255
        assert np.abs(out - ref[0].permute(1, 2, 0).numpy()).max() <= 1 / 255 + 1e-6

    @pytest.mark.parametrize("strip_rows", [1, 7, 33])
    def test_strips_equal_full_join(self, runner, monkeypatch, strip_rows):
        g = gray(61, 45, dtype=np.float32)
        L = gray_to_lightness(torch.from_numpy(g)[None, None])
        ab = runner.chroma(resize_lightness(L, runner.working_shape(61, 45, SIZE)))
        ref = join_chroma(L, ab)[0].permute(1, 2, 0).numpy()
        monkeypatch.setattr(pipeline, "STRIP_PIXELS", 45 * strip_rows)
        out = runner.colorize_array(g, size=SIZE)
        assert np.abs(out - ref).max() < 1e-4

    def test_upsample_rows_match_interpolate(self):
        ab = torch.randn(2, 2, 5, 7, dtype=torch.float64)
        full = torch.nn.functional.interpolate(ab, size=(23, 17), mode="bilinear", align_corners=False)
        parts = torch.cat([upsample_chroma_rows(ab, 23, 17, r, min(23, r + 6)) for r in range(0, 23, 6)], 2)
        assert torch.allclose(parts, full, atol=1e-12)

    def test_size_changes_working_resolution(self, runner):
        assert runner.working_shape(300, 400, 64) != runner.working_shape(300, 400, 256)
        assert all(s % runner.model.multiple == 0 for s in runner.working_shape(301, 407, 100))


# --------------------------------------------------------------------------- tensors
class TestTensors:
    def test_uint8_chw(self, runner):
        x = torch.from_numpy(gray())[None]                      # (1, H, W)
        out = tint.colorize(x, runner=runner, size=SIZE)
        assert out.dtype == torch.uint8 and out.shape == (3, 30, 44)

    @pytest.mark.parametrize("c", [1, 3])
    def test_float_batch(self, runner, c):
        x = torch.rand(2, c, 24, 40)
        out = tint.colorize(x, runner=runner, size=SIZE)
        assert out.dtype == torch.float32 and out.shape == (2, 3, 24, 40)
        assert out.min() >= 0 and out.max() <= 1

    def test_tensor_matches_array(self, runner):
        g = gray()
        a = runner.colorize_array(g, size=SIZE)
        t = runner.colorize_tensor(torch.from_numpy(g)[None, None], size=SIZE)[0].permute(1, 2, 0).numpy()
        assert np.abs(a.astype(int) - t.astype(int)).max() <= 1

    @pytest.mark.parametrize("shape", [(2, 24, 40, 1), (1, 2, 24, 40), (24, 40)])
    def test_bad_shapes(self, runner, shape):
        with pytest.raises(TintError):
            tint.colorize(torch.rand(shape), runner=runner, size=SIZE)


# --------------------------------------------------------------------------- the rest
class TestRunner:
    def test_load_is_cached(self, tiny_weights, runner):
        assert tint.load(tiny_weights, device="cpu") is runner

    def test_bad_things(self, tiny_weights, tmp_path):
        with pytest.raises(TintError):
            tint.colorize("photo.jpg", weights=tiny_weights, device="cpu")
        with pytest.raises(TintError):
            tint.colorize(12, weights=tiny_weights, device="cpu")
        with pytest.raises(TintError):
            api.Runner(tiny_weights, device="cpu", size=8)
        with pytest.raises(TintError):
            api.Runner(tiny_weights, device="cpu", precision="int4")
        with pytest.raises(TintError):
            api.Runner(tmp_path / "missing.safetensors", device="cpu")
        with pytest.raises(TintError):
            api.pick_device("tpu:7")

    @pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
    def test_cuda_missing(self):
        with pytest.raises(TintError, match="CUDA"):
            api.pick_device("cuda")

    def test_no_default_weights(self, monkeypatch):
        monkeypatch.setattr(tint.core.weights, "REGISTRY", {})
        with pytest.raises(TintError, match="--weights"):
            tint.core.weights.resolve(None)

    def test_thread_safe(self, runner):
        from concurrent.futures import ThreadPoolExecutor
        g = gray()
        ref = runner.colorize_array(g, size=SIZE)
        with ThreadPoolExecutor(4) as ex:
            outs = list(ex.map(lambda _: runner.colorize_array(g, size=SIZE), range(4)))
        assert all(np.array_equal(o, ref) for o in outs)


def test_bundled_default_model_colorizes_the_sample():
    """The shipped weights load by name, match their registry hash and give colour."""
    import tint.core.weights
    from PIL import Image
    path = tint.core.weights.resolve(None)
    assert path.name == "tint-default.safetensors"
    img = Image.open(Path(tint.__file__).parent / "samples" / "sample.jpg")
    out = np.asarray(tint.colorize(img, device="cpu", size=128)).astype(np.float32)
    assert out.shape[:2] == (img.height, img.width)
    chroma = np.abs(out - out.mean(axis=2, keepdims=True)).mean()
    assert chroma > 2.0                                     # not a gray copy of the input


def test_fast_name_is_the_default_network_at_128():
    from tint.core.weights import REGISTRY, named_size
    r = tint.Runner("fast", device="cpu", backend="eager")
    d = tint.Runner(device="cpu", backend="eager")
    assert r.size == 128 and d.size == d.config.size == 256 and named_size("fast") == 128
    assert r.weights_path == d.weights_path and REGISTRY["fast"].sha256 == REGISTRY["default"].sha256
    assert tint.Runner("fast", device="cpu", backend="eager", size=192).size == 192
