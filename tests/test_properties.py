"""Property-based (hypothesis): image opening, the working shape and the colorize entry
points over random sizes (1..10^6 per side, within the pixel limit), every PIL mode and
every numpy dtype.  Never a traceback: a result or a TintError; bounded memory (an
address-space cap above what the process already holds) and time per example."""
import io
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import tint  # noqa: E402
from tint.core.errors import TintError
from tint.core.pixels import working_shape

BUDGET = 200_000               # pixels per random image: each example stays well under a second
SECONDS = 30                   # per example, generous for a shared CPU
EXTRA_MB = 1536                # address space an example may add to the process
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def runner(tiny_weights):
    return tint.load(tiny_weights, device="cpu", size=32)


@st.composite
def shapes(draw, budget=BUDGET):
    """(h, w): either side anywhere in 1..10^6, the product within the budget."""
    h = draw(st.one_of(st.integers(1, 64), st.integers(1, 10 ** 6)))
    h = min(h, budget)
    w = draw(st.integers(1, max(1, min(10 ** 6, budget // h))))
    return (h, w) if draw(st.booleans()) else (w, h)


def _vm_bytes() -> int | None:
    try:
        return int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        return None


def timed(fn, *a, **k):
    """fn(*a, **k) with the address space capped at what the process holds + EXTRA_MB (an
    allocation like the old bugs' fails at once instead of swapping), and a time limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover (not Linux)
        resource = None
    vm = _vm_bytes() if resource is not None else None
    if vm is not None:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = vm + (EXTRA_MB << 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    t = time.perf_counter()
    try:
        return fn(*a, **k)
    finally:
        if vm is not None:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        assert time.perf_counter() - t < SECONDS


# --------------------------------------------------------------------------- the working shape
@settings(max_examples=400, **SETTINGS)
@given(h=st.integers(1, 10 ** 6), w=st.integers(1, 10 ** 6), size=st.integers(16, 2048),
       multiple=st.sampled_from([8, 16, 32]))
def test_working_shape_is_bounded(h, w, size, multiple):
    wh, ww = working_shape(h, w, size, multiple)
    assert wh % multiple == 0 and ww % multiple == 0 and wh >= multiple and ww >= multiple
    assert wh * ww <= (size + multiple) ** 2
    if max(h, w) / min(h, w) < 10 and min(wh, ww) > 2 * multiple:        # ordinary photos: aspect kept
        assert abs(math.log((wh / ww) / (h / w))) < 0.3


@settings(max_examples=100, **SETTINGS)
@given(size=st.one_of(st.integers(-10 ** 6, 10 ** 6), st.floats(allow_nan=True), st.none(), st.text(max_size=3)))
def test_working_shape_sizes_are_validated(size):
    try:
        working_shape(100, 100, size, 16)
    except TintError as e:
        assert "working size" in str(e)
    else:
        assert 16 <= size <= 2048


# --------------------------------------------------------------------------- arrays and tensors
DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
          np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128, object,
          "datetime64[s]", "timedelta64[s]", ">u2", ">f4", "<f8", "U1", "V2"]


@st.composite
def arrays(draw):
    h, w = draw(shapes())
    layout = draw(st.sampled_from(["hw", "hw1", "hw2", "hw3", "hw4", "hw5", "1d", "4d"]))
    shape = {"hw": (h, w), "hw1": (h, w, 1), "hw2": (h, w, 2), "hw3": (h, w, 3), "hw4": (h, w, 4),
             "hw5": (h, w, 5), "1d": (h,), "4d": (1, h, w, 3)}[layout]
    if np.prod(shape) > 4 * BUDGET:
        shape = (h, w)
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    kind = draw(st.sampled_from(["zeros", "random", "specials"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    if dtype.kind in "fc" and kind != "zeros":
        scale = draw(st.sampled_from([1.0, 255.0, 1e-3, 1e30]))
        a = (rng.random(shape) * scale).astype(dtype)
        if kind == "specials" and a.size:
            a.flat[rng.integers(0, a.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf, -0.5, 1.5]))
    elif dtype.kind in "iub" and kind != "zeros":
        info = np.iinfo(dtype) if dtype.kind != "b" else None
        hi = 2 if info is None else min(int(info.max), 2 ** 31)
        a = rng.integers(0, hi, shape).astype(dtype)
    else:
        a = np.zeros(shape, dtype)
    return a


def valid(a: np.ndarray) -> bool:
    """What colorize() must accept: (H, W[, 1..4]) of uint8/uint16, or float holding [0, 1]."""
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 2, 3, 4))) or 0 in a.shape[:2]:
        return False
    if a.dtype.kind == "u" and a.dtype.itemsize in (1, 2):
        return True
    if a.dtype.kind == "f" and a.dtype.itemsize in (2, 4, 8):
        return bool(np.isfinite(a).all() and a.min() >= -1e-4 and a.max() <= 1 + 1e-4) if a.size else True
    return False


THIN = [np.full((1, BUDGET), 0.5, np.float32), np.full((BUDGET, 1), 200, np.uint8),
        np.full((2, BUDGET // 2, 3), 7, np.uint16)]


@settings(max_examples=80, **SETTINGS)
@given(a=arrays(), size=st.sampled_from([None, 16, 32]))
@example(a=THIN[0], size=None).via("thin")
@example(a=THIN[1], size=32).via("thin")
@example(a=THIN[2], size=None).via("thin")
@example(a=np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8), size=None).via("0..255 floats")
def test_colorize_array_never_a_traceback(runner, a, size):
    try:
        out = timed(tint.colorize, a, size=size, runner=runner)
    except TintError as e:
        assert str(e) and "\n" not in str(e)
        assert not valid(a), f"refused a valid image: {e}"
        return
    assert valid(a), "accepted an array it should refuse (wrong dtype, shape or range)"
    h, w = a.shape[:2]
    channels = 4 if a.ndim == 3 and a.shape[2] in (2, 4) else 3
    assert out.shape == (h, w, channels)
    if out.dtype.kind == "f":
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@settings(max_examples=50, **SETTINGS)
@example(shape=(1, BUDGET // 2), c=1, batch=1, dtype=torch.float32, values="unit").via("thin")
@example(shape=(1, 5), c=1, batch=0, dtype=torch.float32, values="unit").via("empty")
@given(shape=shapes(budget=BUDGET // 2), c=st.sampled_from([1, 2, 3, 4]), batch=st.sampled_from([0, 1, 2]),
       dtype=st.sampled_from([torch.uint8, torch.float32, torch.float16, torch.float64, torch.int64, torch.bool]),
       values=st.sampled_from(["unit", "bytes", "nan"]))
def test_colorize_tensor_never_a_traceback(runner, shape, c, batch, dtype, values):
    h, w = shape
    g = torch.Generator().manual_seed(h * 31 + w)
    x = torch.rand((batch, c, h, w), generator=g)
    if values == "bytes":
        x = x * 255
    elif values == "nan" and x.numel():
        x.view(-1)[0] = float("nan")
    x = x.to(dtype)
    ok = c in (1, 3) and batch > 0 and (dtype == torch.uint8 or (dtype.is_floating_point and values == "unit"))
    try:
        out = timed(tint.colorize, x, runner=runner)
    except TintError as e:
        assert str(e) and "\n" not in str(e)
        assert not ok, f"refused a valid tensor: {e}"
        return
    assert ok, "accepted a tensor it should refuse"
    assert out.shape == (batch, 3, h, w) and out.dtype == dtype


# --------------------------------------------------------------------------- PIL modes and files
MODES = sorted(Image.MODES) if hasattr(Image, "MODES") else [
    "1", "CMYK", "F", "HSV", "I", "I;16", "I;16B", "I;16L", "I;16N", "L", "LA", "La", "LAB", "P", "PA",
    "RGB", "RGBA", "RGBa", "RGBX", "YCbCr"]


def random_image(mode, w, h, seed):
    probe = Image.new(mode, (1, 1))
    nbytes = len(probe.tobytes())
    raw = np.random.default_rng(seed).integers(0, 256, w * h * nbytes, dtype=np.uint8).tobytes()
    im = Image.frombytes(mode, (w, h), raw)
    if mode == "F":                                       # random bytes are mostly NaN or huge
        im = Image.fromarray(np.random.default_rng(seed).random((h, w), dtype=np.float32), "F")
    return im


@settings(max_examples=120, **SETTINGS)
@given(mode=st.sampled_from(MODES), shape=shapes(budget=60_000), seed=st.integers(0, 2 ** 16),
       fmt=st.sampled_from(["PNG", "TIFF", "WEBP", "BMP", "GIF", "JPEG"]), cut=st.sampled_from([None, 0.3, 0.9]))
def test_open_and_colorize_every_mode(runner, tmp_path_factory, mode, shape, seed, fmt, cut):
    from tint.media.io import read_image
    h, w = shape
    im = random_image(mode, w, h, seed)
    out = timed(_colorize_pil, runner, im)                # the Python API on the PIL image itself
    if mode in ("F", "1", "L", "P", "RGB", "LAB", "HSV", "YCbCr", "CMYK", "LA", "RGBA") or mode.startswith("I;16"):
        assert out is not None, f"mode {mode} refused"
    if out is not None:
        alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa")
        assert out.size == (w, h) and out.mode == ("RGBA" if alpha else "RGB"), (mode, out.mode)
    buf = io.BytesIO()
    try:
        im.save(buf, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        return                                            # Pillow cannot write this mode in this format
    data = buf.getvalue()
    if cut is not None:
        data = data[: max(1, int(len(data) * cut))]
    path = tmp_path_factory.mktemp("p") / f"x.{fmt.lower()}"
    path.write_bytes(data)
    try:
        got = timed(read_image, path)
    except TintError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
        return
    assert got.size == (w, h)
    _colorize_array(runner, got.rgba())


def _colorize_pil(runner, im):
    try:
        return tint.colorize(im, runner=runner)
    except TintError as e:
        assert str(e) and "\n" not in str(e)
        return None


def _colorize_array(runner, a):
    out = timed(runner.colorize_array, a)
    assert out.shape[:2] == a.shape[:2]


@settings(max_examples=150, **SETTINGS)
@given(data=st.binary(min_size=0, max_size=400), prefix=st.sampled_from(
    [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff", b"II*\x00", b"BM", b"RIFF\x00\x00\x00\x00WEBP", b"P5\n"]))
def test_open_header_on_garbage(data, prefix):
    from tint.media.io import open_header
    try:
        im = timed(open_header, prefix + data, 1_000_000)
    except TintError as e:
        assert "\n" not in str(e)
        return
    w, h = im.size
    assert 0 < w * h <= 1_000_000
    try:
        im.load()
    except Exception:
        pass                                               # decode errors are the caller's (tested above)


def test_pixel_limit_env_is_respected(tmp_path, monkeypatch):
    from tint.media.io import TooManyPixels, read_image
    Image.new("L", (2000, 600)).save(tmp_path / "a.png")
    monkeypatch.setenv("TINT_MAX_PIXELS", "1000000")
    with pytest.raises(TooManyPixels):
        read_image(tmp_path / "a.png")
    monkeypatch.setenv("TINT_MAX_PIXELS", "2000000")
    assert read_image(tmp_path / "a.png").size == (2000, 600)
