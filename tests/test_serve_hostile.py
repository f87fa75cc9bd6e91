"""tint serve under hostile load: slow clients, bursts, other web sites, thin images.
Against a real uvicorn (in-process on a free loopback port, or `python -m tint serve`)."""
import io
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

import tint  # noqa: E402
from tint.serve.server import BackgroundServer, Limits, create_app

from conftest import limited_env, served_url, set_memory_limit  # noqa: E402

RAW = {"Content-Type": "application/octet-stream"}


def png(w=40, h=30, mode="L") -> bytes:
    a = ((np.arange(w * h).reshape(h, w) * 3) % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).convert(mode).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def runner(tiny_weights):
    return tint.load(tiny_weights, "cpu", size=16)


class Slow:
    """The runner with each colorize taking at least ``seconds``: requests pile up."""

    def __init__(self, runner, seconds):
        self.__dict__.update({k: getattr(runner, k) for k in
                              ("device", "precision", "size", "config", "model", "weights_path", "saturation")})
        self._runner, self._s = runner, seconds

    def colorize_array(self, *a, **k):
        time.sleep(self._s)
        return self._runner.colorize_array(*a, **k)


def slow_client(url, results, key, length=2000, every=0.5, give_up=60.0):
    """A client that sends its headers, then one body byte every ``every`` seconds."""
    host, port = url.split("//")[1].split(":")
    s = socket.create_connection((host, int(port)))
    s.sendall(f"POST /api/colorize HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/png\r\n"
              f"Content-Length: {length}\r\n\r\n".encode())
    s.settimeout(every or 0.5)
    t0, data = time.monotonic(), b""
    try:
        while time.monotonic() - t0 < give_up:
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data:
                    break
            except socket.timeout:
                if every:
                    try:
                        s.sendall(b"\0")
                    except OSError:
                        break
    finally:
        s.close()
    m = re.match(rb"HTTP/1.1 (\d+)", data)
    results[key] = (int(m.group(1)) if m else None, time.monotonic() - t0)


def burst(url, n=40, parallel=8, headers=RAW, data=None):
    data = data or png()
    with httpx.Client(base_url=url, timeout=60) as c, ThreadPoolExecutor(parallel) as ex:
        return list(ex.map(lambda _: c.post("/api/colorize", content=data, headers=headers).status_code, range(n)))


