"""``tint serve``: a local web page and HTTP API over the same ``colorize()``.

One process loads the model once and answers:

    GET  /             the page (tint/serve/static/index.html: drop photos, before/after, webcam)
    GET  /api/health   {"status": "ok", "version", "device", "model", "size", "limits", "queue", ...}
    POST /api/colorize body = image bytes (raw, or multipart/form-data with one file);
                       options (query or form fields): size (working size), saturation
                       (0..2), format (png|jpeg), quality (1..95) -> the colorized image

Safe by default: binds to loopback; only requests from its own page or from non-browser
clients are served (a foreign Origin is 403; a body must carry a Content-Type or header
that makes browsers ask first, so no other web site can post here); the upload size is
checked while the body is read, and a body must arrive in time (idle and total
timeouts: slow clients cannot hold the server); the pixel count is checked from the
image header before anything is decoded, and the work a picture causes is bounded by
the working size whatever its shape; the type is decided by decoding, never by a name;
``concurrency`` requests are colorized at once, ``queue`` more wait their turn (for at
most ``queue_timeout_s``), and only when the queue is full is the answer 503 busy with
Retry-After; no part of a request is ever used as a path; the model runs in a worker
thread, off the event loop.  Every error is JSON {"error": "one line"} with a fitting
status, never a traceback.

Starlette and uvicorn (the ``tint[serve]`` extra) are imported only when serving.
"""
from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from importlib import resources

from ..core.errors import TintError
from ..core.weights import LIVE, named_size
from ..core.pixels import MAX_SATURATION, MAX_SIZE, MIN_SATURATION, MIN_SIZE, check_saturation, check_size


INSTALL_HINT = 'pip install "tint[serve]"'
FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg")}
# What Image.open may try (multi-picture JPEGs open as JPEG): common photo formats only,
# so a request cannot reach rarer decoders.
DECODERS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "PPM")
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
       "script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class RequestError(Exception):
    """A request the client can fix: becomes {"error": message} with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one server accepts.  Memory is bounded by about (concurrency + queue) x
    max_upload_bytes of bodies plus concurrency decoded images."""
    max_upload_bytes: int = 25 * 1_000_000
    max_pixels: int = 40_000_000
    concurrency: int = 4
    queue: int = 16
    queue_timeout_s: float = 30.0
    body_timeout_s: float = 30.0
    idle_timeout_s: float = 10.0

    def __post_init__(self):
        if self.max_upload_bytes < 1:
            raise TintError(f"--max-upload-mb must be positive, got {self.max_upload_bytes / 1e6:g}")
        if self.max_pixels < 1:
            raise TintError(f"--max-pixels must be positive, got {self.max_pixels}")
        if self.concurrency < 1:
            raise TintError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.queue < 0:
            raise TintError(f"--queue must be 0 or more, got {self.queue}")
        for name, v in (("--queue-timeout", self.queue_timeout_s), ("--body-timeout", self.body_timeout_s),
                        ("--idle-timeout", self.idle_timeout_s)):
            if not v > 0:
                raise TintError(f"{name} must be a positive number of seconds, got {v:g}")


