"""tint serve: the HTTP API against a real uvicorn on a free loopback port (random-weight model)."""
import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

import tint  # noqa: E402
from tint.core.errors import TintError
from tint.serve.server import BackgroundServer, Limits, bind_socket, create_app, exposure_warning, is_loopback
from conftest import served_url  # noqa: E402

MAX_BYTES, MAX_PIXELS = 1_000_000, 1_000_000
API_HEADERS = {"X-Requested-With": "tint-tests"}


def encode(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(w=96, h=64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 3 + y * 2) % 256).astype(np.uint8)


@pytest.fixture(scope="module")
def runner(tiny_weights):
    return tint.load(tiny_weights, "cpu", size=64)


@pytest.fixture(scope="module")
def url(runner):
    # concurrency 1 and no queue, so one slow request makes the next one busy
    with BackgroundServer(create_app(runner, Limits(MAX_BYTES, MAX_PIXELS, 1, queue=0))) as u:
        yield u


@pytest.fixture(scope="module")
def client(url):
    # a script, not a browser: raw bodies carry no Content-Type, so say X-Requested-With
    with httpx.Client(base_url=url, timeout=30, headers=API_HEADERS) as c:
        yield c


def assert_json_error(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and body["error"], body
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body["error"]


# ------------------------------------------------------------------ health and page
def test_health(client, runner):
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["version"] == tint.__version__
    assert h["device"] == "cpu" and h["size"] == 64
    assert h["live_size"] == 64                     # min(size, the fast path's 128) on a CPU
    assert h["model"]["backbone"] == "tiny-darknet" and h["model"] == runner.config.to_dict()
    assert h["limits"] == {"max_upload_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS, "concurrency": 1}
    assert h["busy"] == 0


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "/api/colorize" in html and "getUserMedia" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "page must not load anything external"
    assert "https://" not in html
    assert "connect-src 'self'" in r.headers["content-security-policy"]


# ------------------------------------------------------------------ colorize
CASES = {
    "gray-png": (lambda: Image.fromarray(gradient()), "PNG", "RGB"),
    "rgb-jpeg": (lambda: Image.fromarray(np.dstack([gradient()] * 3)), "JPEG", "RGB"),
    "rgba-png": (lambda: Image.fromarray(np.dstack([gradient()] * 3 + [np.full((64, 96), 77, np.uint8)])), "PNG", "RGBA"),
    "la-png": (lambda: Image.fromarray(gradient()).convert("LA"), "PNG", "RGBA"),
    "gray16-png": (lambda: Image.fromarray(gradient().astype(np.uint16) * 257), "PNG", "RGB"),
    "palette-gif": (lambda: Image.fromarray(gradient()).convert("P"), "GIF", "RGB"),
}


@pytest.mark.parametrize("case", CASES)
def test_colorize_matches_python_api(client, runner, case):
    make, fmt, mode = CASES[case]
    data = encode(make(), fmt)
    r = client.post("/api/colorize", content=data)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-tint-size"] == "64"
    out = Image.open(io.BytesIO(r.content))
    assert out.format == "PNG" and out.mode == mode and out.size == (96, 64)
    # the server adds nothing of its own: same pixels as tint.colorize on the decoded file
    expected = tint.colorize(Image.open(io.BytesIO(data)), runner=runner)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    if mode == "RGBA" and case == "rgba-png":
        assert (np.asarray(out)[:, :, 3] == 77).all()
    rgb = np.asarray(out.convert("RGB")).astype(int)
    assert (rgb.max(2) - rgb.min(2)).mean() > 1, "random model still predicts some chroma"


def test_options_size_format_quality(client, runner):
    data = encode(Image.fromarray(gradient(160, 120)))
    small = client.post("/api/colorize", params={"size": 32}, content=data)
    assert small.status_code == 200 and small.headers["x-tint-size"] == "32"
    ref = tint.colorize(Image.open(io.BytesIO(data)), size=32, runner=runner)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(small.content))), np.asarray(ref))
    sizes = []
    for q in (20, 95):
        r = client.post("/api/colorize", params={"format": "jpeg", "quality": q}, content=data)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        img = Image.open(io.BytesIO(r.content))
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (160, 120)
        sizes.append(len(r.content))
    assert sizes[0] < sizes[1]
    rgba = encode(Image.new("RGBA", (40, 30), (90, 90, 90, 10)))
    r = client.post("/api/colorize", params={"format": "jpeg"}, content=rgba)      # alpha dropped for JPEG
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).mode == "RGB"