# --------------------------------------------------------------------------- slow clients
def test_slow_clients_do_not_lock_others_out(runner):
    """Was: 4 clients sending 1 byte per 0.5 s held all 4 slots; everyone else got 503."""
    limits = Limits(1_000_000, 1_000_000, concurrency=4, queue=16, body_timeout_s=4.0, idle_timeout_s=2.0)
    with BackgroundServer(create_app(runner, limits)) as url:
        results = {}
        threads = [threading.Thread(target=slow_client, args=(url, results, i)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.7)
        with httpx.Client(base_url=url) as c:
            assert c.get("/api/health").json()["queue"]["reading"] == 4
        assert burst(url, n=12, parallel=4) == [200] * 12
        for t in threads:
            t.join()
        assert [results[i][0] for i in range(4)] == [408] * 4
        assert all(t < 8 for _, t in results.values()), results           # the body deadline held
        with httpx.Client(base_url=url) as c:
            assert c.get("/api/health").json()["busy"] == 0


def test_headers_only_connection_is_dropped_after_the_idle_timeout(runner):
    """Was: a connection that sent only headers held its slot for more than 45 s."""
    limits = Limits(1_000_000, 1_000_000, concurrency=1, queue=0, idle_timeout_s=1.0)
    with BackgroundServer(create_app(runner, limits)) as url:
        results = {}
        t = threading.Thread(target=slow_client, args=(url, results, "h"), kwargs={"every": 0})
        t.start()
        time.sleep(0.3)
        with httpx.Client(base_url=url) as c:
            assert c.get("/api/health").json()["busy"] == 1
            t.join()
            status, took = results["h"]
            assert status == 408 and took < 3
            assert c.get("/api/health").json()["busy"] == 0
            assert c.post("/api/colorize", content=png(), headers=RAW).status_code == 200


def test_default_timeouts_are_short():
    d = Limits()
    assert d.idle_timeout_s <= 10 and d.body_timeout_s <= 30 and d.queue_timeout_s <= 30


# --------------------------------------------------------------------------- bursts: queued, not refused
def test_burst_is_queued_and_answered(runner):
    """Was: 40 requests 8 at a time got 4 answers and 36 immediate 503s."""
    with BackgroundServer(create_app(Slow(runner, 0.05), Limits(1_000_000, 1_000_000))) as url:
        seen = []
        stop = threading.Event()

        def watch():
            with httpx.Client(base_url=url) as c:
                while not stop.is_set():
                    seen.append(c.get("/api/health").json()["queue"]["waiting"])
                    time.sleep(0.02)
        w = threading.Thread(target=watch)
        w.start()
        try:
            assert burst(url, n=40, parallel=8) == [200] * 40
        finally:
            stop.set()
            w.join()
        assert max(seen) > 0, "the queue shows in /api/health"


def test_full_queue_is_503_with_retry_after(runner):
    with BackgroundServer(create_app(Slow(runner, 1.5), Limits(1_000_000, 1_000_000, 1, queue=1))) as url:
        with ThreadPoolExecutor(2) as ex:
            first = [ex.submit(lambda: httpx.post(url + "/api/colorize", content=png(), headers=RAW, timeout=30))
                     for _ in range(2)]
            time.sleep(0.5)
            t0 = time.perf_counter()
            r = httpx.post(url + "/api/colorize", content=png(), headers=RAW, timeout=30)
            assert time.perf_counter() - t0 < 1.0
            assert r.status_code == 503 and r.json() == {"error": "busy"} and r.headers["retry-after"] == "1"
            assert [f.result().status_code for f in first] == [200, 200]


def test_queue_wait_limit(runner):
    limits = Limits(1_000_000, 1_000_000, 1, queue=4, queue_timeout_s=0.5)
    with BackgroundServer(create_app(Slow(runner, 2.0), limits)) as url:
        with ThreadPoolExecutor(2) as ex:
            a = ex.submit(lambda: httpx.post(url + "/api/colorize", content=png(), headers=RAW, timeout=30))
            time.sleep(0.3)
            b = ex.submit(lambda: httpx.post(url + "/api/colorize", content=png(), headers=RAW, timeout=30))
            assert a.result().status_code == 200
            rb = b.result()
            assert rb.status_code == 503 and "no free slot within 0.5 s" in rb.json()["error"]
            assert rb.headers["retry-after"] == "1"


# --------------------------------------------------------------------------- other web sites
@pytest.fixture(scope="module")
def url(runner):
    with BackgroundServer(create_app(runner, Limits(1_000_000, 1_000_000))) as u:
        yield u


def test_cross_origin_post_is_refused(url):
    """Was: a text/plain POST from http://evil.example was colorized."""
    host = url.split("//")[1]
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    r = httpx.post(url + "/api/colorize", content=png(), headers=evil)
    assert r.status_code == 403 and "evil.example" in r.json()["error"]
    for origin in ("null", "http://evil.example", f"http://{host}.evil.example", "file://"):
        for ctype in ("image/png", "text/plain", "application/octet-stream"):
            r = httpx.post(url + "/api/colorize", content=png(), headers={"Origin": origin, "Content-Type": ctype})
            assert r.status_code == 403, (origin, ctype)
    assert httpx.get(url + "/api/health", headers={"Origin": "http://evil.example"}).status_code == 403


def test_own_page_and_scripts_still_work(url):
    host = url.split("//")[1]
    own = {"Origin": f"http://{host}"}
    # what the page sends: its own Origin and a non-simple Content-Type (it needs no preflight: same origin)
    for ctype in ("application/octet-stream", "image/jpeg"):
        assert httpx.post(url + "/api/colorize", content=png(), headers={**own, "Content-Type": ctype}).status_code == 200
    # a script: no Origin
    assert httpx.post(url + "/api/colorize", content=png(), headers=RAW).status_code == 200
    assert httpx.post(url + "/api/colorize", content=png(), headers={"X-Requested-With": "curl"}).status_code == 200
    assert httpx.post(url + "/api/colorize", files={"file": ("a.png", png(), "image/png")},
                      headers={"X-Requested-With": "curl"}).status_code == 200
    r = httpx.options(url + "/api/colorize", headers={"Origin": "http://evil.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers                 # a preflight is never granted


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "text/plain"},
                                     {"Content-Type": "application/x-www-form-urlencoded"},
                                     {"Content-Type": "text/plain; charset=utf-8"}])