def import_server():
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise TintError(f"tint serve needs {e.name}: {INSTALL_HINT}") from None
    return starlette, uvicorn


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback one (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def exposure_warning(host: str) -> str | None:
    if is_loopback(host):
        return None
    return (f"tint serve: warning: binding to {host}, not loopback: anyone who can reach this "
            f"machine can use the server (there is no authentication)")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port), or a TintError in one line."""
    if not 0 <= port <= 65535:
        raise TintError(f"--port must be in 0..65535, got {port}")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except OSError as e:
        raise TintError(f"cannot resolve --host {host!r} ({e})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise TintError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.setblocking(False)
    return sock


# --------------------------------------------------------------------------- image work (no web types)
@dataclass(frozen=True)
class Options:
    size: int
    fmt: str
    quality: int
    saturation: float


def parse_options(query, default_size: int, default_saturation: float = 1.0) -> Options:
    """Query params or form fields -> Options, or a 400 RequestError.  Ranges are the ones
    every interface uses (``tint.core.pixels``)."""
    def integer(name, default, lo, hi):
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        try:
            v = int(raw)
        except ValueError:
            raise RequestError(400, f"{name} must be an integer, got {raw[:40]!r}") from None
        if not lo <= v <= hi:
            raise RequestError(400, f"{name} must be in {lo}..{hi}, got {v}")
        return v

    raw = query.get("size")
    try:
        size = check_size(None if raw in (None, "") else int(raw), default_size)
    except ValueError:
        raise RequestError(400, f"size must be an integer, got {raw[:40]!r}") from None
    except TintError as e:
        raise RequestError(400, str(e)) from None
    fmt = (query.get("format") or "png").lower()
    if fmt not in FORMATS:
        raise RequestError(400, f"format must be png or jpeg, got {fmt[:40]!r}")
    quality = integer("quality", 90, 1, 95)
    saturation = default_saturation
    raw = query.get("saturation")
    if raw not in (None, ""):
        try:
            saturation = check_saturation(float(raw))
        except ValueError:
            raise RequestError(400, f"saturation must be a number, got {raw[:40]!r}") from None
        except TintError as e:
            raise RequestError(400, str(e)) from None
    return Options(size, fmt, quality, saturation)


def decode_image(data: bytes, max_pixels: int):
    """Image bytes -> a loaded PIL image.  The header is checked as ``tint.media.io`` checks files
    (size against ``max_pixels`` before any pixel is decoded); the type comes from the bytes."""
    from ..media.io import NotAnImage, TooManyPixels, open_header
    if not data:
        raise RequestError(400, "empty body: send the image bytes (raw or multipart/form-data)")
    try:
        img = open_header(data, max_pixels, formats=DECODERS, hint="this server's --max-pixels")
    except NotAnImage:
        raise RequestError(415, "not an image this server can decode "
                                "(send PNG, JPEG, WebP, TIFF, BMP, GIF or PPM bytes)") from None
    except TooManyPixels as e:
        raise RequestError(413, str(e)) from None
    except TintError as e:
        raise RequestError(400, str(e)) from None
    try:
        img.load()
    except Exception as e:  # truncated or corrupt data: PIL raises OSError, ValueError, SyntaxError...
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise RequestError(400, f"could not decode the {img.format} image ({why})") from None
    return img


def encode_image(img, fmt: str, quality: int) -> bytes:
    """PIL RGB/RGBA -> PNG or JPEG bytes (JPEG drops alpha; the ICC profile is kept)."""
    pil_format, _ = FORMATS[fmt]
    kw = {}
    if img.info.get("icc_profile"):
        kw["icc_profile"] = img.info["icc_profile"]
    if pil_format == "JPEG":
        if img.mode != "RGB":
            img = img.convert("RGB")
        kw.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    else:
        kw.update(compress_level=3)        # level 6 costs 2-3x the time for ~10% smaller files
    buf = io.BytesIO()
    img.save(buf, pil_format, **kw)
    return buf.getvalue()


def colorize_bytes(runner, data: bytes, opts: Options, max_pixels: int) -> tuple[bytes, list[str]]:
    """The whole request in one blocking call (run it in a worker thread) -> (encoded
    image, notes for the client: an animation of which only the first frame is done, a
    photo that was already in colour)."""
    import numpy as np

    from ..api import colorize
    from ..core.pixels import has_colour
    img = decode_image(data, max_pixels)
    notes = []
    try:
        frames = int(getattr(img, "n_frames", 1) or 1)
    except Exception:  # a damaged later frame: the first one decoded, and that is what is done
        frames = 1
    if frames > 1 and img.format != "MPO":
        notes.append(f"only the first of {frames} frames was colorized")
    if img.mode in ("RGB", "RGBA"):
        w, h = img.size
        k = max(1, max(w, h) // 256)
        small = img if k == 1 else img.resize((max(1, w // k), max(1, h // k)))
        if has_colour(np.asarray(small.convert("RGB"))):
            notes.append("already in colour: its colours were replaced by predicted ones")
    try:
        out = colorize(img, size=opts.size, saturation=opts.saturation, runner=runner)
    except TintError as e:
        raise RequestError(400, str(e)) from None
    return encode_image(out, opts.fmt, opts.quality), notes


def first_file_part(body: bytes, content_type: str) -> bytes:
    """The first file of a multipart/form-data body (or its first field when none is a file)."""
    return parse_multipart(body, content_type)[0]


def parse_multipart(body: bytes, content_type: str) -> tuple[bytes, dict]:
    """A multipart/form-data body -> (the first file, or the first field when none is a
    file; the other fields that are not files, name -> text, for the options)."""
    try:
        from python_multipart.multipart import MultipartParser, parse_options_header
    except ImportError:
        raise RequestError(415, f"multipart uploads need python-multipart ({INSTALL_HINT}); "
                                f"or send the image bytes raw") from None
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise RequestError(400, "multipart body without a boundary")
    parts: list[dict] = []
    field = bytearray()

    def begin():
        parts.append({"headers": {}, "data": bytearray()})

    def header_field(b, s, e):
        field.extend(b[s:e])

    def header_value(b, s, e):
        parts[-1]["headers"].setdefault(bytes(field).lower(), bytearray()).extend(b[s:e])

    def header_end():
        field.clear()

    def data(b, s, e):
        parts[-1]["data"].extend(b[s:e])

    parser = MultipartParser(boundary, {"on_part_begin": begin, "on_header_field": header_field,
                                        "on_header_value": header_value, "on_header_end": header_end,
                                        "on_part_data": data})
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:
        raise RequestError(400, f"malformed multipart body ({type(e).__name__})") from None
    if not parts:
        raise RequestError(400, "multipart body has no parts; put the image in a file field")
    image, fields = None, {}
    for part in parts:
        _, disp = parse_options_header(bytes(part["headers"].get(b"content-disposition", b"")))
        if b"filename" in disp:
            if image is None:
                image = bytes(part["data"])
        elif len(part["data"]) <= 64 and b"name" in disp:
            fields[disp[b"name"].decode("latin-1")] = bytes(part["data"]).decode("latin-1")
    if image is None:
        image = bytes(parts[0]["data"])
    return image, fields


# --------------------------------------------------------------------------- the app
class Slots:
    """Admission and the queue.  At most ``n`` requests are colorized at once and
    ``queue`` more may be in the server (reading their body, or waiting for a slot for at
    most the wait limit); a request beyond those is refused at once.  Used only from the
    event loop thread, so plain counters are enough."""

    def __init__(self, n: int, queue: int = 0):
        self.n, self.queue = n, queue
        self.used = 0                  # admitted: reading, waiting or running
        self.running = 0
        self.waiting = 0
        self._sem = asyncio.Semaphore(n)

    def try_acquire(self) -> bool:
        """Admit a request (before its body is read), or False when the server is full."""
        if self.used >= self.n + self.queue:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used -= 1

    async def run(self, wait_s: float, fn, *args):
        """``fn(*args)`` in a worker thread once a slot is free; RequestError 503 after
        ``wait_s`` in the queue."""
        from starlette.concurrency import run_in_threadpool
        self.waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), wait_s)
        except asyncio.TimeoutError:
            raise RequestError(503, f"busy: no free slot within {wait_s:g} s") from None
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            return await run_in_threadpool(fn, *args)
        finally:
            self.running -= 1
            self._sem.release()

    def state(self) -> dict:
        return {"running": self.running, "waiting": self.waiting,
                "reading": self.used - self.running - self.waiting,
                "slots": self.n, "max_waiting": self.queue}


# CORS-safelisted body types (and none): a browser sends these cross-site without asking
# first.  A colorize request must carry another Content-Type, or X-Requested-With.
SIMPLE_TYPES = {"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}


def _netloc(scheme: str, netloc: str) -> str:
    netloc = netloc.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    return netloc[: -len(default)] if default and netloc.endswith(default) else netloc


def foreign_origin(scope) -> str | None:
    """The request's Origin when it names another site than the Host it was sent to
    ('null' included), else None (same origin, or no Origin: not a cross-site browser request)."""
    from urllib.parse import urlsplit
    headers = dict(scope.get("headers") or [])
    raw = headers.get(b"origin")
    if raw is None:
        return None
    origin = raw.decode("latin-1").strip()
    host = headers.get(b"host", b"").decode("latin-1").strip()
    try:
        u = urlsplit(origin)
    except ValueError:
        return origin
    if u.scheme not in ("http", "https") or not u.netloc or not host:
        return origin
    scheme = scope.get("scheme", "http")
    if _netloc(u.scheme, u.netloc) != _netloc(scheme if scheme in ("http", "https") else u.scheme, host):
        return origin
    return None


def page_html() -> bytes:
    return resources.files("tint.serve").joinpath("static/index.html").read_bytes()


def create_app(runner, limits: Limits = Limits(), *, bind_host: str = "127.0.0.1"):
    """The Starlette app serving ``runner``.  Pure: no sockets, usable with any ASGI server."""
    import_server()
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from .. import __version__

    slots = Slots(limits.concurrency, limits.queue)
    page = page_html()
    check_host = is_loopback(bind_host)
    allowed_hosts = LOOPBACK_NAMES | {bind_host.strip("[]").lower()}

    def error(status: int, message: str, headers=None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def read_body(request: Request) -> bytes:
        """The body, refused with 413 as soon as it passes the limit (declared or streamed),
        and with 408 when it stalls for idle_timeout_s or is not complete within
        body_timeout_s (a slow client may not hold its place for ever)."""
        limit = limits.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                raise RequestError(400, "bad Content-Length header") from None
            if n > limit:
                raise RequestError(413, f"upload is {n:,} bytes; this server accepts at most "
                                        f"{limit:,} (--max-upload-mb)")
        buf = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.body_timeout_s
        chunks = request.stream().__aiter__()
        while True:
            left = deadline - loop.time()
            wait = min(limits.idle_timeout_s, left)
            try:
                if left <= 0:
                    raise asyncio.TimeoutError
                chunk = await asyncio.wait_for(chunks.__anext__(), wait)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                why = (f"nothing received for {limits.idle_timeout_s:g} s" if wait < left
                       else f"not complete within {limits.body_timeout_s:g} s")
                raise RequestError(408, f"request body too slow: {why}") from None
            buf.extend(chunk)
            if len(buf) > limit:
                raise RequestError(413, f"upload is over {limit:,} bytes (--max-upload-mb)")
        return bytes(buf)

    async def index(request: Request):
        return Response(page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    async def health(request: Request):
        return JSONResponse({
            "status": "ok",
            "version": __version__,
            "device": str(runner.device),
            "precision": runner.precision,
            "model": runner.config.to_dict(),
            "weights": runner.weights_path.name,
            "size": runner.size,
            # The page's webcam asks for this size: live frames on a CPU take the fast path
            # (the network at 128, as `tint camera` does), photos keep the model's size.
            "live_size": runner.size if runner.device.type == "cuda" else min(runner.size, named_size(LIVE) or runner.size),
            "sizes": {"min": MIN_SIZE, "max": MAX_SIZE, "multiple": runner.model.multiple},
            "formats": ["png", "jpeg"],
            "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels,
                       "concurrency": limits.concurrency},
            "busy": slots.used,
            "queue": {**slots.state(), "max_wait_s": limits.queue_timeout_s},
            "timeouts": {"body_s": limits.body_timeout_s, "idle_s": limits.idle_timeout_s},
            "saturation": {"default": runner.saturation, "min": MIN_SATURATION, "max": MAX_SATURATION},
        }, headers={"Cache-Control": "no-store"})

    async def colorize_route(request: Request):
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() in SIMPLE_TYPES and not request.headers.get("x-requested-with"):
            raise RequestError(415, "send the image with Content-Type image/... or application/octet-stream, "
                                    "or add the header X-Requested-With (form and text bodies are refused, so "
                                    "that other web sites cannot post here)")
        opts = parse_options(request.query_params, runner.size, runner.saturation)
        if not slots.try_acquire():     # before the body: memory stays under (concurrency + queue) x limit
            return error(503, "busy", {"Retry-After": "1"})         # the queue is full
        try:
            body = await read_body(request)
            if ctype.lower().startswith("multipart/form-data"):
                body, fields = parse_multipart(body, ctype)
                if fields:
                    opts = parse_options({**fields, **request.query_params}, runner.size, runner.saturation)
            t0 = time.perf_counter()
            out, notes = await slots.run(limits.queue_timeout_s, colorize_bytes, runner, body, opts,
                                         limits.max_pixels)
            ms = (time.perf_counter() - t0) * 1000
        finally:
            slots.release()
        headers = {"Cache-Control": "no-store", "X-Tint-Size": str(opts.size), "X-Tint-Ms": f"{ms:.1f}",
                   "X-Tint-Saturation": f"{opts.saturation:g}",
                   "Content-Disposition": f'inline; filename="colorized.{"jpg" if opts.fmt != "png" else "png"}"'}
        if notes:
            headers["X-Tint-Note"] = "; ".join(notes)
        return Response(out, media_type=FORMATS[opts.fmt][1], headers=headers)

    async def on_request_error(request, exc: RequestError):
        return error(exc.status, exc.message, {"Retry-After": "1"} if exc.status == 503 else None)

    async def on_http_error(request, exc: HTTPException):
        return error(exc.status_code, {404: "not found", 405: "method not allowed"}.get(
            exc.status_code, str(exc.detail).lower()))

    async def on_disconnect(request, exc):
        return error(400, "client disconnected")

    async def on_crash(request, exc: Exception):
        # uvicorn logs the traceback on the server side; the client gets one line.
        return error(500, "internal error (see the server log)")

    app = Starlette(routes=[
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/api/health", health, methods=["GET", "HEAD"]),
        Route("/api/colorize", colorize_route, methods=["POST"]),
    ], exception_handlers={RequestError: on_request_error, HTTPException: on_http_error,
                           ClientDisconnect: on_disconnect, Exception: on_crash})

    async def guarded(scope, receive, send):
        """Host check (DNS rebinding) and headers every response carries."""
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if check_host:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
            if name not in allowed_hosts:
                resp = error(400, f"host {host[:60]!r} not allowed: this server answers loopback names only")
                return await resp(scope, receive, send)
        origin = foreign_origin(scope)
        if origin is not None:
            resp = error(403, f"cross-origin request refused: Origin {origin[:60]!r} is not this server "
                              f"(its own page, and clients that send no Origin, are served)")
            return await resp(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [
                    (b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy", CSP.encode()),
                    (b"referrer-policy", b"no-referrer")]
            await send(message)
        await app(scope, receive, send_with_headers)

    guarded.app = app
    guarded.slots = slots
    return guarded


# --------------------------------------------------------------------------- in-process server (tests, loadtest)
class BackgroundServer:
    """uvicorn serving ``app`` on a loopback port from a daemon thread.

    >>> with BackgroundServer(app) as url: httpx.get(url + "/api/health")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        if not is_loopback(host):
            raise TintError(f"BackgroundServer binds loopback only, got {host!r}")
        uvicorn = import_server()[1]
        self.sock = bind_socket(host, port)
        h, p = self.sock.getsockname()[:2]
        self.url = f"http://{'[' + h + ']' if ':' in h else h}:{p}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False))
        self.server.install_signal_handlers = lambda: None      # not the main thread
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
