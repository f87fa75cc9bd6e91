"""tint.pixels: the one place that decides sizes and how much work an image causes."""
import math

import numpy as np
import pytest

from tint.core.errors import TintError
from tint.core.pixels import MAX_SIZE, MIN_SIZE, check_pixels, check_saturation, check_size, has_colour, working_shape


class TestCheckSize:
    @pytest.mark.parametrize("good", [16, 256, 2048, 64.0, np.int64(100)])
    def test_accepted(self, good):
        assert check_size(good) == int(good) and isinstance(check_size(good), int)

    @pytest.mark.parametrize("bad", [0, -1, 15, 2049, 99999, 64.5, float("nan"), float("inf"), True, "256", None])
    def test_refused_with_the_range(self, bad):
        with pytest.raises(TintError, match=r"16\.\.2048|number|whole|finite"):
            check_size(bad)

    def test_range_constants(self):
        assert (MIN_SIZE, MAX_SIZE) == (16, 2048)


class TestWorkingShapeBounds:
    @pytest.mark.parametrize("h,w", [(1, 1_000_000), (1_000_000, 1), (2, 700_000), (700_000, 2),
                                     (1, 250_000_000), (3, 5), (10_000, 10_000)])
    @pytest.mark.parametrize("size,multiple", [(16, 16), (256, 16), (256, 8), (2048, 16)])
    def test_pixels_bounded_by_size(self, h, w, size, multiple):
        wh, ww = working_shape(h, w, size, multiple)
        assert wh % multiple == 0 and ww % multiple == 0 and wh >= multiple and ww >= multiple
        assert wh * ww <= (size + multiple) ** 2

    def test_thin_image_was_the_13_gb_case(self):
        # before: (16, 256000) for a 1 x 1,000,000 PNG at size 256; now about size*size pixels
        wh, ww = working_shape(1, 1_000_000, 256, 16)
        assert wh == 16 and ww * wh <= 272 ** 2

    def test_normal_photos_unchanged(self):
        # aspect ratios up to about 14:1 keep the plain rule (about size*size, aspect kept)
        for h, w in ((480, 640), (2000, 3000), (1000, 1000), (100, 1300)):
            s = 256 / math.sqrt(h * w)
            assert working_shape(h, w, 256, 16) == (max(16, round(h * s / 16) * 16), max(16, round(w * s / 16) * 16))

    def test_size_is_checked_here_too(self):
        for bad in (0, 15, 99999):
            with pytest.raises(TintError):
                working_shape(100, 100, bad, 16)


def test_check_saturation():
    assert check_saturation(0) == 0.0 and check_saturation(1) == 1.0 and check_saturation(2.0) == 2.0
    for bad in (-0.1, 2.01, float("nan"), "1", None, True):
        with pytest.raises(TintError):
            check_saturation(bad)


class TestCheckPixels:
    def test_float_outside_unit_range_is_refused_with_the_range(self):
        with pytest.raises(TintError, match=r"\[0, 1\].*0\.\.255.*divide by 255"):
            check_pixels(np.linspace(0, 255, 12, dtype=np.float32).reshape(3, 4))
        with pytest.raises(TintError, match=r"-0\.5\.\.1"):
            check_pixels(np.array([[-0.5, 1.0]]))
        with pytest.raises(TintError, match="NaN"):
            check_pixels(np.array([[np.nan, 0.5]], np.float32))

    def test_rounding_noise_is_accepted(self):
        a = np.array([[-1e-6, 1 + 1e-6]])
        assert check_pixels(a) is a

    def test_byte_order_and_dtypes(self):
        big = np.arange(6, dtype=">u2").reshape(2, 3)
        assert check_pixels(big).dtype == np.uint16 and (check_pixels(big) == big).all()
        assert check_pixels(np.zeros((2, 2), ">f4")).dtype == np.float32
        for bad in (np.int32, np.int64, np.bool_, np.complex64, np.int8, object):
            with pytest.raises(TintError, match="dtype"):
                check_pixels(np.zeros((2, 2), bad))


class TestHasColour:
    def test_gray_and_toned_are_not_colour(self):
        y, x = np.mgrid[0:90, 0:120]
        g = ((x * 2 + y) % 256).astype(np.float64)
        assert not has_colour(np.dstack([g] * 3).astype(np.uint8))
        sepia = np.dstack([g, g * 0.85, g * 0.65]).clip(0, 255).astype(np.uint8)   # tint follows lightness
        assert not has_colour(sepia)
        assert not has_colour((np.dstack([g] * 3) * 257).astype(np.uint16))

    def test_colour_photo(self):
        rng = np.random.default_rng(0)
        assert has_colour(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        half = np.zeros((40, 40, 3), np.uint8)
        half[:, :20] = (200, 40, 40)
        half[:, 20:] = (40, 90, 200)
        assert has_colour(half)

    def test_real_photos(self, data_dir):
        from PIL import Image
        for name, want in (("dev", True), ("bw", False)):
            for p in sorted((data_dir / name).glob("*.jpg"))[:6]:
                assert has_colour(np.asarray(Image.open(p).convert("RGB"))) == want, p