def test_simple_requests_that_need_no_preflight_are_refused(url, headers):
    r = httpx.post(url + "/api/colorize", content=png(), headers=headers)
    assert r.status_code == 415 and "X-Requested-With" in r.json()["error"]
    r = httpx.post(url + "/api/colorize", files={"file": ("a.png", png(), "image/png")})     # multipart, bare
    assert r.status_code == 415


# --------------------------------------------------------------------------- notes for the client
def test_animation_and_colour_are_said_in_a_header(url):
    frames = [Image.fromarray(np.full((20, 26), 40 + 60 * i, np.uint8)).convert("P") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    r = httpx.post(url + "/api/colorize", content=buf.getvalue(), headers=RAW)
    assert r.status_code == 200 and r.headers["x-tint-note"] == "only the first of 3 frames was colorized"
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    r = httpx.post(url + "/api/colorize", content=buf.getvalue(), headers=RAW)
    assert r.status_code == 200 and "already in colour" in r.headers["x-tint-note"]
    assert "x-tint-note" not in httpx.post(url + "/api/colorize", content=png(), headers=RAW).headers


# --------------------------------------------------------------------------- the real command, all at once
def test_tint_serve_under_hostile_load(tmp_path, tiny_weights):
    """`python -m tint serve` under a 2 GB address-space limit: 4 slow clients, a burst of 40
    (8 at a time), a thin 1 x 1,000,000 image and a cross-origin post.  Every normal request
    is 200, the slow ones 408, the cross-origin one 403."""
    p = subprocess.Popen([sys.executable, "-m", "tint", "serve", "--weights", str(tiny_weights), "--device", "cpu",
                          "--size", "16", "--port", "0", "--max-pixels", "2000000", "--body-timeout", "5",
                          "--idle-timeout", "2"],
                         stderr=subprocess.PIPE, text=True, env=limited_env(), preexec_fn=set_memory_limit)
    try:
        url = served_url(p)
        results = {}
        slow = [threading.Thread(target=slow_client, args=(url, results, i)) for i in range(4)]
        for t in slow:
            t.start()
        time.sleep(0.5)
        assert burst(url, n=40, parallel=8) == [200] * 40
        thin = io.BytesIO()
        Image.new("L", (1_000_000, 1), 90).save(thin, "PNG")
        r = httpx.post(url + "/api/colorize", content=thin.getvalue(), headers=RAW, timeout=120)
        assert r.status_code == 200, r.text
        assert Image.open(io.BytesIO(r.content)).size == (1_000_000, 1)
        r = httpx.post(url + "/api/colorize", content=png(), timeout=30,
                       headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
        assert r.status_code == 403
        for t in slow:
            t.join()
        assert sorted(s for s, _ in results.values()) == [408] * 4
        assert p.poll() is None, "the server is still up"
    finally:
        p.terminate()
        p.wait(20)
        p.stderr.close()