def test_multipart_upload_name_ignored(client):
    data = encode(Image.fromarray(gradient()))
    r = client.post("/api/colorize", files={"file": ("notes.txt", data, "text/plain")})
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (96, 64)
    r = client.post("/api/colorize", files={"file": ("photo.png", b"plain text, not pixels", "image/png")})
    assert_json_error(r, 415)


def test_multipart_malformed(client):
    img = encode(Image.new("L", (8, 8)))
    assert_json_error(client.post("/api/colorize", content=img, headers={"Content-Type": "multipart/form-data"}), 400)
    r = client.post("/api/colorize", content=b"--xyz\r\ngarbage", headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert r.status_code in (400, 415) and set(r.json()) == {"error"}


def test_icc_profile_and_exif_orientation_kept(client):
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6                                   # rotate 90 degrees on display
    data = encode(Image.fromarray(np.dstack([gradient()] * 3)), "JPEG", icc_profile=icc, exif=exif)
    r = client.post("/api/colorize", content=data)
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (64, 96) and out.info.get("icc_profile") == icc


@pytest.mark.parametrize("params", [{"size": "abc"}, {"size": 8}, {"size": 100000}, {"format": "gif"},
                                    {"quality": 0}, {"quality": 100}])
def test_bad_options(client, params):
    assert_json_error(client.post("/api/colorize", params=params, content=encode(Image.new("L", (8, 8)))), 400)


# ------------------------------------------------------------------ limits and bad input
def test_upload_too_large_declared_and_streamed(client):
    assert "1,000,000" in assert_json_error(client.post("/api/colorize", content=b"\0" * (MAX_BYTES + 1)), 413)

    def chunks():                      # no Content-Length: the limit is enforced while reading
        for _ in range(30):
            yield b"\0" * 100_000
    assert_json_error(client.post("/api/colorize", content=chunks()), 413)
    assert client.get("/api/health").json()["busy"] == 0


def test_too_many_pixels_checked_before_decoding(client):
    big = encode(Image.new("L", (1200, 1000)))       # 1.2 Mpx, a few KB of PNG
    assert len(big) < MAX_BYTES
    msg = assert_json_error(client.post("/api/colorize", content=big), 413)
    assert "1200x1000" in msg
    # header only, pixel data cut off: still 413 (not 400), so nothing was decoded
    assert_json_error(client.post("/api/colorize", content=big[:200]), 413)


def test_non_image_empty_and_corrupt(client):
    assert_json_error(client.post("/api/colorize", content=b"%PDF-1.4 definitely not a photo"), 415)
    assert_json_error(client.post("/api/colorize", content=b"<svg xmlns='http://www.w3.org/2000/svg'/>"), 415)
    assert "empty" in assert_json_error(client.post("/api/colorize", content=b""), 400)
    png = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)))
    assert_json_error(client.post("/api/colorize", content=png[: len(png) // 2]), 400)


def test_busy_answers_503_at_once(client, url):
    """Concurrency 1, no queue: a slow upload holds the slot; the next request is refused, not queued."""
    data = encode(Image.fromarray(gradient()))
    done = {}

    def slow():
        def body():
            yield data[:16]
            time.sleep(1.5)
            yield data[16:]
        done["r"] = httpx.post(url + "/api/colorize", content=body(), timeout=30, headers=API_HEADERS)

    t = threading.Thread(target=slow)
    t.start()
    deadline = time.monotonic() + 5
    while client.get("/api/health").json()["busy"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.perf_counter()
    r = client.post("/api/colorize", content=data)
    assert time.perf_counter() - t0 < 1.0, "busy must be answered immediately"
    assert assert_json_error(r, 503) == "busy" and r.headers["retry-after"] == "1"
    t.join()
    assert done["r"].status_code == 200
    assert client.post("/api/colorize", content=data).status_code == 200      # slot released


def test_routing_errors_are_json(client):
    assert_json_error(client.get("/nope"), 404)
    assert_json_error(client.get("/api/colorize"), 405)
    assert_json_error(client.get("/../../etc/passwd"), 404)
    assert_json_error(client.get("/static/index.html"), 404)          # no file serving by path


def test_foreign_host_header_refused(client):
    """DNS rebinding guard: a loopback server answers loopback names only."""
    assert_json_error(client.get("/api/health", headers={"Host": "evil.example:8000"}), 400)
    assert client.get("/api/health", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/api/health", headers={"Host": "[::1]:8000"}).status_code == 200


def test_internal_error_is_json_without_traceback(runner):
    class Broken:
        device, precision, size, config, model, weights_path, saturation = (
            runner.device, runner.precision, runner.size, runner.config, runner.model, runner.weights_path,
            runner.saturation)

        def colorize_array(self, *a, **k):
            raise RuntimeError("secret internal detail")

    with BackgroundServer(create_app(Broken())) as u:
        r = httpx.post(u + "/api/colorize", content=encode(Image.new("L", (16, 16))), timeout=30, headers=API_HEADERS)
    msg = assert_json_error(r, 500)
    assert "secret" not in msg


# ------------------------------------------------------------------ command line
def test_loopback_and_warning():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert is_loopback("127.0.0.2") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    assert exposure_warning("127.0.0.1") is None
    assert "warning" in exposure_warning("0.0.0.0")
    with pytest.raises(TintError):
        BackgroundServer(object(), host="0.0.0.0")


def test_port_in_use_is_one_line_error():
    sock = bind_socket("127.0.0.1", 0)
    try:
        with pytest.raises(TintError, match="cannot listen"):
            bind_socket("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()


def test_missing_server_extra_names_install(monkeypatch):
    import argparse

    from tint.cli import serve
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    args = argparse.Namespace(host="127.0.0.1", port=0, max_upload_mb=1, max_pixels=1, concurrency=1,
                              weights=None, device="cpu", size=None)
    with pytest.raises(TintError, match=r'pip install "tint\[serve\]"'):
        serve.run(args)


def test_bad_limits():
    with pytest.raises(TintError):
        Limits(concurrency=0)
    with pytest.raises(TintError):
        Limits(max_pixels=0)


def test_cli_serves_and_stops(tiny_weights):
    """`python -m tint serve` as a user runs it: port 0, the URL line, health, then SIGTERM."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    p = subprocess.Popen([sys.executable, "-m", "tint", "serve", "--weights", str(tiny_weights), "--device", "cpu",
                          "--size", "32", "--port", "0", "--concurrency", "2"],
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = served_url(p)
        for _ in range(100):
            try:
                h = httpx.get(url + "/api/health", timeout=5).json()
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert h["size"] == 32 and h["limits"]["concurrency"] == 2
    finally:
        p.terminate()
        p.wait(20)
        p.stderr.close()


def test_cli_bad_weights_is_one_line(tmp_path, capsys):
    from tint.cli.main import main
    assert main(["serve", "--weights", str(tmp_path / "missing.safetensors"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "weights file not found" in err and "Traceback" not in err and "warning" not in err


# ------------------------------------------------------------------ scripts/loadtest.py
def _loadtest():
    import importlib.util
    spec = importlib.util.spec_from_file_location("loadtest", Path(__file__).resolve().parents[1] / "scripts" / "loadtest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_loadtest_targets_loopback_only():
    lt = _loadtest()
    assert lt.loopback_url("http://127.0.0.1:8000/x") == "http://127.0.0.1:8000"
    assert lt.loopback_url("http://[::1]:8000") == "http://[::1]:8000"
    for bad in ("http://example.com", "http://10.0.0.1:80", "http://127.0.0.1.evil.com", "file:///etc/passwd"):
        with pytest.raises(ValueError):
            lt.loopback_url(bad)
    assert lt.percentile([5, 1, 3, 2, 4], 50) == 3 and lt.percentile([1, 2, 3], 99) == 3


def test_loadtest_reports_latency(url, tmp_path, capsys):
    lt = _loadtest()
    photo = tmp_path / "p.png"
    Image.fromarray(gradient()).save(photo)
    # --parallel 1: this server runs one request at a time and would answer a second one 503 busy
    assert lt.main(["--url", url, "--image", str(photo), "--size", "32", "--requests", "6", "--parallel", "1",
                    "--warmup", "0", "--json"]) == 0
    import json
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] == 6 and rep["failures"] == {} and rep["p50_ms"] <= rep["p99_ms"]


def test_webcam_on_a_cpu_takes_the_fast_paths_size(tiny_weights):
    import httpx
    r = tint.load(tiny_weights, "cpu", size=256)
    with BackgroundServer(create_app(r, Limits(MAX_BYTES, MAX_PIXELS, 1, queue=0))) as u:
        h = httpx.get(u + "/api/health").json()
    assert h["size"] == 256 and h["live_size"] == 128
