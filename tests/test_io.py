"""tint.io: every bad file is one TintError line; what goes in comes back out (bits, alpha,
ICC, EXIF, orientation); writes are atomic and never touch an input."""
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from tint.core.errors import TintError
from tint.media.io import ImageData, max_pixels, read_image, write_image
from tint.core.pixels import icc_colorspace

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(path, w, h):
    """A PNG whose IHDR declares w x h but holds (almost) no pixel data: a bomb's header."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + _png_chunk(b"IEND", b""))
    return path


def rand(shape, dtype=np.uint8, seed=0):
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top + 1, shape, dtype=dtype)


@pytest.fixture
def jpeg(tmp_path):
    p = tmp_path / "photo.jpg"
    Image.fromarray(rand((48, 64))).save(p, quality=90)
    return p


def assert_one_line(err: TintError, *needles):
    msg = str(err)
    assert "\n" not in msg and msg
    for n in needles:
        assert n in msg, msg


# --------------------------------------------------------------------------- bad input
class TestBadInput:
    def test_missing(self, tmp_path):
        with pytest.raises(TintError) as e:
            read_image(tmp_path / "nope.jpg")
        assert_one_line(e.value, "nope.jpg", "not found")

    def test_directory(self, tmp_path):
        with pytest.raises(TintError) as e:
            read_image(tmp_path)
        assert_one_line(e.value, "directory")

    def test_empty(self, tmp_path):
        p = tmp_path / "empty.png"
        p.touch()
        with pytest.raises(TintError) as e:
            read_image(p)
        assert_one_line(e.value, "empty.png", "empty")

    def test_truncated_jpeg(self, tmp_path, jpeg):
        data = jpeg.read_bytes()
        p = tmp_path / "cut.jpg"
        p.write_bytes(data[: len(data) // 2])
        with pytest.raises(TintError) as e:
            read_image(p)
        assert_one_line(e.value, "cut.jpg", "truncated")

    @pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
    def test_truncated_png(self, tmp_path, dtype):
        p = tmp_path / "whole.png"
        write_image(p, rand((64, 64, 3), dtype))
        cut = tmp_path / "cut.png"
        cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
        with pytest.raises(TintError) as e:
            read_image(cut)
        assert_one_line(e.value, "cut.png", "truncated")

    def test_corrupt_body(self, tmp_path, jpeg):
        data = jpeg.read_bytes()
        p = tmp_path / "bad.jpg"
        p.write_bytes(data[:200] + np.random.default_rng(1).bytes(4000))
        with pytest.raises(TintError) as e:
            read_image(p)
        assert_one_line(e.value, "bad.jpg")

    @pytest.mark.parametrize("name,content", [
        ("random.jpg", np.random.default_rng(2).bytes(2000)),
        ("notes.txt", b"just some text\n"),
        ("noframes.gif", b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0) + b";"),
        ("page.svg", b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>"),
    ])
    def test_not_an_image(self, tmp_path, name, content):
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(TintError) as e:
            read_image(p)
        assert_one_line(e.value, name)

    def test_bomb_refused_before_decoding(self, tmp_path):
        p = png_header_only(tmp_path / "bomb.png", 100_000, 100_000)     # 10 Gpixel declared
        with pytest.raises(TintError) as e:
            read_image(p)
        assert_one_line(e.value, "bomb.png", "TINT_MAX_PIXELS")

    def test_bomb_limit_from_env(self, tmp_path, monkeypatch):
        p = tmp_path / "small.png"
        Image.fromarray(rand((40, 40))).save(p)
        monkeypatch.setenv("TINT_MAX_PIXELS", "1000")
        with pytest.raises(TintError) as e:
            read_image(p)
        assert_one_line(e.value, "40x40", "1,000")
        monkeypatch.setenv("TINT_MAX_PIXELS", "1600")
        assert read_image(p).pixels.shape == (40, 40, 1)

    def test_bomb_limit_between_pillow_and_ours(self, tmp_path, monkeypatch):
        # Pillow alone refuses over 2 * 89 Mpixel; our default (250 M) must decide instead.
        monkeypatch.setenv("TINT_MAX_PIXELS", str(200_000 * 1000))
        p = png_header_only(tmp_path / "big.png", 200_000, 1000)          # 200 M: allowed, then
        with pytest.raises(TintError) as e:                               # fails as truncated
            read_image(p)
        assert_one_line(e.value, "truncated")

    @pytest.mark.parametrize("value", ["lots", "-5", "0"])
    def test_bad_limit_env(self, monkeypatch, value):
        monkeypatch.setenv("TINT_MAX_PIXELS", value)
        with pytest.raises(TintError):
            max_pixels()

    def test_default_limit(self, monkeypatch):
        monkeypatch.delenv("TINT_MAX_PIXELS", raising=False)
        assert max_pixels() == 250_000_000


# --------------------------------------------------------------------------- reading modes
class TestRead:
    def test_gray_jpeg(self, jpeg):
        d = read_image(jpeg)
        assert isinstance(d, ImageData)
        assert d.pixels.shape == (48, 64, 1) and d.pixels.dtype == np.uint8
        assert d.alpha is None and d.format == "JPEG" and d.size == (64, 48)

    @pytest.mark.parametrize("mode,channels,alpha", [
        ("1", 1, False), ("L", 1, False), ("LA", 1, True), ("RGB", 3, False), ("RGBA", 3, True),
        ("P", 3, False), ("CMYK", 3, False), ("I;16", 1, False),
    ])
    def test_modes(self, tmp_path, mode, channels, alpha):
        src = Image.fromarray(rand((12, 20, 3))).convert("RGB")
        im = src.convert(mode) if mode != "I;16" else Image.fromarray(rand((12, 20), np.uint16))
        ext = "jpg" if mode == "CMYK" else "png"
        p = tmp_path / f"x.{ext}"
        im.save(p)
        d = read_image(p)
        assert d.pixels.shape == (12, 20, channels)
        assert (d.alpha is not None) == alpha
        assert d.pixels.dtype == (np.uint16 if mode == "I;16" else np.uint8)

    def test_palette_with_transparency(self, tmp_path):
        im = Image.fromarray(rand((10, 10, 3))).convert("P")
        p = tmp_path / "p.png"
        im.save(p, transparency=0)
        d = read_image(p)
        assert d.pixels.shape == (10, 10, 3) and d.alpha is not None

    def test_16bit_gray_exact(self, tmp_path):
        a = rand((9, 13), np.uint16, seed=3)
        p = tmp_path / "g16.png"
        Image.fromarray(a).save(p)
        d = read_image(p)
        assert d.pixels.dtype == np.uint16 and np.array_equal(d.pixels[:, :, 0], a)

    @pytest.mark.parametrize("ext", ["png", "tif"])
    @pytest.mark.parametrize("channels", [3, 4])
    def test_16bit_color_round_trip(self, tmp_path, ext, channels):
        a = rand((11, 17, channels), np.uint16, seed=4)
        p = tmp_path / f"c16.{ext}"
        write_image(p, a)
        d = read_image(p)
        assert d.pixels.dtype == np.uint16
        assert np.array_equal(d.rgba(), a)          # RGB order kept (OpenCV's BGR undone)

    def test_16bit_red_stays_red(self, tmp_path):
        a = np.zeros((4, 4, 3), np.uint16)
        a[..., 0] = 60000
        write_image(tmp_path / "red.png", a)
        px = np.asarray(Image.open(tmp_path / "red.png").convert("RGB"))
        assert px[0, 0, 0] > 200 and px[0, 0, 2] == 0

    @pytest.mark.parametrize("orientation", range(1, 9))
    def test_exif_orientation(self, tmp_path, orientation):
        im = Image.fromarray(rand((6, 10, 3), seed=orientation))
        exif = im.getexif()
        exif[0x0112] = orientation
        exif[0x010F] = "TintCam"
        p = tmp_path / "o.jpg"
        im.save(p, exif=exif, quality=95)
        d = read_image(p)
        ref = np.asarray(ImageOps.exif_transpose(Image.open(p)))
        assert np.array_equal(d.pixels, ref)
        carried = Image.Exif()
        carried.load(d.exif)
        assert carried.get(0x0112) == 1 and carried.get(0x010F) == "TintCam"

    def test_icc_kept(self, tmp_path):
        p = tmp_path / "icc.png"
        Image.fromarray(rand((8, 8, 3))).save(p, icc_profile=SRGB_ICC)
        assert read_image(p).icc == SRGB_ICC
        assert icc_colorspace(SRGB_ICC) == "RGB"

    def test_real_photos(self, data_dir):
        photos = sorted((data_dir / "bw").glob("*.jpg"))[:3]
        for p in photos:
            d = read_image(p)
            assert d.pixels.ndim == 3 and d.pixels.shape[2] in (1, 3) and d.pixels.dtype == np.uint8


# --------------------------------------------------------------------------- writing
class TestWrite:
    @pytest.mark.parametrize("ext", ["jpg", "jpeg", "png", "tif", "tiff", "webp", "bmp"])
    def test_formats(self, tmp_path, ext):
        a = rand((10, 14, 3))
        p = tmp_path / f"out.{ext}"
        assert write_image(p, a) == []
        d = read_image(p)
        assert d.pixels.shape == (10, 14, 3)
        if ext in ("png", "tif", "tiff", "bmp"):
            assert np.array_equal(d.pixels, a)

    def test_unknown_extension(self, tmp_path):
        with pytest.raises(TintError) as e:
            write_image(tmp_path / "out.gif", rand((4, 4, 3)))
        assert_one_line(e.value, ".gif")
        assert not (tmp_path / "out.gif").exists()

    @pytest.mark.parametrize("ext", ["png", "webp", "tif"])
    def test_alpha_kept(self, tmp_path, ext):
        a = rand((8, 9, 4), seed=5)
        p = tmp_path / f"a.{ext}"
        write_image(p, a, quality=100)
        d = read_image(p)
        assert d.alpha is not None and np.array_equal(d.alpha, a[:, :, 3])

    def test_alpha_flattened_for_jpeg_with_note(self, tmp_path):
        a = np.zeros((8, 8, 4), np.uint8)       # black, fully transparent -> white
        notes = write_image(tmp_path / "a.jpg", a)
        assert any("alpha" in n for n in notes)
        d = read_image(tmp_path / "a.jpg")
        assert d.alpha is None and d.pixels.min() > 250

    @pytest.mark.parametrize("ext", ["jpg", "png", "webp", "tif"])
    def test_icc_and_exif_kept(self, tmp_path, ext):
        exif = Image.Exif()
        exif[0x010F] = "TintCam"
        p = tmp_path / f"m.{ext}"
        write_image(p, rand((8, 8, 3)), icc=SRGB_ICC, exif=exif.tobytes())
        with Image.open(p) as im:
            assert im.info.get("icc_profile") == SRGB_ICC
            assert im.getexif().get(0x010F) == "TintCam"

    def test_icc_and_exif_in_16bit_png(self, tmp_path):
        exif = Image.Exif()
        exif[0x010F] = "TintCam"
        p = tmp_path / "m16.png"
        write_image(p, rand((8, 8, 3), np.uint16), icc=SRGB_ICC, exif=exif.tobytes())
        d = read_image(p)
        assert d.pixels.dtype == np.uint16 and d.icc == SRGB_ICC
        carried = Image.Exif()
        carried.load(d.exif)
        assert carried.get(0x010F) == "TintCam"

    def test_gray_profile_not_put_on_rgb(self, tmp_path):
        gray_icc = SRGB_ICC[:16] + b"GRAY" + SRGB_ICC[20:]
        p = tmp_path / "g.png"
        write_image(p, rand((4, 4, 3)), icc=gray_icc)
        assert "icc_profile" not in Image.open(p).info

    def test_16bit_to_8bit_formats(self, tmp_path):
        a = np.full((4, 4, 3), 65535, np.uint16)
        notes = write_image(tmp_path / "x.jpg", a)
        assert any("8" in n for n in notes)
        assert read_image(tmp_path / "x.jpg").pixels.min() >= 254

    def test_refuses_existing_unless_overwrite(self, tmp_path):
        p = tmp_path / "x.png"
        write_image(p, rand((4, 4, 3), seed=1))
        with pytest.raises(TintError) as e:
            write_image(p, rand((4, 4, 3), seed=2))
        assert_one_line(e.value, "exists")
        write_image(p, rand((4, 4, 3), seed=2), overwrite=True)
        assert np.array_equal(read_image(p).pixels, rand((4, 4, 3), seed=2))

    def test_never_over_an_input(self, tmp_path):
        src = tmp_path / "in.png"
        write_image(src, rand((4, 4, 3), seed=1))
        before = src.read_bytes()
        link = tmp_path / "hard.png"
        os.link(src, link)
        for target in (src, link, tmp_path / "." / "in.png"):
            with pytest.raises(TintError) as e:
                write_image(target, rand((4, 4, 3), seed=2), overwrite=True, protect=[src])
            assert_one_line(e.value, "input")
        assert src.read_bytes() == before

    def test_no_temp_left_after_failure(self, tmp_path, monkeypatch):
        def broken_save(self, fp, format=None, **kw):
            with open(fp, "wb") as f:
                f.write(b"half a file")
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(Image.Image, "save", broken_save)
        with pytest.raises(TintError) as e:
            write_image(tmp_path / "x.png", rand((4, 4, 3)))
        assert_one_line(e.value, "No space left")
        assert list(tmp_path.iterdir()) == []

    def test_no_temp_left_after_interrupt(self, tmp_path, monkeypatch):
        def interrupted(self, fp, format=None, **kw):
            open(fp, "wb").close()
            raise KeyboardInterrupt
        monkeypatch.setattr(Image.Image, "save", interrupted)
        with pytest.raises(KeyboardInterrupt):
            write_image(tmp_path / "x.png", rand((4, 4, 3)))
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
    def test_written_file_has_normal_permissions(self, tmp_path):
        mask = os.umask(0o022)
        os.umask(mask)
        write_image(tmp_path / "x.png", rand((4, 4, 3)))
        assert (tmp_path / "x.png").stat().st_mode & 0o777 == 0o666 & ~mask

    def test_missing_folder(self, tmp_path):
        with pytest.raises(TintError) as e:
            write_image(tmp_path / "no" / "x.png", rand((4, 4, 3)))
        assert_one_line(e.value, "does not exist")

    def test_output_is_directory(self, tmp_path):
        (tmp_path / "d.png").mkdir()
        with pytest.raises(TintError):
            write_image(tmp_path / "d.png", rand((4, 4, 3)), overwrite=True)

    @pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 5), np.uint8),
                                     np.zeros((0, 4, 3), np.uint8)])
    def test_bad_pixels(self, tmp_path, bad):
        with pytest.raises(ValueError):
            write_image(tmp_path / "x.png", bad)
